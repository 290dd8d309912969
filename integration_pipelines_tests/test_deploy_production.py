"""The production profile (deploy/production/, docs/deploy.md) on its real parts: PostgreSQL and Redis from the
operating system's packages, and the Dagster processes compose.yaml runs, each started with the same command:

    dagster instance migrate
    dagster code-server start -m integration_pipelines.deploy.production -h 127.0.0.1 -p $IP_CODE_SERVER_PORT
    dagster-celery worker start -A integration_pipelines.deploy.celery_app -n worker-a -- --concurrency=1  (and b)
    dagster-webserver -h 127.0.0.1 -p <port> -w $DAGSTER_HOME/workspace.yaml
    dagster-daemon run -w $DAGSTER_HOME/workspace.yaml

The webserver, daemon and code server share one DAGSTER_HOME (one "machine"); each Celery worker has a DAGSTER_HOME
and a working folder of its own and shares nothing with the others but Postgres, Redis, the environment's settings
and (while the warehouse is the local DuckDB file) IP_DATA_DIR. Three runs are launched at once (`Runs`); checked:
the `extract_stripe` run succeeds with every step executed by a Celery worker and both workers take steps, the runs
and their events are rows in Postgres and no password is, the warehouse holds exactly what one machine loads, and
the run queue's tag limit keeps the two runs tagged with one system apart while an untagged run overtakes them.

`pytest -m deploy` runs these alone. Without PostgreSQL or redis-server they fail in CI (CI set) and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.deploy import CELERY_BACKEND_ENV, CELERY_BROKER_ENV
from integration_pipelines.deploy.production import SYSTEM_TAG
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.settings import Settings
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import PROJECT_ROOT, loaded_keys, materialize_stream
from .dagster_dev import BIN, FINISHED, DagsterDev, Processes, clean_environment, wait_http
from .services import Postgres, free_port, postgres_server, redis_server_running, require_services

pytestmark = [pytest.mark.deploy, pytest.mark.slow,
              pytest.mark.timeout(600),  # a bound on a hang of the whole stack, not a speed claim
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile

PRODUCTION = PROJECT_ROOT / "deploy" / "production"
PACKAGED = PROJECT_ROOT / "integration_pipelines" / "deploy" / "production"
JOB = "extract_stripe"
AUTOMATION_SENSOR = "core_syncs_reconciliation_automation"
WORKERS = ("worker-a", "worker-b")
STREAMS = ("customers", "charges", "invoices", "balance_transactions")  # daily, each with records on PARTITION
PARTITION = "2026-03-09"
CHECK_JOB = "systems_check"  # one op, in no pool: only the run queue's limits can hold its runs apart

RELOAD = """mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }"""
def migrate_command() -> list[str]:
    return ["dagster", "instance", "migrate"]


def code_server_command(host: str, port: int) -> list[str]:
    return ["dagster", "code-server", "start", "-m", "integration_pipelines.deploy.production", "-h", host,
            "-p", str(port)]


def webserver_command(host: str, port: int, workspace: str) -> list[str]:
    return ["dagster-webserver", "-h", host, "-p", str(port), "-w", workspace]


def daemon_command(workspace: str) -> list[str]:
    return ["dagster-daemon", "run", "-w", workspace]


def worker_command(name: str) -> list[str]:
    return ["dagster-celery", "worker", "start", "-A", "integration_pipelines.deploy.celery_app", "-n", name, "--",
            "--concurrency=1"]


def _local(command: list[str]) -> list[str]:
    """The command with its program from this test's environment (.venv/bin)."""
    return [str(BIN / command[0]), *command[1:]]


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


# -- the files (fast) ------------------------------------------------------------------------------------------------


def test_production_files_link_to_the_packaged_ones():
    for name in ("dagster.yaml", "workspace.yaml"):
        assert (PRODUCTION / name).resolve() == (PACKAGED / name).resolve(), f"deploy/production/{name}"


def test_every_system_has_a_run_limit_and_no_value_is_written_in():
    config = yaml.safe_load((PACKAGED / "dagster.yaml").read_text())
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    limited = {limit["value"] for limit in limits if limit["key"] == SYSTEM_TAG}
    assert {s.name for s in discover_systems()} <= limited, "a system without a run limit (add its line)"
    assert all(isinstance(limit["value"], str) for limit in limits), \
        "a catch-all limit would cap every system at its value, whatever the system's own line says"
    postgres = config["storage"]["postgres"]["postgres_db"]
    for name in ("hostname", "port", "db_name", "username", "password"):
        assert set(postgres[name]) == {"env"}, f"Postgres' {name} comes from the environment"
    workspace = yaml.safe_load((PACKAGED / "workspace.yaml").read_text())
    (server,) = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert server["host"] == {"env": "IP_CODE_SERVER_HOST"} and server["port"] == {"env": "IP_CODE_SERVER_PORT"}


def test_compose_runs_the_commands_this_test_runs():
    services = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())["services"]
    workspace = "/opt/dagster/home/workspace.yaml"  # the Dockerfile's DAGSTER_HOME
    assert services["migrate"]["command"] == migrate_command()
    assert services["code-server"]["command"] == code_server_command("0.0.0.0", 4000)
    assert services["webserver"]["command"] == webserver_command("0.0.0.0", 3000, workspace)
    assert services["daemon"]["command"] == daemon_command(workspace)
    for name in WORKERS:
        assert services[name]["command"] == worker_command(name)
    env = services["code-server"]["environment"]
    assert (env["IP_CODE_SERVER_HOST"], env["IP_CODE_SERVER_PORT"]) == ("code-server", "4000")
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "DAGSTER_HOME=/opt/dagster/home" in dockerfile and "deploy/production/workspace.yaml" in dockerfile


# -- the stack ---------------------------------------------------------------------------------------------------------


@dataclass
class ProductionStack:
    dev: DagsterDev
    postgres: Postgres
    processes: Processes
    env: dict[str, str]
    root: Path
    passwords: tuple[str, ...] = ()
    run_ids: list[str] = field(default_factory=list)

    @property
    def warehouse(self) -> Path:
        return Path(self.env["IP_DATA_DIR"]) / "warehouse.duckdb"

    def events(self, run_id: str):
        """The run's event log, read from Postgres' `event_logs` table and deserialized as Dagster stores it."""
        from dagster import EventLogEntry
        from dagster._serdes import deserialize_value

        rows = self.postgres.query("SELECT event FROM event_logs WHERE run_id = %s ORDER BY id", (run_id,))
        return [deserialize_value(row[0], EventLogEntry) for row in rows]

    def celery_workers(self, run_id: str) -> dict[str, str]:
        """step key -> the Celery worker (`name@host`) that executed it, from the run's engine events."""
        found: dict[str, str] = {}
        for entry in self.events(run_id):
            event = entry.dagster_event
            if event and event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (event.message or ""):
                found[entry.step_key] = event.engine_event_data.metadata["Celery worker"].value
        return found

    def diagnosis(self, run_id: str) -> str:
        errors = [f"{e.step_key}: {e.dagster_event.message if e.dagster_event else e.user_message}"
                  for e in self.events(run_id) if e.level >= 40]
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in self.processes.logs())
        return "errors:\n" + "\n".join(errors) + "\n" + logs

    def launch(self, job: str, *, streams: tuple[str, ...] | None = None, partition: str | None = None,
               tags: dict[str, str] | None = None) -> str:
        assets = [["stripe", s] for s in streams] if streams else None
        run_id = self.dev.launch_run(job, assets=assets, partition=partition, tags=tags)
        self.run_ids.append(run_id)
        return run_id


def processes_alive(processes: Processes, name: str) -> bool:
    return any(n == name and p.poll() is None for n, p in processes.started)


def _wait_port(port: int, process, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the code server exited with {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the code server did not listen on {port} within {timeout:.0f} s") from None
            time.sleep(0.3)


def _wait_location(dev: DagsterDev, timeout: float = 180) -> None:
    """Until the webserver has loaded the code location; reloaded (as the UI's Reload button does) if the webserver
    came up before the code server listened."""
    deadline = time.monotonic() + timeout
    while True:
        entries = dev.gql(LOCATIONS)["workspaceOrError"].get("locationEntries") or []
        errors = [e["locationOrLoadError"] for e in entries
                  if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
        if entries and not errors and all(e["loadStatus"] == "LOADED" for e in entries):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the code location is not loaded after {timeout:.0f} s: {entries}")
        if errors:
            dev.gql(RELOAD, name="integration_pipelines")
        time.sleep(1)


def _home(folder: Path) -> Path:
    """A DAGSTER_HOME with the production profile's dagster.yaml and workspace.yaml, as docs/deploy.md copies them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copyfile(PRODUCTION / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxServer
                     ) -> Iterator[ProductionStack]:
    pg_bin, redis_bin = require_services()
    root = tmp_path_factory.mktemp("production")
    sandbox_server.sandbox.reset()  # the seeded world, whatever earlier tests wrote to it
    with postgres_server(pg_bin) as postgres, redis_server_running(redis_bin, root / "redis") as redis:
        code_port, web_port = free_port(), free_port()
        env = clean_environment()
        env.update({
            "PATH": f"{BIN}:{env.get('PATH', '')}",  # dagster-celery starts `celery` from PATH
            "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port),
            "DAGSTER_PG_DB": postgres.database, "DAGSTER_PG_USER": postgres.user,
            "DAGSTER_PG_PASSWORD": postgres.password,
            CELERY_BROKER_ENV: redis.url(0), CELERY_BACKEND_ENV: redis.url(1),
            "IP_CODE_SERVER_HOST": "127.0.0.1", "IP_CODE_SERVER_PORT": str(code_port),
            "IP_DATA_DIR": str(root / "data"),
            "IP_SANDBOX_URL": sandbox_server.url,
            "IP_ENABLED_SYSTEMS": "stripe",
            "IP_PARTITIONS_START": "2026-03-01",
            "IP_SYNC_START": "2026-03-01",
            "IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS": "120",
            "STRIPE_BACKOFF_BASE_SECONDS": "0.01", "STRIPE_BACKOFF_CAP_SECONDS": "0.05",
            "PYTHONUNBUFFERED": "1",
        })
        processes = Processes(root / "logs")
        home = _home(root / "dagster_home")  # the webserver, daemon and code server's machine
        central = {**env, "DAGSTER_HOME": str(home)}
        try:
            # the schema first, once: processes that start together on an empty database race to create the
            # tables (a worker died on `type "event_logs" already exists` that way)
            migrate = processes.spawn("migrate", _local(migrate_command()), central, root)
            assert migrate.wait(timeout=180) == 0, processes.log_text("migrate")
            code_server = processes.spawn("code-server", _local(code_server_command("127.0.0.1", code_port)),
                                          central, root)
            for name in WORKERS:  # each a machine of its own: its own DAGSTER_HOME and working folder
                folder = root / name
                worker_env = {**env, "DAGSTER_HOME": str(_home(folder / "dagster_home"))}
                processes.spawn(name, _local(worker_command(name)), worker_env, folder)
            _wait_port(code_port, code_server, processes.log_dir / "code-server.log")
            workspace = str(home / "workspace.yaml")
            webserver = processes.spawn("webserver", _local(webserver_command("127.0.0.1", web_port, workspace)),
                                        central, root)
            processes.spawn("daemon", _local(daemon_command(workspace)), central, root)
            url = f"http://127.0.0.1:{web_port}"
            wait_http(f"{url}/server_info", webserver, "dagster-webserver", processes.log_dir / "webserver.log")
            dev = DagsterDev(url)
            _wait_location(dev)
            # the extracts' materializations would make the automation sensor launch core/sync runs: not this test's
            dev.sensor_running(AUTOMATION_SENSOR, False)
            yield ProductionStack(dev, postgres, processes, env, root, (postgres.password, redis.password))
        finally:
            processes.stop()


def _intervals(stack: ProductionStack, run_ids: list[str]) -> list[tuple[float, float]]:
    rows = stack.postgres.query("SELECT run_id, start_time, end_time FROM runs WHERE run_id = ANY(%s)", (run_ids,))
    times = {run_id: (start, end) for run_id, start, end in rows}
    return [times[run_id] for run_id in run_ids]


def _tags(stack: ProductionStack, run_ids: list[str]) -> list[dict[str, str]]:
    rows = stack.postgres.query("SELECT run_id, key, value FROM run_tags WHERE run_id = ANY(%s)", (run_ids,))
    return [{key: value for run, key, value in rows if run == run_id} for run_id in run_ids]


@dataclass
class Runs:
    """The runs the tests launch at once (one boot of a run worker costs 15-35 s here, so they share it):

    - `extract`: the `extract_stripe` job over STREAMS for PARTITION; its steps go to the Celery workers. The job
      tags its runs `integration_pipelines/system: stripe`.
    - `tagged`: `systems_check` (one op, in no pool) launched with that tag: the run queue must hold it until
      `extract` has finished (stripe's limit is 1).
    - `untagged`: `systems_check` without the tag, launched last: nothing holds it back, so it overtakes `tagged`.

    `seen` holds the three runs' statuses, read from Postgres every 0.3 s until all had finished.
    """

    extract: str
    tagged: str
    untagged: str
    seen: list[list[str]]

    @property
    def all(self) -> list[str]:
        return [self.extract, self.tagged, self.untagged]


@pytest.fixture(scope="module")
def runs(production_stack: ProductionStack) -> Runs:
    stack = production_stack
    extract = stack.launch(JOB, streams=STREAMS, partition=PARTITION)
    tagged = stack.launch(CHECK_JOB, tags={SYSTEM_TAG: "stripe"})
    untagged = stack.launch(CHECK_JOB)
    run_ids = [extract, tagged, untagged]
    seen: list[list[str]] = []
    deadline = time.monotonic() + 300
    while not seen or not all(s in FINISHED for s in seen[-1]):
        if time.monotonic() > deadline:
            raise AssertionError(f"runs still in flight after 300 s: {seen[-1]}")
        time.sleep(0.3)
        rows = dict(stack.postgres.query("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (run_ids,)))
        seen.append([rows.get(run_id, "?") for run_id in run_ids])
    for run_id, status in zip(run_ids, seen[-1], strict=True):
        assert status == "SUCCESS", f"run {run_id}: {status}\n{stack.diagnosis(run_id)}"
    return Runs(extract, tagged, untagged, seen)


def test_a_run_executes_its_steps_on_the_celery_workers(production_stack: ProductionStack, runs: Runs):
    stack = production_stack
    workers = stack.celery_workers(runs.extract)
    assert set(workers) == {f"stripe__{s}" for s in STREAMS}, f"steps not executed by a Celery worker: {workers}"
    # which worker takes a step is the broker's choice: both took some of the three runs' six steps
    by_run = {run_id: stack.celery_workers(run_id) for run_id in runs.all}
    taken = {worker.split("@")[0] for steps in by_run.values() for worker in steps.values()}
    assert taken == set(WORKERS), f"the steps did not spread over both workers: {by_run}"
    for name in WORKERS:
        assert processes_alive(stack.processes, name), f"{name} died:\n{stack.processes.log_text(name)[-3000:]}"


def test_runs_and_their_events_are_rows_in_postgres(production_stack: ProductionStack, runs: Runs):
    stack = production_stack
    stored = dict(stack.postgres.query("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (runs.all,)))
    assert stored == dict.fromkeys(runs.all, "SUCCESS")
    successes = stack.postgres.query("SELECT step_key FROM event_logs WHERE run_id = %s AND "
                                     "dagster_event_type = 'STEP_SUCCESS'", (runs.extract,))
    assert sorted(r[0] for r in successes) == sorted(f"stripe__{s}" for s in STREAMS), successes
    [(materializations,)] = stack.postgres.query(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        (runs.extract,))
    assert materializations == len(STREAMS)


def test_no_password_is_stored_in_postgres(production_stack: ProductionStack, runs: Runs):
    """The instance and the executor name their variables; no row holds a value (compressed snapshots unpacked)."""
    stack = production_stack
    tables = [r[0] for r in stack.postgres.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    assert {"runs", "event_logs", "run_tags"} <= set(tables)
    for table in tables:
        for row in stack.postgres.query(f'SELECT * FROM "{table}"'):
            for value in row:
                if isinstance(value, memoryview | bytes):
                    raw = bytes(value)
                    with contextlib.suppress(zlib.error):
                        raw = zlib.decompress(raw)
                    text = raw.decode(errors="replace")
                else:
                    text = str(value)
                leaked = [i for i, password in enumerate(stack.passwords) if password in text]
                assert not leaked, f"a password ({['Postgres', 'Redis'][leaked[0]]}) is stored in {table}"


def test_the_warehouse_holds_what_one_machine_loads(production_stack: ProductionStack, runs: Runs,
                                                    settings: Settings):
    """Every record of the day once, as an in-process materialization of the same streams loads it."""
    for stream in STREAMS:
        materialize_stream(settings, "stripe", stream, PARTITION)
        # the stack's workers may still hold the file (another run's step): wait for it, as `query` does
        with Warehouse(str(production_stack.warehouse), lock_timeout=120).connect(read_only=True) as con:
            spread = sorted(r[0] for r in con.execute(f'SELECT _pk FROM raw_stripe."{stream}"').fetchall())
        assert spread, f"no {stream} read for {PARTITION}"
        assert spread == loaded_keys(settings, "stripe", stream), stream


def test_the_run_queue_holds_a_system_to_its_limit(production_stack: ProductionStack, runs: Runs):
    """The two runs tagged `integration_pipelines/system: stripe` (limit 1) never overlap, and the untagged run
    launched after them starts while the second waits: it is the tag's limit that holds the second back (its one
    op is in no pool, and max_concurrent_runs is 8)."""
    stack = production_stack
    assert [tags.get(SYSTEM_TAG) for tags in _tags(stack, runs.all)] == ["stripe", "stripe", None]
    in_progress = ("STARTING", "STARTED")
    assert not any(a in in_progress and b in in_progress for a, b, _ in runs.seen), runs.seen
    assert any(a in in_progress and b == "QUEUED" for a, b, _ in runs.seen), \
        f"the second tagged run never waited in the queue: {runs.seen}"
    [(_, extract_end), (tagged_start, _), (untagged_start, _)] = _intervals(stack, runs.all)
    assert extract_end <= tagged_start, f"the tagged runs overlapped: {_intervals(stack, runs.all)}"
    assert untagged_start < tagged_start, f"the untagged run did not overtake the waiting one: {runs.seen}"
