"""Shared fixtures: one sandbox per session on an ephemeral loopback port, a temp warehouse per test.

The sandbox world is anchored in the past and spans three days, so its daily partitions are fixed:
PARTITIONS below. Each test gets a fresh world (writes and faults of one test never leak into another).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from hypothesis import settings as hypothesis_settings

from integration_pipelines.assets.extract import build_extract_asset
from integration_pipelines.connectors.registry import discover_systems, get_system
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ANCHOR = datetime(2026, 3, 10, tzinfo=UTC)
WORLD_DAYS = 3
PARTITIONS = ["2026-03-07", "2026-03-08", "2026-03-09"]

# Property tests must give a fresh clone the same verdict every time: in CI (CI=true, as CI services set it)
# hypothesis derives its examples from each test's name instead of a random seed, keeps no example database
# (nothing a previous run found is replayed), and prints a reproduction blob with a failure. Locally ("dev")
# it explores randomly and replays what it found before from `.hypothesis/`. This module is imported before any
# test module, so the per-test `settings(max_examples=...)` objects, which copy every unset option from the
# default when they are built, inherit derandomize/database from the profile loaded here (checked by
# test_reliability_properties.test_property_tests_run_with_the_ci_profile_in_ci).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev")
hypothesis_settings.load_profile("ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "dev")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Let `--dist loadgroup` keep the `xdist_group("stack")` tests on one worker, so two `dagster dev` stacks never
    compete for the 2 cores at once. pytest-xdist 3.8 marks a grouped test by assigning `item._nodeid` (the
    controller groups on the `@stack` suffix), but pytest 9 reads a node's id from `item._id`, so the suffix was
    lost and the stack tests spread over both workers (shown on a 5-test project). Running after xdist's hook,
    this carries its renamed id into the attribute pytest 9 reads. Without xdist (`-n 0`) nothing is renamed."""
    from _pytest.nodeid import coerce_node_id  # private, like xdist's own rename: remove once xdist sets _id

    for item in items:
        renamed = item.__dict__.get("_nodeid")
        if isinstance(renamed, str) and renamed != item.nodeid:
            item._id = coerce_node_id(renamed)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = SandboxServer(Sandbox(seed=7, scale=1.0, anchor=ANCHOR, days=WORLD_DAYS)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[Sandbox]:
    sandbox_server.sandbox.reset()
    yield sandbox_server.sandbox
    sandbox_server.sandbox.clear_faults()


def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real credential or override from the developer's shell may reach a test."""
    prefixes = (*(f"{s.env_prefix}_" for s in discover_systems()), "IP_")
    for name in list(os.environ):
        if name.startswith(prefixes):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox,
             sandbox_server: SandboxServer) -> Settings:
    _scrub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    monkeypatch.setenv("IP_SANDBOX_URL", sandbox_server.url)
    monkeypatch.setenv("IP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IP_PARTITIONS_START", "2026-03-01")
    monkeypatch.setenv("IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS", "30")
    # the sandbox world is history (anchored in March 2026): syncs act on it, not only after their first run
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")
    for system in discover_systems():
        monkeypatch.setenv(f"{system.env_prefix}_BACKOFF_BASE_SECONDS", "0.01")
        monkeypatch.setenv(f"{system.env_prefix}_BACKOFF_CAP_SECONDS", "0.05")
    return Settings()


_INSTANCES: dict[str, dg.DagsterInstance] = {}


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """One ephemeral Dagster instance per test warehouse (so per test): `dg.materialize` without one builds a new
    instance each call, ~0.2 s of alembic stamping its in-memory SQLite, and a test that extracts five systems
    stream by stream made 51 of them (10 of its 44 s)."""
    key = settings.warehouse_database
    if key not in _INSTANCES:
        for previous in _INSTANCES.values():
            previous.dispose()
        _INSTANCES.clear()
        _INSTANCES[key] = dg.DagsterInstance.ephemeral()
    return _INSTANCES[key]


def materialize_stream(
    settings: Settings, system: str, stream: str, partition: str | None = None, *, full_refresh: bool = False,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    spec = get_system(system)
    asset = build_extract_asset(spec, spec.stream(stream), settings)
    run_config = {"ops": {asset.op.name: {"config": {"full_refresh": full_refresh}}}}
    return dg.materialize(
        [asset],
        resources={"warehouse": WarehouseResource(database=settings.warehouse_database)},
        partition_key=partition,
        run_config=run_config,
        raise_on_error=raise_on_error,
        instance=instance_for(settings),
    )


def materialize_all_partitions(settings: Settings, system: str, stream: str) -> list[dg.ExecuteInProcessResult]:
    partitioned = get_system(system).stream(stream).partitioned is not None
    return [materialize_stream(settings, system, stream, p) for p in (PARTITIONS if partitioned else [None])]


def warehouse_rows(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def loaded_keys(settings: Settings, system: str, stream: str) -> list[str]:
    """Every `_pk` in the raw table, duplicates included (so a duplicate shows up as a failed equality)."""
    return sorted(r[0] for r in warehouse_rows(settings, f'SELECT _pk FROM raw_{system}."{stream}"'))
