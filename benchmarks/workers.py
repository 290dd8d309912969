"""What runs inside each measured child process: `python -m benchmarks.workers <name> '<json args>'`.

Every worker imports what it needs itself (imports are part of what a user pays), does its work, and prints one
`RESULT {json}` line. The parent measures wall time, CPU time and peak RSS from outside (benchmarks/harness.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .synthetic_stripe import API_KEY, DAY_START, PARTITION

PAGE_SIZE = 100


def _window() -> dict[str, Any]:
    return {"limit": PAGE_SIZE, "created[gte]": DAY_START, "created[lt]": DAY_START + 86_400}


# -- 1. extract + load --------------------------------------------------------------------------------------
def extract_project(args: dict[str, Any]) -> dict[str, Any]:
    """This project's `stripe/charges` asset, materialized as a user would (dagster.materialize, one daily
    partition holding every record). IP_SANDBOX_URL / IP_DATA_DIR / STRIPE_REQUESTS_PER_SECOND come from the
    parent's environment for this child."""
    import dagster as dg
    import duckdb

    from integration_pipelines.assets.extract import build_extract_asset
    from integration_pipelines.connectors.registry import get_system
    from integration_pipelines.resources import WarehouseResource
    from integration_pipelines.settings import Settings

    started = time.perf_counter()
    settings = Settings()
    spec = get_system("stripe")
    asset = build_extract_asset(spec, spec.stream("charges"), settings)
    dg.materialize([asset], resources={"warehouse": WarehouseResource(database=settings.warehouse_database)},
                   partition_key=PARTITION)
    work = time.perf_counter() - started
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM raw_stripe.charges").fetchone()[0]
        log = con.execute("""SELECT pages, requests, records, inserted, updated, unchanged,
                                    epoch(finished_at) - epoch(started_at)
                             FROM ops.extract_log ORDER BY finished_at DESC LIMIT 1""").fetchone()
    return {"rows": rows, "work_seconds": work, "pages": log[0], "requests": log[1], "records_read": log[2],
            "inserted": log[3], "updated": log[4], "unchanged": log[5], "rows_written": log[3] + log[4],
            "extract_seconds": log[6]}


def _last_id(body: bytes) -> tuple[int, str | None, bool]:
    """Records on a page, the last one's id and `has_more`, found with byte searches instead of a JSON parse,
    so the two transport-only clients below cost next to nothing per record. Only the synthetic records
    (`ch_bench…` ids) are recognized; a refund inside a record carries a `re_bench` id."""
    marker = b'{"id":"ch_bench'
    count = body.count(marker)
    at = body.rfind(marker)
    last = body[at + 7:at + 23].decode() if at >= 0 else None
    return count, last, b'"has_more":true' in body[:100]


def extract_server_alone(args: dict[str, Any]) -> dict[str, Any]:
    """The server's own pace: a raw-socket HTTP/1.1 client on one keep-alive connection reading every page
    of the same requests the floor makes and discarding it. Its wall time is the most any client could gain
    from a faster server; it must be small against every competitor's, or the server is the floor."""
    import socket
    from urllib.parse import urlencode, urlsplit

    started = time.perf_counter()
    target = urlsplit(args["url"])
    requests = records = received = 0
    with socket.create_connection((target.hostname, target.port)) as sock, sock.makefile("rb") as stream:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        params: dict[str, Any] = _window()
        while True:
            sock.sendall(f"GET /v1/charges?{urlencode(params)} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                         f"Authorization: Bearer {API_KEY}\r\n\r\n".encode())
            requests += 1
            status = stream.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"server answered {status!r}")
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = stream.read(length)
            received += len(body)
            count, last, has_more = _last_id(body)
            records += count
            if not has_more or not last:
                break
            params = {**_window(), "starting_after": last}
    return {"rows": records, "work_seconds": time.perf_counter() - started, "requests": requests,
            "bytes": received}


def extract_httpx_alone(args: dict[str, Any]) -> dict[str, Any]:
    """The transport every Python competitor uses: httpx reading every page (the floor's requests) without
    parsing it. The floor's wall minus this is what parsing, NDJSON and the load cost."""
    import httpx

    started = time.perf_counter()
    requests = records = 0
    with httpx.Client(base_url=args["url"], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        params: dict[str, Any] = _window()
        while True:
            response = client.get("/v1/charges", params=params)
            requests += 1
            response.raise_for_status()
            count, last, has_more = _last_id(response.content)
            records += count
            if not has_more or not last:
                break
            params = {**_window(), "starting_after": last}
    return {"rows": records, "work_seconds": time.perf_counter() - started, "requests": requests}


def extract_floor(args: dict[str, Any]) -> dict[str, Any]:
    """The floor: a bare httpx loop writing pages to NDJSON, then one DuckDB `read_json` (no orchestration, no
    retries, no keys, no state)."""
    import duckdb
    import httpx

    started = time.perf_counter()
    folder = Path(args["dir"])
    ndjson = folder / "charges.ndjson"
    requests = 0
    with httpx.Client(base_url=args["url"], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client, \
            open(ndjson, "w", encoding="utf-8") as out:
        params = _window()
        while True:
            response = client.get("/v1/charges", params=params)
            requests += 1
            response.raise_for_status()
            body = response.json()
            data = body["data"]
            out.writelines(json.dumps(record) + "\n" for record in data)
            if not body["has_more"] or not data:
                break
            params = {**_window(), "starting_after": data[-1]["id"]}
    with duckdb.connect(str(folder / "floor.duckdb")) as con:
        con.execute("CREATE TABLE charges AS SELECT * FROM read_json(?, format = 'newline_delimited')",
                    [str(ndjson)])
        rows = con.execute("SELECT count(*) FROM charges").fetchone()[0]
    return {"rows": rows, "work_seconds": time.perf_counter() - started, "requests": requests}


def extract_dlt(args: dict[str, Any]) -> dict[str, Any]:
    """dlt's `rest_api` source into DuckDB, default settings (write disposition `append`, nested lists into
    child tables), with `loader_file_format` as given (None = dlt's default for DuckDB). Stripe's
    `starting_after` cursor is the last record's id, which no built-in dlt paginator expresses, so it gets the
    few-line custom paginator a dlt user writes; it stops on a short page (at most one extra, empty request)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt
    from dlt.sources.helpers.rest_client.paginators import BasePaginator
    from dlt.sources.rest_api import rest_api_source

    class StripePaginator(BasePaginator):
        def __init__(self) -> None:
            super().__init__()
            self.after: str | None = None

        def update_state(self, response, data=None) -> None:  # type: ignore[no-untyped-def]
            if not data or len(data) < PAGE_SIZE:
                self._has_next_page = False
            else:
                self.after = data[-1]["id"]

        def update_request(self, request) -> None:  # type: ignore[no-untyped-def]
            request.params["starting_after"] = self.after

    started = time.perf_counter()
    folder = Path(args["dir"])
    source = rest_api_source({
        "client": {"base_url": args["url"], "auth": {"type": "bearer", "token": API_KEY},
                   "paginator": StripePaginator()},
        "resources": [{"name": "charges", "endpoint": {"path": "v1/charges", "params": _window(),
                                                       "data_selector": "data"}}],
    })
    pipeline = dlt.pipeline(pipeline_name="bench_dlt", destination=dlt.destinations.duckdb(str(folder / "dlt.duckdb")),
                            dataset_name="raw_stripe", pipelines_dir=str(folder / "pipelines"))
    run_kwargs = {"loader_file_format": args["format"]} if args.get("format") else {}
    pipeline.run(source, **run_kwargs)
    work = time.perf_counter() - started
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM charges")[0][0]
    return {"rows": rows, "work_seconds": work}


# -- 2. incremental no-op over every sandbox stream --------------------------------------------------------
def noop_sandbox(args: dict[str, Any]) -> dict[str, Any]:
    """Materialize every extract asset of every system against the real sandbox twice; report the second pass
    per stream from ops.extract_log: requests, records read, rows written (inserted + updated), seconds."""
    from datetime import UTC, datetime

    import dagster as dg
    import duckdb

    from integration_pipelines.assets.extract import build_extract_asset
    from integration_pipelines.connectors.registry import discover_systems
    from integration_pipelines.resources import WarehouseResource
    from integration_pipelines.sandbox.app import Sandbox
    from integration_pipelines.sandbox.server import SandboxServer
    from integration_pipelines.settings import Settings

    anchor = datetime(2026, 3, 10, tzinfo=UTC)
    partition = "2026-03-09"
    server = SandboxServer(Sandbox(seed=7, scale=1.0, anchor=anchor, days=3)).start()
    os.environ["IP_SANDBOX_URL"] = server.url
    settings = Settings()
    resource = WarehouseResource(database=settings.warehouse_database)
    chosen = {name for name in args.get("systems", "").split(",") if name}
    systems = [s for s in discover_systems() if not chosen or s.name in chosen]
    failures: dict[str, str] = {}
    passes: list[float] = []
    try:
        for _ in range(2):
            started = time.perf_counter()
            for system in systems:
                for stream in system.streams:
                    asset = build_extract_asset(system, stream, settings)
                    key = f"{system.name}/{stream.name}"
                    try:
                        dg.materialize([asset], resources={"warehouse": resource},
                                       partition_key=partition if stream.partitioned else None)
                    except Exception as exc:  # a stream in development must not hide the others' figures
                        failures[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            passes.append(time.perf_counter() - started)
    finally:
        server.stop()
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        rows = con.execute("""
            WITH ranked AS (
                SELECT *, row_number() OVER (PARTITION BY system, stream, state_key ORDER BY finished_at) AS n
                FROM ops.extract_log)
            SELECT system || '/' || stream, max(requests) FILTER (WHERE n = 2), max(records) FILTER (WHERE n = 2),
                   max(inserted + updated) FILTER (WHERE n = 2),
                   max(epoch(finished_at) - epoch(started_at)) FILTER (WHERE n = 2),
                   max(requests) FILTER (WHERE n = 1), max(inserted + updated) FILTER (WHERE n = 1)
            FROM ranked GROUP BY ALL ORDER BY 1""").fetchall()
    streams = [{"stream": r[0], "requests": r[1], "records_read": r[2], "rows_written": r[3], "seconds": r[4],
                "first_requests": r[5], "first_rows_written": r[6]} for r in rows]
    return {"streams": streams, "failures": failures, "first_pass_seconds": passes[0],
            "second_pass_seconds": passes[1]}


# -- 3. sync planning ----------------------------------------------------------------------------------------
PLAN_SQL = "SELECT * FROM core.bench_customers"


def _plan_spec():  # type: ignore[no-untyped-def]
    from integration_pipelines.syncs.spec import SyncSpec

    return SyncSpec(name="bench_plan", title="bench", description="benchmark", source_sql=PLAN_SQL, key="id",
                    target="quickbooks", mode="upsert", create_writer="create", update_writer="update",
                    payload={"id": "{id}"})


def plan_setup(args: dict[str, Any]) -> dict[str, Any]:
    """A model of `rows` rows, a ledger that has pushed all of them, then `changed` rows modified."""
    import duckdb

    from integration_pipelines.syncs.ledger import ensure_ledger

    rows, changed = int(args["rows"]), int(args["changed"])
    with duckdb.connect(args["db"]) as con:
        con.execute("CREATE SCHEMA core")
        con.execute(f"""CREATE TABLE core.bench_customers AS
            SELECT i AS id, 'Customer ' || i AS name, 'customer' || i || '@example.com' AS email,
                   '+1555' || lpad(CAST(i AS VARCHAR), 7, '0') AS phone, (i * 7919) % 100000 AS balance_minor,
                   ['usd', 'eur', 'gbp'][1 + i % 3] AS currency, 'City ' || (i % 997) AS city,
                   TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i % 8000000) AS updated_at,
                   i % 3 = 0 AS active, 'ext_' || i AS crm_id
            FROM range({rows}) t(i)""")
        ensure_ledger(con)
        con.execute(f"""INSERT INTO sync.ledger
            SELECT 'bench_plan', CAST(q.id AS VARCHAR), md5(to_json(q)::VARCHAR), 'QB' || q.id, 'synced', 0, NULL,
                   now(), 'seed' FROM ({PLAN_SQL}) q""")
        step = rows // max(changed, 1)
        con.execute(f"UPDATE core.bench_customers SET balance_minor = balance_minor + 1 WHERE id % {step} = 0")
        n = con.execute(f"SELECT count(*) FROM core.bench_customers WHERE id % {step} = 0").fetchone()[0]
    return {"rows": rows, "changed": n}


def plan(args: dict[str, Any]) -> dict[str, Any]:
    """syncs.engine.plan_sync on the prepared database: the rows to send reach Python, the rest stays in SQL."""
    import duckdb

    from integration_pipelines.syncs.engine import plan_sync

    spec = _plan_spec()
    with duckdb.connect(args["db"]) as con:
        started = time.perf_counter()
        result = plan_sync(con, spec)
        seconds = time.perf_counter() - started
    return {"work_seconds": seconds, **result.counts()}


def plan_floor(args: dict[str, Any]) -> dict[str, Any]:
    """The floor: the same hash-and-compare as one bare SQL query that returns only counts."""
    import duckdb

    with duckdb.connect(args["db"]) as con:
        started = time.perf_counter()
        changed, unchanged = con.execute(f"""
            SELECT count(*) FILTER (WHERE l.row_hash IS DISTINCT FROM s.h), count(*) FILTER (WHERE l.row_hash = s.h)
            FROM (SELECT CAST(q.id AS VARCHAR) AS k, md5(to_json(q)::VARCHAR) AS h FROM ({PLAN_SQL}) q) s
            LEFT JOIN sync.ledger l ON l.sync_name = 'bench_plan' AND l.record_key = s.k""").fetchone()
        seconds = time.perf_counter() - started
    return {"work_seconds": seconds, "updates": changed, "unchanged": unchanged}


# -- 4. webhook receiver -----------------------------------------------------------------------------------
def webhook_server(args: dict[str, Any]) -> None:
    """Serve on loopback until stdin closes: `receiver` is the project's receiver app (verify, parse, envelope,
    durable landing); `durable` is the same uvicorn server doing only the landing store's durable write."""
    import asyncio
    import contextlib
    import socket
    import threading

    import uvicorn
    from starlette.concurrency import run_in_threadpool

    from integration_pipelines.webhooks.landing import LocalLandingStore
    from integration_pipelines.webhooks.testing import make_receiver

    root = Path(args["root"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if args["kind"] == "receiver":
        receiver, _, _ = make_receiver(root, public_url=f"http://127.0.0.1:{port}")
        app = receiver.app()
    else:
        store = LocalLandingStore(root)

        async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
            if scope["type"] != "http":
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            event_id = dict(scope["headers"]).get(b"x-bench-event", b"missing").decode()
            await run_in_threadpool(store.land, "stripe", "2026-03-09", event_id, b"".join(chunks))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")]})
            await send({"type": "http.response.body", "body": b'{"received":true}'})

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           backlog=2048))

    def watchdog() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watchdog, daemon=True).start()
    print(f"PORT {port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


def webhook_load(args: dict[str, Any]) -> dict[str, Any]:
    """A light loopback client (raw asyncio streams, HTTP/1.1 keep-alive, `concurrency` connections) posting
    Stripe-signed `charge.succeeded` events with unique ids; bounded by `count` and `max_seconds`."""
    import asyncio
    import hashlib
    import hmac
    from urllib.parse import urlsplit

    from integration_pipelines.webhooks.config import SANDBOX_SECRETS

    secret = SANDBOX_SECRETS["stripe_webhook_secret"].encode()
    target = urlsplit(args["url"])
    count, concurrency, max_seconds = int(args["count"]), int(args["concurrency"]), float(args["max_seconds"])
    tag = args["tag"]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0

    def request(i: int) -> bytes:
        event_id = f"evt_bench_{tag}_{i:08d}"
        body = json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded", "api_version":
                           "2025-09-30.clover", "created": int(time.time()), "livemode": False,
                           "data": {"object": {"id": f"ch_bench{i:08d}", "object": "charge", "amount": 1000 + i,
                                               "currency": "usd", "status": "succeeded",
                                               "metadata": {"order_id": f"ord_{i}"}}}}).encode()
        t = int(time.time())
        signature = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        head = (f"POST /webhooks/stripe HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nStripe-Signature: t={t},v1={signature}\r\n"
                f"X-Bench-Event: {event_id}\r\n\r\n")
        return head.encode() + body

    async def connection(deadline: float) -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            while next_index < count and time.perf_counter() < deadline:
                i = next_index
                next_index += 1
                payload = request(i)
                sent = time.perf_counter()
                writer.write(payload)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length = next((int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length")),
                              0)
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - sent)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(connection(started + max_seconds) for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    landed = sum(1 for _ in Path(args["root"], "landing", "stripe").rglob("*.json"))
    return {"sent": len(latencies), "ok": statuses.get(200, 0), "statuses": {str(k): v for k, v in statuses.items()},
            "seconds": elapsed, "per_second": statuses.get(200, 0) / elapsed if elapsed else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "landed_files": landed}


# -- 5. sensor ---------------------------------------------------------------------------------------------------
WORKERS = {f.__name__: f for f in (extract_project, extract_server_alone, extract_httpx_alone, extract_floor,
                                   extract_dlt, noop_sandbox, plan_setup, plan, plan_floor, webhook_load)}


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    args = json.loads(raw)
    if name == "webhook_server":
        webhook_server(args)
        return
    result = WORKERS[name](args)
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
