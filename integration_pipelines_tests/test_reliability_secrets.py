"""Secrets hygiene: run the whole demo flow with distinctive fake secrets in every secret variable, then look for
them everywhere the project writes: every process's stdout/stderr, Dagster's event log and compute logs (the
instance's storage, incl. run and materialization metadata), every table and column of the DuckDB warehouse
(incl. `_raw` payloads), the webhook landing folder (event files, error notes, dedupe markers), what the alert
channels received, the CLI's output, and the error text of failed runs.

The flow is `integration-pipelines demo` itself (sandbox, webhook receiver, activity simulator, `dagster dev`),
driven like a user: the nightly job for yesterday (every extract, core models, syncs, reconciliation), signed
webhooks from every provider (plus forged ones) ingested by the sensor, a run that fails, alerts, and the CLI.
Every system runs in *live* mode (its secrets set, `<SYSTEM>_BASE_URL` pointing at the sandbox): that is the
path where credentials come from the environment. The sandbox only accepts its own fake values (the spec's
`sandbox=`), so the successful flow uses those values, read from the environment; a second, failing leg gives
every system a distinctive *wrong* secret (`…FAKE-SECRET-<random>…`), gets 401s/SOAP faults from every emulator
through `dagster asset materialize` against the same instance, and checks that error text too.

Why the scanner is trusted: `test_the_scanner_finds_planted_secrets` plants secrets in every kind of file the
scan reads (DuckDB, SQLite, a real Dagster event log, Parquet, gzip, text) and sees each one found.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import duckdb
import httpx
import psutil
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from integration_pipelines.alerts import AlertSettings
from integration_pipelines.connectors.auth import OAuth2Auth
from integration_pipelines.connectors.errors import ApiError, AuthError
from integration_pipelines.connectors.http import HttpClient
from integration_pipelines.connectors.redaction import redact, register_secret
from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.connectors.runtime import _rebase
from integration_pipelines.connectors.spec import BasicAuthSpec, OAuth2AuthSpec
from integration_pipelines.schedules import partition_for
from integration_pipelines.settings import Settings
from integration_pipelines.webhooks.config import SANDBOX_SALESFORCE_ORG_IDS, WebhookSecrets, WebhookSettings
from integration_pipelines.webhooks.simulator import Delivery, Signer, Simulator, deliver

from .dagster_dev import BIN, CLI, PROJECT_ROOT, DagsterDev, Processes, clean_environment, free_port, wait_http

pytestmark = pytest.mark.reliability

NOT_SECRET = {"salesforce_webhook_organization_ids"}  # allowed org ids: an allow-list, not a credential


# -- the scanner --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    secret: str
    form: str
    where: str


def _needles(value: str) -> dict[str, str]:
    """The forms a secret could be written in: as is, URL-encoded, and inside any base64 text (three byte
    alignments; the edge groups, which mix in the neighbouring bytes, are dropped)."""
    forms = {"plain": value, "url-encoded": quote(value, safe="")}
    raw = value.encode()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        core = encoded[4 if offset else 0:len(encoded) - 4]
        if len(core) >= 12:
            forms[f"base64+{offset}"] = core
    return forms


@dataclass
class Coverage:
    files: int = 0
    duckdb_tables: int = 0
    raw_columns: int = 0
    sqlite_rows: int = 0
    materializations: int = 0
    texts: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class SecretScanner:
    """Finds any of `secrets` (name → value), or any issued-token `patterns`, in text, files and whole trees."""

    def __init__(self, secrets_by_name: Mapping[str, str], patterns: Mapping[str, re.Pattern[str]] | None = None,
                 derived: Mapping[str, str] | None = None) -> None:
        self.needles = {(name, form): text for name, value in secrets_by_name.items()
                        for form, text in _needles(value).items()}
        self.needles |= {(name, "derived"): value for name, value in (derived or {}).items()}
        self.patterns = dict(patterns or {})
        self.coverage = Coverage()

    def text(self, text: str, where: str) -> list[Finding]:
        self.coverage.texts += 1
        found = [Finding(name, form, where) for (name, form), needle in self.needles.items() if needle in text]
        found += [Finding(name, "pattern", where) for name, pattern in self.patterns.items() if pattern.search(text)]
        return found

    def tree(self, root: Path) -> list[Finding]:
        found: list[Finding] = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found += self.file(path, str(path.relative_to(root)))
        return found

    def file(self, path: Path, where: str) -> list[Finding]:
        self.coverage.files += 1
        head = path.read_bytes()[:16]
        if head.startswith(b"SQLite format 3\0"):
            kind, found = "sqlite", self._sqlite(path, where)
        elif head[8:12] == b"DUCK":
            kind, found = "duckdb", self._duckdb(path, where)
        elif head.startswith(b"PAR1"):
            kind, found = "parquet", self._parquet(path, where)
        elif head.startswith(b"\x1f\x8b"):
            kind, found = "gzip", self.text(gzip.decompress(path.read_bytes()).decode("utf-8", "replace"), where)
        else:
            kind, found = "text", self.text(path.read_bytes().decode("utf-8", "replace"), where)
        self.coverage.kinds[kind] = self.coverage.kinds.get(kind, 0) + 1
        return found

    def _relation_text(self, con: duckdb.DuckDBPyConnection, relation: str) -> str:
        columns = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        if not columns:
            return ""
        casts = ", ".join(f'CAST("{c.replace(chr(34), chr(34) * 2)}" AS VARCHAR)' for c in columns)
        rows = con.execute(f"SELECT {casts} FROM {relation}").fetchall()
        self.coverage.raw_columns += columns.count("_raw")
        return "\n".join(" | ".join("" if v is None else v for v in row) for row in rows)

    def _duckdb(self, path: Path, where: str) -> list[Finding]:
        found: list[Finding] = []
        with duckdb.connect(str(path), read_only=True) as con:
            tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                 "WHERE database_name = current_database()").fetchall()
            for schema, table in tables:
                relation = f'"{schema}"."{table}"'
                self.coverage.duckdb_tables += 1
                found += self.text(self._relation_text(con, relation), f"{where}:{schema}.{table}")
        return found

    def _parquet(self, path: Path, where: str) -> list[Finding]:
        with duckdb.connect() as con:
            relation = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
            return self.text(self._relation_text(con, relation), where)

    def _sqlite(self, path: Path, where: str) -> list[Finding]:
        found: list[Finding] = []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
                self.coverage.sqlite_rows += len(rows)
                text = "\n".join(" | ".join(_sqlite_value(v) for v in row) for row in rows)
                self.coverage.materializations += text.count('"ASSET_MATERIALIZATION"')
                found += self.text(text, f"{where}:{table}")
        return found


def _sqlite_value(value: Any) -> str:
    if isinstance(value, bytes):
        with contextlib.suppress(Exception):
            import zlib

            return zlib.decompress(value).decode("utf-8", "replace")
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


# -- the secrets --------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return name.lower().replace("_", "-")


def distinctive(name: str, prefix: str = "") -> str:
    """A value nobody else would ever write, traceable to its variable: `<prefix>FAKE-SECRET-<var>-<random>`."""
    return f"{prefix}FAKE-SECRET-{_slug(name)}-{secrets.token_hex(8)}"


VENDOR_PREFIX = {"STRIPE_API_KEY": "sk_test_", "HUBSPOT_TOKEN": "pat-na1-", "SHOPIFY_ACCESS_TOKEN": "shpat_"}


def system_secret_variables() -> dict[str, str]:
    """Every secret variable the system specs declare, with the fake value the sandbox accepts for it."""
    return {v.env: v.sandbox for s in discover_systems() for v in s.values.values() if v.secret}


def live_sandbox_environment(sandbox_url: str, secret_values: Mapping[str, str]) -> dict[str, str]:
    """Live mode for every system: all of its values from the environment, its base (and token) URL the sandbox."""
    env: dict[str, str] = {}
    for system in discover_systems():
        for value in system.values.values():
            env[value.env] = secret_values[value.env] if value.secret else value.sandbox
        env[f"{system.env_prefix}_BASE_URL"] = sandbox_url
        token_url = getattr(system.auth, "token_url", None)
        if token_url:
            env[f"{system.env_prefix}_TOKEN_URL"] = _rebase(token_url, sandbox_url)
    return env


def basic_auth_forms(secret_values: Mapping[str, str]) -> dict[str, str]:
    """The `Authorization: Basic` values a system would send: base64 of `user:password` (or client id:secret)."""
    forms = {}
    for system in discover_systems():
        auth, values = system.auth, {k: secret_values.get(v.env, v.sandbox) for k, v in system.values.items()}
        if isinstance(auth, BasicAuthSpec):
            pair = f"{values[auth.username]}:{values[auth.password]}"
        elif isinstance(auth, OAuth2AuthSpec):
            pair = f"{values[auth.client_id]}:{values[auth.client_secret]}"
        else:
            continue
        forms[f"{system.name} basic credentials"] = base64.b64encode(pair.encode()).decode()
    return forms


def webhook_secret_values() -> dict[str, str]:
    """A distinctive value for every webhook signing secret and path token (env name → value)."""
    values = {}
    for name in WebhookSecrets.model_fields:
        if name in NOT_SECRET:
            continue
        env = name.upper()
        if name == "standard_webhook_secret":  # Standard Webhooks: whsec_ + base64 key; keep it [A-Za-z0-9]
            while "+" in (key := base64.b64encode(secrets.token_bytes(24)).decode()) or "/" in key:
                pass
            values[env] = f"whsec_{key}"
        else:
            values[env] = distinctive(env)
    return values


# Tokens the emulators issue at runtime (OAuth access/refresh tokens, sessions): secrets we never configured.
# Refresh tokens are minted `<prefix><grant>.<nonce>.<signature>` (sandbox/oauth_grants.py).
_MINTED = r"g\d+(?:-[0-9a-f]{8})?\.[A-Za-z0-9_-]{24}\.[0-9a-f]{20}"
ISSUED_REFRESH_TOKENS = {
    "xero issued refresh token": re.compile(r"FAKE-xero-refresh-" + _MINTED),
    "quickbooks issued refresh token": re.compile(r"AB11FAKE" + _MINTED),
}
ISSUED_TOKENS = {
    "xero issued token": re.compile(r"FAKE-xero-(?:access|refresh)-[A-Za-z0-9_-]{20}"),
    "quickbooks issued token": re.compile(r"\.\.sandbox\.[A-Za-z0-9_-]{30}"),
    "salesforce session": re.compile(r"00D[A-Za-z0-9]{12}!AQ[A-Za-z0-9]{20}"),
    **ISSUED_REFRESH_TOKENS,
}
TOKEN_STORE = "data/secrets/tokens/"  # under the data folder: <IP_DATA_DIR>/secrets/tokens/<system>.json


def stored_refresh_tokens(data_dir: Path) -> dict[str, str]:
    """The refresh tokens a plain (unencrypted) token store holds, by file; encrypted files hold none readable."""
    found = {}
    for path in sorted((data_dir / "secrets" / "tokens").glob("*.json")):
        document = json.loads(path.read_text())
        if not document.get("encrypted"):
            found[f"stored in {path.name}"] = document["refresh_token"]
    return found


def only_in_a_plain_store(findings: list[Finding], root: Path, refresh_tokens: set[str]) -> list[Finding]:
    """The findings that are leaks: all of them, except an issued refresh token (one of the secrets named in
    `refresh_tokens`, or a match of ISSUED_REFRESH_TOKENS) inside a token store file that is not encrypted: the
    store's job is to hold it (docs/credentials.md). `root` is the folder the findings' places are relative to."""
    def legitimate(f: Finding) -> bool:
        where = f.where.split(":")[0]
        if not where.startswith(TOKEN_STORE) or not where.endswith(".json"):
            return False
        if f.secret not in ISSUED_REFRESH_TOKENS and f.secret not in refresh_tokens:
            return False
        return not json.loads((root / where).read_text()).get("encrypted")
    return [f for f in findings if not legitimate(f)]


# -- the alert channels --------------------------------------------------------------------------------------


class AlertInbox:
    """A Slack-compatible webhook, a generic JSON webhook and an SMTP server with AUTH, on loopback."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.mails: list[str] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                inbox.posts.append(f"{self.path}\n{body.decode('utf-8', 'replace')}")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

        class Mailbox:
            async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
                inbox.mails.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        self.smtp = Controller(Mailbox(), hostname="127.0.0.1", port=free_port(), auth_require_tls=False,
                               authenticator=lambda *args: AuthResult(success=True))
        self.smtp.start()

    def close(self) -> None:
        self.smtp.stop()
        self.http.shutdown()


def alert_environment(inbox: AlertInbox) -> dict[str, str]:
    """Every alert channel on, each secret distinctive (a Slack URL's path *is* its secret)."""
    return {
        "IP_ALERT_SLACK_WEBHOOK_URL": f"{inbox.url}/services/T0FAKE/B0FAKE/{distinctive('slack')}",
        "IP_ALERT_WEBHOOK_URL": f"{inbox.url}/hooks/{distinctive('alert-webhook')}",
        "IP_ALERT_SMTP_HOST": "127.0.0.1",
        "IP_ALERT_SMTP_PORT": str(inbox.smtp.port),
        "IP_ALERT_SMTP_USERNAME": "alerts@example.test",
        "IP_ALERT_SMTP_PASSWORD": distinctive("IP_ALERT_SMTP_PASSWORD"),
        "IP_ALERT_EMAIL_TO": "ops@example.test",
    }


def alert_secret_variables() -> list[str]:
    """The alert settings typed as secrets (SecretStr): found from the settings class, not listed by hand."""
    return [f"IP_ALERT_{name.upper()}" for name, f in AlertSettings.model_fields.items()
            if "SecretStr" in str(f.annotation)]


# -- webhooks from every provider ------------------------------------------------------------------------------


SALESFORCE_SESSION = f"00DFAKE!SESSION-SECRET-{secrets.token_hex(10)}"


def every_provider(simulator: Simulator, signer: Signer, client: httpx.Client, canary: str) -> list[Delivery]:
    """One genuine event per provider: the simulator's business events, plus hand-made ones for the rest (the
    Odoo one carries `canary`, a harmless value the scan must find where webhooks end up)."""
    sign, stamp = signer.sign, secrets.token_hex(4)
    made = [simulator.payment_succeeded(client), simulator.refund(client), simulator.new_lead(client),
            simulator.contact_changed(client), simulator.invoice_changed(client), simulator.stock_changed(client)]
    salesforce = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="'
        f'http://soap.sforce.com/2005/09/outbound"><OrganizationId>{SANDBOX_SALESFORCE_ORG_IDS}</OrganizationId>'
        f"<ActionId>04k000000000001AAA</ActionId><SessionId>{SALESFORCE_SESSION}</SessionId><Notification><Id>"
        f"04l00000000{stamp}A</Id><sObject xsi:type=\"sf:Account\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce."
        'com"><sf:Id>001000000000001AAA</sf:Id><sf:Name>Acme</sf:Name></sObject></Notification></notifications>'
        "</soapenv:Body></soapenv:Envelope>")
    made += [
        sign("standard", json.dumps({"type": "invoice.paid", "data": {"id": f"inv_{stamp}"}}).encode(),
             event_id=f"msg_{stamp}"),
        sign("square", json.dumps({"merchant_id": "M1", "type": "payment.updated", "event_id": f"sq-{stamp}",
                                   "data": {"type": "payment", "id": f"p-{stamp}",
                                            "object": {"payment": {"id": f"p-{stamp}"}}}}).encode()),
        sign("xero", json.dumps({"events": [{"resourceId": f"r-{stamp}", "eventCategory": "INVOICE",
                                             "eventType": "UPDATE", "tenantId": "t1"}],
                                 "firstEventSequence": 1, "lastEventSequence": 1, "entropy": stamp}).encode()),
        sign("odoo", json.dumps({"_action": "write", "_id": 3, "_model": "res.partner", "name": canary}).encode()),
        sign("salesforce", salesforce.encode()),
    ]
    return made


def forged(delivery: Delivery) -> Delivery:
    """The same request with its signature (or path token) wrong: the receiver must refuse it quietly."""
    if delivery.provider in ("forms", "odoo"):
        return Delivery(delivery.provider, f"/webhooks/{delivery.provider}/{distinctive('wrong-token')}",
                        delivery.body, delivery.headers)
    if delivery.provider == "salesforce":  # trusted by organization id
        body = delivery.body.replace(SANDBOX_SALESFORCE_ORG_IDS.encode(), b"00DWRONGORG0001AAA")
        return Delivery(delivery.provider, delivery.path, body, delivery.headers)
    headers = {k: (distinctive("forged") if any(w in k for w in ("signature", "hmac")) else v)
               for k, v in delivery.headers.items()}
    return Delivery(delivery.provider, delivery.path, delivery.body, headers)


# -- the demo ------------------------------------------------------------------------------------------------


@dataclass
class Demo:
    ui: DagsterDev
    env: dict[str, str]
    root: Path
    processes: Processes
    sandbox_url: str
    receiver_url: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"


@pytest.fixture
def inbox() -> Iterator[AlertInbox]:
    inbox = AlertInbox()
    yield inbox
    inbox.close()


@pytest.fixture
def demo(tmp_path: Path, inbox: AlertInbox) -> Iterator[Demo]:
    """`integration-pipelines demo` with every secret variable set; every descendant is stopped afterwards."""
    ports = {"ui": free_port(), "sandbox": free_port(), "webhooks": free_port()}
    sandbox_url, receiver_url = f"http://127.0.0.1:{ports['sandbox']}", f"http://127.0.0.1:{ports['webhooks']}"
    env = clean_environment()
    env |= live_sandbox_environment(sandbox_url, system_secret_variables())
    env |= webhook_secret_values() | alert_environment(inbox)
    env["SALESFORCE_WEBHOOK_ORGANIZATION_IDS"] = SANDBOX_SALESFORCE_ORG_IDS  # live Salesforce: the org allow-list
    env |= {"DAGSTER_HOME": str(tmp_path / "data" / "dagster"), "IP_DATA_DIR": str(tmp_path / "data"),
            "IP_TIMEZONE": "UTC", "IP_ALERT_UI_BASE_URL": f"http://127.0.0.1:{ports['ui']}",
            "IP_WEBHOOK_SENSOR_INTERVAL_SECONDS": "2", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    for system in discover_systems():  # a failing run fails fast
        env[f"{system.env_prefix}_MAX_RETRIES"] = "1"
        env[f"{system.env_prefix}_BACKOFF_BASE_SECONDS"] = "0.01"
        env[f"{system.env_prefix}_BACKOFF_CAP_SECONDS"] = "0.05"
    processes = Processes(tmp_path / "logs")
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / ".caught-up").write_text("skipped by the test\n")  # the test launches its own nightly
    process = processes.spawn("demo", [*CLI, "demo", "--port", str(ports["ui"]), "--sandbox-port",
                                       str(ports["sandbox"]), "--webhook-port", str(ports["webhooks"]),
                                       "--data-dir", str(tmp_path / "data")], env, PROJECT_ROOT)
    descendants: list[psutil.Process] = []
    try:
        wait_http(f"http://127.0.0.1:{ports['ui']}/server_info", process, "the demo's dagster dev",
                  processes.log_dir / "demo.log")
        yield Demo(DagsterDev(f"http://127.0.0.1:{ports['ui']}"), env, tmp_path, processes, sandbox_url,
                   receiver_url)
    finally:
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(process.pid).children(recursive=True)
        processes.stop(grace=90)  # the demo stops its own children (each in its own group) on SIGTERM
        _, alive = psutil.wait_procs(descendants, timeout=30)
        left = _running(alive)
        described = _describe(left)
        for leftover in left:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        assert not left, f"the demo left processes behind: {described}"


def stop_demo(demo: Demo) -> None:
    """Stop every demo process before the scan, so logs are flushed and the warehouse is closed."""
    process = demo.processes.started[0][1]
    descendants = psutil.Process(process.pid).children(recursive=True)
    demo.processes.stop(grace=90)
    _, alive = psutil.wait_procs(descendants, timeout=30)
    assert not _running(alive), f"the demo left processes behind: {_describe(alive)}"


def _running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running: a zombie has exited (in a container whose PID 1 does not reap orphans, an
    orphaned zombie stays in the table for good), so only its entry is left."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def _describe(processes: list[psutil.Process]) -> list[str]:
    """pid, status, parent and command line of each process, for a failure message that says what was left."""
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid} {process.status()} ppid={process.ppid()} {process.cmdline()[:6]}")
        except psutil.Error as exc:
            described.append(f"{process.pid} ({type(exc).__name__})")
    return described


def run_cli(demo: Demo, name: str, args: list[str], env: Mapping[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A CLI command as a user runs it, its stdout and stderr kept under logs/ for the scan."""
    done = subprocess.run(args, env=dict(env or demo.env), cwd=demo.root, capture_output=True, text=True,
                          timeout=timeout)
    (demo.processes.log_dir / f"{name}.log").write_text(f"$ {args}\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done


def failure_texts(ui: DagsterDev, run_id: str) -> list[str]:
    """The error text of every failure event of a run: message, stack and every cause, as the UI shows them."""
    texts = []
    for event in ui.events(run_id):
        error = event.get("error")
        if error:
            parts = [error["message"], *error["stack"]]
            for cause in error.get("causes") or []:
                parts += [cause["message"], *cause["stack"]]
            texts.append("\n".join(parts))
    return texts


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def _command_lines(pid: int) -> list[str]:
    lines = []
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            lines.append(" ".join(process.cmdline()))
    return lines


def _stale_landing(data_dir: Path, before: float) -> list[Path]:
    """Event files landed before `before` that no run has applied yet (still in landing/ or claimed/)."""
    return [p for area in ("landing", "claimed") for p in (data_dir / area).rglob("*.json")
            if p.stat().st_mtime <= before]


@pytest.mark.slow
@pytest.mark.xdist_group("stack")  # meant to share one worker: see the Makefile
@pytest.mark.timeout(900)  # a whole demo flow on 2 cores: a bound on a hang, not a speed claim
def test_no_secret_leaks_anywhere_in_the_demo_flow(demo: Demo, inbox: AlertInbox):
    ui, env = demo.ui, demo.env
    yesterday = partition_for(datetime.now(UTC), "UTC")
    canary = f"CANARY-{secrets.token_hex(8)}"  # not a secret: proves the scan reads where data really goes
    # the successful flow: every extract, core, syncs, reconciliation (the nightly job runs in one process)
    nightly = ui.launch_run("nightly_sync", partition=yesterday, tags={"integration_pipelines/test": canary})

    # meanwhile: the failing leg, a user with a wrong secret in every variable, against the same instance
    wrong = {name: distinctive(name, VENDOR_PREFIX.get(name, "")) for name in system_secret_variables()}
    wrong_env = env | live_sandbox_environment(demo.sandbox_url, wrong)
    first_streams = [f"{s.name}/{next(st.name for st in s.streams if st.partitioned is None)}"
                     for s in discover_systems() if any(st.partitioned is None for st in s.streams)]
    partitioned = [f"{s.name}/{next(st.name for st in s.streams if st.partitioned is not None)}"
                   for s in discover_systems() if any(st.partitioned is not None for st in s.streams)]
    in_process = json.dumps({"execution": {"config": {"in_process": {}}}})
    materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "integration_pipelines.definitions",
                   "--config-json", in_process, "--select"]
    failing_leg = [
        subprocess.Popen([*materialize, ",".join(first_streams)], env=wrong_env, cwd=demo.root, text=True,
                         stdout=(demo.processes.log_dir / "wrong-secrets-1.log").open("w"), stderr=subprocess.STDOUT),
        subprocess.Popen([*materialize, ",".join(partitioned), "--partition", yesterday], env=wrong_env,
                         cwd=demo.root, text=True, stdout=(demo.processes.log_dir / "wrong-secrets-2.log").open("w"),
                         stderr=subprocess.STDOUT),
    ]

    # meanwhile: signed webhooks from every provider, and forged ones, to the demo's receiver
    hook_secrets = WebhookSecrets(**{name: env[name.upper()] for name in WebhookSecrets.model_fields
                                     if name.upper() in env})
    signer = Signer(hook_secrets, WebhookSettings(public_url=demo.receiver_url))
    with httpx.Client(timeout=30) as client:
        genuine = every_provider(Simulator(demo.sandbox_url, signer), signer, client, canary)
        statuses = {d.provider: deliver(client, demo.receiver_url, d, attempts=1) for d in genuine}
        refused = {d.provider: deliver(client, demo.receiver_url, forged(d), attempts=1) for d in genuine}
    delivered_at = time.time()
    assert all(200 <= s < 300 for s in statuses.values()), statuses
    assert all(400 <= s < 500 for s in refused.values()), refused

    for process in failing_leg:
        assert process.wait(timeout=300) != 0, "materializing with wrong secrets did not fail"
    assert ui.wait_run(nightly, timeout=420) == "SUCCESS", failure_texts(ui, nightly)[:3]

    # a run that fails inside dagster dev: the Stripe API keeps answering 5xx
    httpx.put(f"{demo.sandbox_url}/_sandbox/faults/stripe", json={"error_rate": 1.0}).raise_for_status()
    faulted = ui.launch_run("__ASSET_JOB", assets=[["stripe", "customers"]], partition=yesterday)
    assert ui.wait_run(faulted) == "FAILURE"
    httpx.delete(f"{demo.sandbox_url}/_sandbox/faults").raise_for_status()

    # every failed run said why, in words, and the sensor applied every webhook we sent
    failed_runs = ui.runs(tags=None, created_after=None)
    failed = {r["runId"]: failure_texts(ui, r["runId"]) for r in failed_runs if r["status"] == "FAILURE"}
    errors = "\n".join(t for texts in failed.values() for t in texts)
    assert len(failed) >= 3, failed.keys()
    for expected in ("Stripe rejected our credentials (401", "HubSpot rejected our credentials (401",
                     "QuickBooks Online refused to issue an access token", "Odoo refused the login",
                     "SOAP fault", "500"):
        assert expected in errors, f"no failure said {expected!r}"
    wait_for(lambda: not _stale_landing(demo.data_dir, delivered_at), 180, "the sensor to apply our webhooks")
    wait_for(lambda: sum("run of " in p for p in inbox.posts) >= 2 and any("run of " in m for m in inbox.mails),
             180, "the failed-run alerts on every channel")

    cli_outputs = [run_cli(demo, name, [*CLI, *args]) for name, args in (
        ("cli-systems", ["systems"]), ("cli-tables", ["tables"]), ("cli-webhooks-status", ["webhooks", "status"]),
        ("cli-query", ["query", "SELECT * FROM raw_webhooks.events"]))]
    assert all(done.returncode == 0 for done in cli_outputs), [d.stderr[-500:] for d in cli_outputs]
    assert "sandbox" not in cli_outputs[0].stdout and cli_outputs[0].stdout.count(" live ") == len(
        discover_systems()), "not every system ran in live mode (credentials from the environment)"
    # a process's command line is readable by every user of the machine
    command_lines = _command_lines(demo.processes.started[0][1].pid)
    stop_demo(demo)

    # the scan: every secret variable, in every form, everywhere
    names = [*system_secret_variables(), *webhook_secret_values(), *alert_secret_variables()]
    configured = {name: env[name] for name in names}
    assert len(set(configured.values())) == len(configured), "two variables share a value: findings would be ambiguous"
    all_secrets = configured | {f"wrong {k}": v for k, v in wrong.items()}
    all_secrets["salesforce SessionId"] = SALESFORCE_SESSION
    # the refresh tokens the emulators issued and the token store kept (plain: IP_TOKEN_STORE_KEY is not set here),
    # each looked for in every form, everywhere; the store itself is the one place allowed to hold them
    stored = stored_refresh_tokens(demo.data_dir)
    assert "stored in xero.json" in stored, "live Xero rotates its refresh token: the store must hold the newest"
    for name, token in stored.items():
        assert any(p.fullmatch(token) for p in ISSUED_REFRESH_TOKENS.values()), f"{name} is not a token it issued"
    all_secrets |= stored
    scanner = SecretScanner(all_secrets, ISSUED_TOKENS, basic_auth_forms(configured) | {
        f"wrong {k}": v for k, v in basic_auth_forms(wrong).items()})
    in_tree = scanner.tree(demo.root)
    assert f"{TOKEN_STORE}xero.json" in {f.where for f in in_tree if f.secret == "stored in xero.json"}, \
        "the scan must find the token it is told to look for where it is kept"
    findings = only_in_a_plain_store(in_tree, demo.root, set(stored))
    findings += [f for i, text in enumerate(inbox.posts) for f in scanner.text(text, f"alert post {i}")]
    findings += [f for i, text in enumerate(inbox.mails) for f in scanner.text(text, f"alert email {i}")]
    findings += [f for run_id, texts in failed.items() for t in texts for f in scanner.text(t, f"error of {run_id}")]
    findings += [f for line in command_lines for f in scanner.text(line, f"command line {line[:60]}")]
    report = sorted({(f.secret, f.form, f.where) for f in findings})
    assert report == [], "secrets leaked:\n" + "\n".join(f"{s} ({form}) in {where}" for s, form, where in report)

    # ... and the scan really read what it claims to have read: the canary is found in the warehouse, the
    # processed event files and the run storage; the counts say every kind of storage was opened
    seen = {f.where for f in SecretScanner({"canary": canary}).tree(demo.root)}
    for place in ("data/warehouse.duckdb:raw_webhooks.events", "data/processed/odoo/", "data/dagster/history/runs.db"):
        assert any(where.startswith(place) for where in seen), f"the canary is not in {place}: {sorted(seen)}"
    assert command_lines, "no demo process was running"
    coverage = scanner.coverage
    assert coverage.duckdb_tables >= 40 and coverage.raw_columns >= 30, coverage
    assert coverage.materializations >= 40 and coverage.kinds.get("sqlite", 0) >= 3, coverage
    assert list((demo.data_dir / "processed").rglob("*.json")) and list((demo.data_dir / "seen").rglob("*")), \
        "no processed event files or dedupe markers were scanned"
    compute_logs = [p for p in (demo.data_dir / "dagster" / "storage").rglob("*") if p.suffix in (".out", ".err")]
    assert compute_logs, "no compute logs were scanned"
    print(f"\nscanned {coverage.files} files ({coverage.kinds}), {coverage.duckdb_tables} DuckDB tables, "
          f"{coverage.sqlite_rows} SQLite rows, {len(inbox.posts)} alert posts, {len(inbox.mails)} alert emails, "
          f"{len(failed)} failed runs; {len(all_secrets)} secrets in {len(scanner.needles)} forms")


# -- the token store: issued refresh tokens are kept there, and only there (encrypted: nowhere readable) ----------


def _live_oauth_environment(sandbox_url: str, data_dir: Path) -> dict[str, str]:
    """Xero and QuickBooks in live mode against the emulators, every value from the environment (the spec's sandbox
    values, which the emulators accept: the standing grant), nothing else of this project's configuration."""
    env = clean_environment() | {"IP_DATA_DIR": str(data_dir), "IP_SANDBOX_URL": sandbox_url, "COLUMNS": "200",
                                 "PYTHONUNBUFFERED": "1"}
    for name in ("xero", "quickbooks"):
        system = next(s for s in discover_systems() if s.name == name)
        env |= {value.env: value.sandbox for value in system.values.values()}
        env[f"{system.env_prefix}_BASE_URL"] = sandbox_url
        env[f"{system.env_prefix}_TOKEN_URL"] = _rebase(system.auth.token_url, sandbox_url)
    return env


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain store", "IP_TOKEN_STORE_KEY"])
def test_issued_refresh_tokens_are_in_the_token_store_only_and_nowhere_when_it_is_encrypted(
        encrypted, sandbox, sandbox_server, tmp_path):
    """Two runs a day apart, each a separate `integration-pipelines extract` process per system in live mode:
    Xero rotates its refresh token on every refresh, QuickBooks once it is older than 24 hours, so each run stores
    a newly issued token. Then every file of the folder (warehouse, token store, lock files, the runs' output) is
    searched for every refresh token the emulators issued, in every form, and for the store's key. Without a key
    the store is the one place that holds them (it must, or the next process could not refresh); with
    `IP_TOKEN_STORE_KEY` they are nowhere, store included, and neither is the key."""
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    env = _live_oauth_environment(sandbox_server.url, data_dir)
    key = distinctive("IP_TOKEN_STORE_KEY") if encrypted else None
    if key:
        env["IP_TOKEN_STORE_KEY"] = key
    xero, quickbooks = sandbox.emulator("xero"), sandbox.emulator("quickbooks")
    for run in range(2):
        quickbooks.advance_clock(25 * 3600)  # a day later: QuickBooks answers with a new refresh token
        xero.advance_clock(25 * 3600)
        for target in ("xero/contacts", "quickbooks/customers"):
            done = subprocess.run([*CLI, "extract", target], env=env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=300)
            (logs / f"run{run}-{target.replace('/', '-')}.log").write_text(done.stdout + "\n" + done.stderr)
            assert done.returncode == 0, done.stderr[-2000:]

    configured = {env[v.env] for s in discover_systems() for v in s.values.values() if v.env in env}
    issued = {f"{name} issued {i}": token
              for name, emulator in (("xero", xero), ("quickbooks", quickbooks))
              for i, token in enumerate(t for t in emulator.refresh_tokens if t.startswith(emulator.refresh_prefix)
                                        and t not in configured)}
    assert sum(n.startswith("xero") for n in issued) >= 2 and sum(n.startswith("quickbooks") for n in issued) >= 2
    files = {p.name: json.loads(p.read_text()) for p in (data_dir / "secrets" / "tokens").glob("*.json")}
    assert set(files) == {"xero.json", "quickbooks.json"}
    assert all(document["encrypted"] is encrypted for document in files.values())

    scanner = SecretScanner(issued | ({"IP_TOKEN_STORE_KEY": key} if key else {}), ISSUED_REFRESH_TOKENS)
    findings = scanner.tree(tmp_path)
    assert scanner.coverage.kinds.get("duckdb") == 1 and scanner.coverage.duckdb_tables >= 3, scanner.coverage
    if encrypted:
        report = sorted({(f.secret, f.form, f.where) for f in findings})
        assert report == [], "found with the store encrypted:\n" + "\n".join(map(str, report))
        return
    leaks = sorted({(f.secret, f.form, f.where) for f in only_in_a_plain_store(findings, tmp_path, set(issued))})
    assert leaks == [], "issued refresh tokens outside the token store:\n" + "\n".join(map(str, leaks))
    kept = {f.where for f in findings if f.form == "plain" and f.secret in issued}
    assert kept == {f"{TOKEN_STORE}xero.json", f"{TOKEN_STORE}quickbooks.json"}, kept
    assert {files["xero.json"]["refresh_token"], files["quickbooks.json"]["refresh_token"]} <= set(issued.values())


# -- the scanner is trusted because it finds what is planted ------------------------------------------------------


def test_the_scanner_finds_planted_secrets(tmp_path: Path):
    planted = {f"S{i}": distinctive(f"planted-{i}") for i in range(7)}
    basic = base64.b64encode(f"user:{planted['S6']}".encode()).decode()

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:  # compressed columnar storage, nested JSON
        con.execute("CREATE SCHEMA raw_x")
        con.execute("CREATE TABLE raw_x.t AS SELECT range AS id, 'filler ' || range AS note, "
                    "CASE WHEN range = 4321 THEN '{\"nested\": {\"key\": \"' || $s || '\"}}' END AS _raw "
                    "FROM range(10000)", {"s": planted["S0"]})
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as con:
        con.execute("CREATE TABLE t (a TEXT, b BLOB)")
        con.execute("INSERT INTO t VALUES ('x', ?)", [f"blob {planted['S1']} blob".encode()])
        con.commit()
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "event.json").write_text(json.dumps({"headers": {"x": planted["S2"]}}))
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT '{planted['S3']}' AS v) TO '{tmp_path / 'spool.parquet'}' (FORMAT parquet)")
    (tmp_path / "run.log.gz").write_bytes(gzip.compress(f"GET /?key={quote(planted['S4'], safe='')}".encode()))
    (tmp_path / "auth.txt").write_text(f"Authorization: Basic {basic}")

    @dg.asset
    def leaky(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]  # (Dagster reads the annotation)
        context.log.info(f"connecting with {planted['S5']}")
        return dg.MaterializeResult(metadata={"token": planted["S5"]})

    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        assert dg.materialize([leaky], instance=instance).success

    scanner = SecretScanner(planted, ISSUED_TOKENS)
    found = {(f.secret, f.where.split(":")[0]) for f in scanner.tree(tmp_path)}
    assert ("S0", "warehouse.duckdb") in found
    assert ("S1", "other.db") in found
    assert ("S2", "landing/event.json") in found
    assert ("S3", "spool.parquet") in found
    assert ("S4", "run.log.gz") in found
    assert any(s == "S5" and w.startswith("dagster_home") for s, w in found), found
    assert ("S6", "auth.txt") in found  # inside base64 only: found by its base64 forms
    assert scanner.coverage.materializations >= 1
    assert scanner.text(f"Bearer FAKE-xero-access-{'a' * 32}", "header")[0].form == "pattern"
    clean = SecretScanner({"S": distinctive("never-written")}, {})
    assert clean.tree(tmp_path) == []


# -- leaks found while writing this suite, each pinned at its source --------------------------------------------


def _pieces(secret: str, size: int = 8) -> list[str]:
    """Every `size`-long piece of a secret: finding any of them in a text is a partial leak."""
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def test_a_secret_cut_by_an_excerpt_is_still_redacted():
    """Error messages quote an excerpt of the vendor's body (`text[:300]`); when the cut falls inside an echoed
    secret, the half before the cut used to survive redaction, which only knew whole secrets."""
    secret = distinctive("echoed-key")
    register_secret(secret)
    # the 300-char excerpt of this body ends 14 characters into the secret
    body = "<html><body>" + "x" * (300 - 12 - 14) + secret + " was refused</body></html>"
    transport = httpx.MockTransport(lambda request: httpx.Response(400, text=body))
    with (HttpClient(system="Vendor", base_url="http://vendor.invalid", transport=transport) as client,
          pytest.raises(ApiError) as refused):
        client.request("GET", "/things")
    shown = f"{refused.value} {refused.value.body}"
    assert "x" * 20 in shown, "the excerpt itself must still be shown"
    assert not [p for p in _pieces(secret) if p in shown], shown[-120:]

    # the same cut at an OAuth token endpoint's error (a plain-text body, excerpted to 200 characters)
    token_body = "y" * (200 - 10) + secret
    auth = OAuth2Auth(system="Vendor", token_url="http://vendor.invalid/token", client_id="id",
                      client_secret=distinctive("client-secret"), grant_type="client_credentials")
    with pytest.raises(AuthError) as rejected:
        auth._accept_token_response(httpx.Response(401, text=token_body))
    assert not [p for p in _pieces(secret) if p in str(rejected.value)], str(rejected.value)[-80:]


def test_an_alert_redacts_credentials_its_own_process_never_used(tmp_path: Path):
    """Alerts are sent from the daemon, which never resolves a system: its redaction registry knew only the alert
    channels' secrets, so a system's or a webhook's secret inside forwarded error text went out to Slack/email."""
    api_key, webhook_secret = distinctive("STRIPE_API_KEY", "sk_test_"), distinctive("SQUARE_WEBHOOK_SIGNATURE_KEY")
    script = (
        "from integration_pipelines.alerts import Alert, Alerter\n"
        "from integration_pipelines.settings import Settings\n"
        "alerter = Alerter(Settings())\n"
        f"print(Alert('run:x', 'run of nightly_sync failed', 'Run x failed.', 'http://ui',"
        f" first_error='key {api_key} and {webhook_secret} in an error').text())\n")
    env = clean_environment() | {"STRIPE_API_KEY": api_key, "SQUARE_WEBHOOK_SIGNATURE_KEY": webhook_secret,
                                 "IP_DATA_DIR": str(tmp_path)}
    done = subprocess.run([str(BIN / "python"), "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=True)
    assert "run of nightly_sync failed" in done.stdout
    assert api_key not in done.stdout and webhook_secret not in done.stdout, done.stdout


def test_a_motherduck_token_in_the_warehouse_setting_is_redacted():
    """`IP_WAREHOUSE` may be `md:<db>?motherduck_token=<token>`; the database string is printed (the `tables`
    title, lock messages), so the token must be known to redaction from the moment settings are read."""
    token = distinctive("motherduck_token")
    settings = Settings(warehouse=f"md:analytics?motherduck_token={token}&saas_mode=true")
    shown = redact(f"warehouse: {settings.warehouse_database}")
    assert token not in shown and shown.startswith("warehouse: md:analytics?motherduck_token=***")
