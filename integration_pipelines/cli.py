"""`integration-pipelines …`: the demo, the sandbox, and inspection commands."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import duckdb
import httpx
import typer
from rich.console import Console
from rich.table import Table

from .connectors.errors import ConfigurationError
from .connectors.redaction import redact
from .connectors.registry import discover_systems
from .connectors.runtime import resolve_system
from .settings import load_settings


class _Cli(typer.Typer):
    """Known errors (a setting, a credential, an unreachable service, a missing or locked warehouse) end in one
    readable paragraph and exit code 2; anything else, or any error with `--debug`, keeps its traceback."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            from .operations.errors import describe_error

            message = None if _debug_requested() else describe_error(exc)
            if message is None:
                raise
            Console(stderr=True, highlight=False).print(
                f"Error: {message}\n(`integration-pipelines --debug ...` shows the traceback.)", markup=False,
                soft_wrap=True)
            sys.exit(2)


_DEBUG = {"on": False}


def _debug_requested() -> bool:
    return _DEBUG["on"] or "--debug" in sys.argv[1:2] or os.environ.get("IP_DEBUG", "").lower() in ("1", "true")


app = _Cli(help="Integration pipelines between a business's systems, on Dagster and DuckDB.",
           no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks instead of one-paragraph errors")]
          = False) -> None:
    """Integration pipelines between a business's systems, on Dagster and DuckDB."""
    _DEBUG["on"] = debug
    load_dotenv_file(Path(".env"))


def load_dotenv_file(path: Path) -> None:
    """Put the variables of `.env` in the working folder into this process's environment, as Dagster does for the
    code it runs, so that `systems`, `sync run` and the webhook receiver see the credentials the runs use (they
    used to say "sandbox" while the runs used the live token from `.env`). A variable already set in the
    environment wins, as in Dagster; the demo's children inherit the result."""
    from dotenv import dotenv_values

    if not path.is_file():
        return
    for name, value in dotenv_values(path).items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
sandbox_app = typer.Typer(help="The local emulators of every supported system.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
from .webhooks.cli import webhooks_app  # noqa: E402
from .webhooks.simulator import simulate  # noqa: E402

app.add_typer(webhooks_app, name="webhooks")
sandbox_app.command("simulate")(simulate)
sync_app = typer.Typer(help="Outbound syncs: list them, see a plan, run one.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")
console = Console()
err_console = Console(stderr=True)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


WORLDS = ("tidy", "messy")
WORLD_HELP = ("tidy, or messy: hand bookings, installments, deposits, colliding invoice numbers, late refunds, "
              "disputes, CRM deletes and merges planted through the vendors' APIs (docs/messy-world.md)")


def _check_world(value: str) -> str:
    if value not in WORLDS:
        raise typer.BadParameter(f"choose one of: {', '.join(WORLDS)}")
    return value


def _wait_for_messy_world(sandbox_url: str, process: subprocess.Popen, timeout: float = 120) -> int:
    """The messy sandbox plants its anomalies once it serves; wait until all of them are recorded."""
    from .sandbox.messy import BEFORE_KINDS

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise typer.Exit(f"the sandbox exited with code {process.returncode} while planting the messy world")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            planted = httpx.get(f"{sandbox_url}/_sandbox/world/anomalies", timeout=2).json().get("planted") or []
            if len(planted) >= len(BEFORE_KINDS):
                return len(planted)
        time.sleep(0.3)
    raise typer.Exit(f"the messy world was not planted after {timeout:.0f} s (see the sandbox's log)")


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="bind address; keep it on loopback")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port for every vendor's API")] = 8765,
    seed: Annotated[int, typer.Option(help="seed of the business world")] = 7,
    scale: Annotated[float, typer.Option(help="1.0 ≈ 40 customers; 10 ≈ 400")] = 1.0,
    days: Annotated[int, typer.Option(help="days of history before today")] = 30,
    anchor: Annotated[str | None, typer.Option(help="end of history, YYYY-MM-DD (default: today)")] = None,
    world: Annotated[str, typer.Option(callback=_check_world, help=WORLD_HELP)] = "tidy",
) -> None:
    """Serve every emulator on one port (vendor paths are disjoint)."""
    from .sandbox.server import serve_forever

    when = datetime.fromisoformat(anchor).replace(tzinfo=UTC) if anchor else None
    console.print(f"Sandbox on http://{host}:{port} (seed {seed}, scale {scale}, {days} days, {world} world). "
                  "Ctrl-C stops it.")
    serve_forever(host, port, seed, scale, when, days, world=world)


systems_app = typer.Typer(help="The systems: list them (no subcommand), check their connections, see their "
                          "streams' status.", invoke_without_command=True)
app.add_typer(systems_app, name="systems")


def _json_out(value: object) -> None:
    import json as _json

    def plain(v: object) -> str:
        return v.astimezone(UTC).isoformat() if isinstance(v, datetime) else str(v)

    sys.stdout.write(_json.dumps(value, indent=2, default=plain) + "\n")


@systems_app.callback()
def systems(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the systems, whether each talks to its sandbox or the real service, and its streams."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    table = Table("system", "mode", "base URL", "streams", "writers")
    listed = []
    for system in discover_systems():
        try:
            resolved = resolve_system(system, settings)
            mode, url = resolved.mode, resolved.base_url
        except ConfigurationError as exc:
            mode, url = "misconfigured", str(exc)
        enabled = settings.system_enabled(system.name)
        writers = [w.name for w in (*system.writers, *(system.soap.writers if system.soap else ()))]
        listed.append({"system": system.name, "title": system.title, "enabled": enabled, "mode": mode,
                       "base_url": redact(url), "streams": [s.name for s in system.streams], "writers": writers})
        table.add_row(system.name if enabled else f"{system.name} (disabled)",
                      "[red]misconfigured[/red]" if mode == "misconfigured" else mode, url,
                      ", ".join(s.name for s in system.streams), ", ".join(w.name for w in system.writers))
    if as_json:
        _json_out(listed)
        return
    _print_whole(table)


def _pick_systems(name: str | None):  # type: ignore[no-untyped-def]
    systems_found = discover_systems()
    if name is None:
        return systems_found
    chosen = [s for s in systems_found if s.name == name]
    if not chosen:
        err_console.print(f"There is no system named {name!r}. The systems are: "
                          f"{', '.join(s.name for s in systems_found)}.", markup=False)
        raise typer.Exit(2)
    return chosen


@systems_app.command("check")
def systems_check(
    name: Annotated[str | None, typer.Argument(help="one system (default: every enabled one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """One read-only request per system (first page of its first stream, page size 1) with its read credentials,
    and with its write credentials if it has writers: reachable, auth accepted, sandbox or live, rate-limit
    headroom, the scopes granted where the vendor says (a missing one fails the check), and on failure the
    vendor's message and the variable to fix. Exit 0 when all pass, 2 otherwise."""
    import logging

    from .operations.checks import check_systems, scopes_text

    logging.getLogger("integration_pipelines.http").setLevel(logging.ERROR)  # the report says it, once
    results = check_systems(_pick_systems(name), load_settings())
    failing = [r for r in results if not r.ok]
    if as_json:
        _json_out([r.as_json() for r in results])
        raise typer.Exit(2 if failing else 0)
    table = Table("system", "credentials", "mode", "state", "HTTP", "ms", "rate-limit headroom", "scopes", "fix")
    for r in results:
        state = r.state if r.ok else f"[red]{r.state}[/red]"
        table.add_row(r.system, r.purpose, r.mode, state, str(r.status or ""),
                      "" if r.latency_ms is None else str(r.latency_ms), r.rate_limit or "", scopes_text(r),
                      ", ".join(r.fix))
    _print_whole(table)
    for r in failing:
        err_console.print(f"{r.system} ({r.purpose}): {r.error}", markup=False, highlight=False)
    console.print(f"{len(results) - len(failing)} of {len(results)} check(s) passed.")
    raise typer.Exit(2 if failing else 0)


@systems_app.command("status")
def systems_status(
    name: Annotated[str | None, typer.Argument(help="one system (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Per system: last successful extract per stream, rows per raw table, streams never extracted; what the
    warehouse does not record (failed attempts, added columns) is said, not guessed."""
    from .operations.streams import NOT_RECORDED_FAILURES
    from .operations.streams import systems_status as status_of
    from .warehouse.query import open_warehouse

    chosen = _pick_systems(name)
    with open_warehouse(_warehouse_database(), timeout, _Say().info).connect(read_only=True) as con:
        status = status_of(con, chosen, load_settings())
    if as_json:
        _json_out(status)
        return
    table = Table("system", "mode", "stream", "rows", "last success", "last read: records / new / changed", "cursors")
    for entry in status:
        for i, stream in enumerate(entry["streams"]):
            last = stream["last_success"]
            table.add_row(entry["system"] if i == 0 else "", entry["mode"] if i == 0 else "", stream["stream"],
                          "" if stream["rows"] is None else str(stream["rows"]),
                          last[:19].replace("T", " ") + " UTC" if last else "[yellow]never[/yellow]",
                          "" if not last else f"{stream['last_records']} / {stream['last_new']} / "
                                              f"{stream['last_changed']}",
                          str(stream["cursors"]))
    _print_whole(table)
    never = [f"{e['system']}/{s}" for e in status for s in e["never_extracted"]]
    console.print(f"never extracted: {', '.join(never) if never else 'none'}", markup=False)
    console.print(f"failing streams: {NOT_RECORDED_FAILURES}", markup=False)
    added = [f"{e['system']}/{column}" for e in status for column in e["new_columns"]]
    console.print(f"columns added by the latest loads: {', '.join(added) if added else 'none'}", markup=False)
    every = sum(len(s["schema_changes"]) for e in status for s in e["streams"])
    console.print(f"schema changes recorded: {every} (ops.schema_changes; `--json` lists each with its date)",
                  markup=False)


@app.command("docs")
def docs(check: Annotated[bool, typer.Option(help="fail if docs/ is out of date instead of writing")] = False) -> None:
    """Regenerate the reference docs in docs/ from the specs."""
    from .docs import sync_catalog_markdown, systems_markdown, warehouse_markdown

    for name, text in (("systems.md", systems_markdown()), ("warehouse.md", warehouse_markdown()),
                       ("sync-catalog.md", sync_catalog_markdown())):
        target = PROJECT_ROOT / "docs" / name
        if check:
            if not target.exists() or target.read_text() != text:
                raise typer.Exit(f"docs/{name} is out of date: run `integration-pipelines docs`") from None
            continue
        target.write_text(text)
        console.print(f"wrote {target}")


def _warehouse_database() -> str:
    return load_settings().warehouse_database


def _print_frame(frame, title: str | None = None) -> None:  # type: ignore[no-untyped-def]
    table = Table(*[str(c) for c in frame.columns], title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*["" if v is None or v != v else str(v) for v in row])  # v != v: NaN / NaT
    _print_whole(table)
    console.print(f"[dim]{len(frame)} row(s)[/dim]")


@app.command("query")
def query(
    sql: Annotated[str, typer.Argument(help="read-only SQL, e.g. \"SELECT * FROM core.customers LIMIT 5\"")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json | parquet")] = "table",
    output: Annotated[Path | None, typer.Option(help="write to this file instead of the terminal")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait while a run holds the write lock")] = 60.0,
) -> None:
    """Query the warehouse read-only; waits politely while a run is writing.

    Only reads: no writes, ATTACH/DETACH/USE, COPY/EXPORT, file reads, extensions or SET (refused, exit 2).
    --output is the one way to save a result."""
    from .warehouse.duckdb import WarehouseLockedError
    from .warehouse.query import QueryRefusedError, WarehouseMissingError, export_query, run_query

    if fmt not in {"table", "csv", "json", "parquet"}:
        raise typer.BadParameter("--format must be table, csv, json or parquet")
    if fmt == "parquet" and output is None:
        raise typer.BadParameter("--format parquet needs --output FILE")
    say = err_console.print
    try:
        if output is not None:
            count = export_query(_warehouse_database(), sql, output, "json" if fmt == "table" else fmt,
                                 timeout=timeout, say=say)
            err_console.print(f"wrote {count} row(s) to {output}")
            return
        frame = run_query(_warehouse_database(), sql, timeout=timeout, say=say)
    except (WarehouseLockedError, WarehouseMissingError, QueryRefusedError) as exc:
        err_console.print(f"Error: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except duckdb.Error as exc:
        err_console.print(f"The query failed: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    if fmt == "table":
        _print_frame(frame)
    elif fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    else:
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")


@app.command("tables")
def tables(
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the warehouse's schemas and tables with row counts and freshness."""
    from .warehouse.duckdb import WarehouseLockedError
    from .warehouse.query import WarehouseMissingError, list_tables

    try:
        frame = list_tables(_warehouse_database(), timeout=timeout, say=err_console.print)
    except (WarehouseLockedError, WarehouseMissingError) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except duckdb.Error as exc:
        err_console.print(f"[red]Listing the warehouse failed: {exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
        return
    _print_frame(frame, title=redact(_warehouse_database()))  # an `md:` string may carry its token


stream_app = typer.Typer(help="One stream's state: reset its cursor (and rows). `extract` runs one.",
                         no_args_is_help=True)
app.add_typer(stream_app, name="stream")


@app.command("extract")
def extract(
    target: Annotated[str, typer.Argument(help="SYSTEM/STREAM, e.g. stripe/charges (see `systems`)")],
    partition: Annotated[str | None, typer.Option(help="the day to read, YYYY-MM-DD, for a daily stream "
                                                       "(default: yesterday, UTC)")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="ignore the stored cursor and read "
                                                                      "everything again (rows are upserted)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a sentence")] = False,
) -> None:
    """Run one stream now, outside Dagster, as its `SYSTEM/STREAM` asset does (same cursor, same upsert)."""
    import logging

    from .operations.streams import find_stream, run_extract

    logging.getLogger("integration_pipelines.http").setLevel(logging.ERROR)  # retries reach `_Say` already
    system, stream = find_stream(target)
    day = None
    if partition is not None:
        try:
            day = date.fromisoformat(partition)
        except ValueError:
            err_console.print(f"--partition must be a day, YYYY-MM-DD, not {partition!r}.", markup=False)
            raise typer.Exit(2) from None
    done = run_extract(system, stream, load_settings(), partition=day, full_refresh=full_refresh, log=_Say())
    if as_json:
        _json_out(done.as_json())
        return
    r, load = done.result, done.result.load
    if done.defaulted_partition:
        err_console.print(f"{target} is daily-partitioned; no --partition given, so it read {done.partition}.",
                          markup=False)
    since = (f"changes since {r.incremental_since.isoformat()}" if r.incremental_since
             else "a full read" + (" (--full-refresh)" if full_refresh else ""))
    console.print(f"{system.name}/{stream.name} ({done.mode}{', partition ' + done.partition if done.partition else ''}"
                  f", {since}): {r.records} record(s) in {r.pages} page(s), {r.requests} request(s); "
                  f"{load.inserted} new, {load.updated} changed, {load.unchanged} unchanged"
                  + (f", {load.stale} older than the stored rows" if load.stale else "")
                  + f". {load.table} holds {load.total_rows} row(s)."
                  + (f" New columns: {', '.join(load.new_columns)}." if load.new_columns else "")
                  + (f" Cursor: {r.cursor}." if r.cursor else ""), markup=False, highlight=False, soft_wrap=True)


@stream_app.command("reset")
def stream_reset(
    target: Annotated[str, typer.Argument(help="SYSTEM/STREAM, e.g. hubspot/contacts")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be deleted; delete nothing")] = False,
    rows: Annotated[bool, typer.Option("--rows", help="also delete the stream's raw table rows")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of sentences")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Delete the stream's cursors in ops.stream_state (every partition's), so its next read starts from the
    beginning; with --rows also the rows of its raw table (core keeps its rows until it is rebuilt)."""
    from .operations.streams import find_stream, reset_stream
    from .warehouse.query import open_warehouse

    system, stream = find_stream(target)
    warehouse = open_warehouse(_warehouse_database(), timeout, _Say().info)
    with warehouse.connect(read_only=dry_run and warehouse.is_file) as con:
        plan = reset_stream(con, system, stream, rows=rows, dry_run=dry_run)
    if as_json:
        _json_out(plan.as_json())
        return
    verb = "Would delete" if dry_run else "Deleted"
    name = f"{system.name}/{stream.name}"
    if plan.cursors:
        console.print(f"{verb} {len(plan.cursors)} cursor(s) of {name} from ops.stream_state:", markup=False)
        for c in plan.cursors:
            console.print(f"  {c['state_key']}: {c['cursor'] or '(no cursor: nothing read yet)'} "
                          f"(stored {(c['updated_at'] or '')[:19]} by run {c['run_id']})", markup=False,
                          highlight=False)
    else:
        console.print(f"{name} has no stored cursor in ops.stream_state: nothing to reset there.", markup=False)
    if rows:
        if plan.table_exists:
            console.print(f"{verb} {plan.rows} row(s) of {plan.table}.", markup=False)
        else:
            console.print(f"{plan.table} does not exist: no rows to delete.", markup=False)
    if dry_run:
        console.print("Dry run: nothing was deleted.", markup=False)
    else:
        console.print(f"The next read of {name} starts from the beginning (`integration-pipelines extract {name}`, "
                      "or materialize it in the UI).", markup=False)


@app.command("roi")
def roi(
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table and chart")] = False,
) -> None:
    """What the automation saved: operations per month, hours, labour cost and iPaaS cost avoided.

    `--json` prints one record per month with every column of ops.roi_monthly (run_cost and saving_vs_ipaas too,
    which the table leaves out for width), numbers as numbers, a payback that never comes as null."""
    from .roi import RoiSettings, bar_chart, compute
    from .warehouse.duckdb import WarehouseLockedError
    from .warehouse.query import WarehouseMissingError, open_warehouse

    config = RoiSettings()
    try:
        with open_warehouse(_warehouse_database(), timeout, _Say().info).connect(read_only=True) as con:
            _, summary = compute(con, config)
    except (WarehouseLockedError, WarehouseMissingError) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except duckdb.CatalogException as exc:
        err_console.print(f"[red]No ROI yet: the warehouse has no sync history ({str(exc).splitlines()[0]}). Run "
                          "the syncs first (the nightly_sync job, or `integration-pipelines sync run NAME`).[/red]")
        raise typer.Exit(2) from None
    except duckdb.Error as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        _json_out(summary)
        return
    table = Table("month", "operations", "hours saved", f"labour saved ({config.currency})",
                  "iPaaS cost avoided", "net vs manual", "payback (months)")
    for s in summary:
        table.add_row(str(s["month"]), str(s["operations"]), str(s["hours_saved"]), str(s["labour_saved"]),
                      str(s["ipaas_cost_avoided"]), str(s["net_saving_vs_manual"]), str(s["payback_months"] or "-"))
    _print_whole(table)
    console.print(bar_chart(summary).strip("`\n"))


@sync_app.command("list")
def sync_list(as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False) -> None:
    """Every sync: target, mode, and what it reads."""
    from .syncs.registry import discover_syncs

    specs = discover_syncs()
    if as_json:
        _json_out([{"name": s.name, "title": s.title, "target": s.target, "mode": s.mode, "key": s.key,
                    "sources": ["/".join(k) for k in s.source_assets], "depends_on": list(s.depends_on)}
                   for s in specs])
        return
    table = Table(title=None)
    # names are copied into `sync plan` / `sync run`: never cut them, let the title wrap instead
    table.add_column("sync", no_wrap=True, min_width=max((len(s.name) for s in specs), default=4))
    table.add_column("target", no_wrap=True, min_width=max((len(s.target) for s in specs), default=6))
    table.add_column("mode", no_wrap=True, min_width=6)
    table.add_column("title")
    table.add_column("depends on")
    for spec in specs:
        table.add_row(spec.name, spec.target, spec.mode, spec.title, ", ".join(spec.depends_on))
    _print_whole(table)


def _confirm_live_target(spec, settings, yes: bool) -> None:  # type: ignore[no-untyped-def]
    """A sync into a real service says so before it sends anything, and asks, unless `--yes`. Nobody can answer on
    a stdin that is not a terminal (cron, CI, a pipe): there it refuses at once instead of waiting. A sandbox target
    needs no confirmation. A target that cannot be written at all (half-set credentials, sandbox data in the
    warehouse) fails here with its own paragraph, before the question."""
    from .connectors.registry import get_system
    from .provenance import account_of

    resolved = resolve_system(get_system(spec.target), settings, purpose="write")
    if resolved.mode != "live":
        return
    title = resolved.system.title
    used = sorted({name for key, name in resolved.sources.items() if resolved.system.values[key].secret})
    statement = (f"sync {spec.name} writes to the real {title} ({account_of(resolved)}), not its sandbox: "
                 f"the {resolved.purpose} credentials in {', '.join(used)}.")
    if yes:
        err_console.print(statement + " Confirmed by --yes.", markup=False, highlight=False, soft_wrap=True)
        return
    if not sys.stdin.isatty():
        err_console.print(
            f"Error: {statement} Refusing to run it without a confirmation, and there is no terminal to ask on "
            f"(stdin is not interactive). Check what it would send with `integration-pipelines sync plan "
            f"{spec.name}`, then run it again with --yes (as a scheduled job must).",
            style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    err_console.print(statement + f" `integration-pipelines sync plan {spec.name}` shows what it would send.",
                      markup=False, highlight=False, soft_wrap=True)
    if not typer.confirm(f"Send to the real {title}?", default=False, err=True):
        err_console.print("Nothing was sent.", markup=False)
        raise typer.Exit(1)


def _sync_result(name: str, dry_run: bool, keys: list[str] | None = None, as_json: bool = False,
                 yes: bool = False) -> None:
    from .syncs.engine import (
        OLD_VALUES_UNKNOWN,
        SAMPLE_SIZE,
        SyncFailedError,
        SyncSourceMissingError,
        UnknownRecordKeysError,
        describe_plan,
        run_sync,
    )
    from .warehouse.duckdb import Warehouse

    settings = load_settings()
    spec = _known_sync(name)
    # a selected run says so in the ledger's last_run_id and in `sync history --json`
    run_id = f"cli-{'key-' if keys else ''}{datetime.now(UTC):%Y%m%dT%H%M%S}"
    try:
        if not dry_run:
            _confirm_live_target(spec, settings, yes)
        result = run_sync(spec, Warehouse(settings.warehouse_database, log=_Say()), settings, run_id=run_id,
                          dry_run=dry_run, log=_Say(), keys=keys or None)
    except (SyncFailedError, SyncSourceMissingError) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except (ConfigurationError, UnknownRecordKeysError) as exc:
        err_console.print(f"Error: {redact(str(exc))}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        plan = result.plan
        _json_out({"sync": spec.name, "title": spec.title, "target": spec.target, "mode": spec.mode,
                   "dry_run": dry_run, "keys": keys or None, "counts": plan.counts(),
                   "start": plan.start, "start_source": result.start_source if plan.start else None,
                   "old_values": OLD_VALUES_UNKNOWN, **describe_plan(spec, plan)})
        return
    counts = result.plan.counts()
    console.print(f"[bold]{spec.title}[/bold] ({spec.mode} → {spec.target})" + (" — dry run" if dry_run else "")
                  + (f" — only {', '.join(keys)}" if keys else ""), soft_wrap=True)
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    if not dry_run:
        console.print(f"created {result.created}, updated {result.updated}, deleted {result.deleted}, "
                      f"failed {result.failed}"
                      + (f"; re-sent {result.resumed} from an interrupted run" if result.resumed else ""))
        if result.failed:
            console.print(f"{len(result.new_failures)} new failure(s), {len(result.parked_now)} parked now: "
                          f"`integration-pipelines sync errors {spec.name}`")
    if result.plan.start is not None:
        console.print(f"[dim]start: {result.plan.start.isoformat()} ({result.start_source})[/dim]")
    _print_planned(spec, result.plan, describe_plan(spec, result.plan, limit=SAMPLE_SIZE))


def _print_planned(spec, plan, described: dict[str, list[dict]]) -> None:  # type: ignore[no-untyped-def]
    """The first records of each operation with their payloads; each update with why it is sent and its fields,
    old → new (`?`: the old value is not known, said once below)."""
    import json as _json

    def say(text: str) -> None:  # payloads may hold [brackets]: never read as markup
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    for name, operation in (("creates", "create"), ("updates", "update"), ("deletes", "delete")):
        for entry in described[name]:
            say(f"{operation} {entry['key']} {_json.dumps(entry['payload'])}")
            if operation == "update":
                when = (f" (last pushed {entry['last_pushed_at'][:16].replace('T', ' ')} UTC, run "
                        f"{entry['last_run_id']})" if entry["last_pushed_at"] else "")
                say(f"  why: {entry['why']}{when}")
                for change in entry["changes"]:
                    old = _json.dumps(change["old"]) if change["old_known"] else "?"
                    say(f"  {change['field']}: {old} → {_json.dumps(change['new'])}")
        more = len(getattr(plan, name)) - len(described[name])
        if more:
            say(f"… and {more} more {name} (`integration-pipelines sync plan {spec.name} --json` lists them all)")
    if described["updates"]:
        say(f"Old values (?) are not known: the ledger keeps only a hash of the row last pushed, and a plan reads "
            f"nothing from {spec.target}.")


class _Say:
    def info(self, message: str) -> None:
        err_console.print(message)

    warning = info


KEY_HELP = "only the record with this key (the sync's key column; repeat for several): test one row"


@sync_app.command("plan")
def sync_plan(
    name: Annotated[str, typer.Argument(help="the sync's name (see `sync list`)")],
    keys: Annotated[list[str] | None, typer.Option("--key", help=KEY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print every planned record as JSON")] = False,
) -> None:
    """Dry run: what the sync would create, update and delete, with sample payloads and each update's fields.
    Sends nothing."""
    _sync_result(name, dry_run=True, keys=keys, as_json=as_json)


@sync_app.command("run")
def sync_run(
    name: Annotated[str, typer.Argument(help="the sync's name (see `sync list`)")],
    keys: Annotated[list[str] | None, typer.Option("--key", help=KEY_HELP)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before writing to a real (live) target; "
                                      "needed when stdin is not a terminal")] = False,
) -> None:
    """Run one sync now, outside Dagster (the UI's `sync/<name>` asset does the same). With --key, only those
    records, through the same plan, lock and ledger; the others are neither sent nor marked. A target in live mode
    is named and confirmed first (y/N), unless --yes; without a terminal and without --yes it refuses (exit 2)."""
    _sync_result(name, dry_run=False, keys=keys, yes=yes)


def _known_sync(name: str):  # type: ignore[no-untyped-def]
    """The spec, or exit 2 naming the syncs there are."""
    from .syncs.registry import discover_syncs, get_sync

    try:
        return get_sync(name)
    except KeyError:
        err_console.print(f"[red]There is no sync named {name!r}. The syncs are: "
                          f"{', '.join(s.name for s in discover_syncs())}.[/red]")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _ledger(timeout: float, *, write: bool):  # type: ignore[no-untyped-def]
    """A warehouse connection for the operator commands; a missing or locked warehouse is exit 2, not a trace."""
    from .warehouse.duckdb import WarehouseLockedError
    from .warehouse.query import WarehouseMissingError, open_warehouse

    try:
        warehouse = open_warehouse(_warehouse_database(), timeout, _Say().info)
        with warehouse.connect(read_only=not write and warehouse.is_file) as con:
            yield con
    except (WarehouseLockedError, WarehouseMissingError) as exc:
        err_console.print(f"[red]{redact(str(exc))}[/red]")
        raise typer.Exit(2) from None


def _when(value) -> str:  # type: ignore[no-untyped-def]
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


@sync_app.command("errors")
def sync_errors(
    name: Annotated[str, typer.Argument(help="the sync's name (see `sync list`)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Records that fail, are parked, skipped or in doubt: attempts, last error, next attempt."""
    import json as _json

    from .syncs.operations import failing_records

    spec = _known_sync(name)
    with _ledger(timeout, write=False) as con:
        records = failing_records(con, spec.name)
    if as_json:
        sys.stdout.write(_json.dumps([r.as_json() for r in records], indent=2) + "\n")
        return
    if not records:
        console.print(f"sync {spec.name}: no failing, parked, skipped or in-doubt records.")
        return
    table = Table("record", "status", "operation", "attempts", "last error", "next attempt", title=spec.name)
    for r in records:
        error = (r.last_error or "").splitlines()[0] if r.last_error else ""
        error = error if len(error) <= 120 else error[:119] + "…"  # whole in --json
        table.add_row(r.key, r.status + (f" ({r.skip_reason})" if r.skip_reason else ""), r.operation or "",
                      str(r.attempts), error, r.next_attempt())
    _print_whole(table)
    console.print(f"[dim]{len(records)} record(s). `sync skip {spec.name} KEY` acknowledges one, "
                  f"`sync retry {spec.name} KEY` sends it again.[/dim]")


@sync_app.command("skip")
def sync_skip(
    name: Annotated[str, typer.Argument(help="the sync's name (see `sync list`)")],
    keys: Annotated[list[str], typer.Argument(help="record keys (see `sync errors NAME`)")],
    reason: Annotated[str, typer.Option(help="why: shown by `sync errors`")] = "",
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Acknowledge records: never sent again, listed as skipped, not counted as failures."""
    from .syncs.operations import RecordsNotFoundError, skip_records

    spec = _known_sync(name)
    with _ledger(timeout, write=True) as con:
        try:
            done = skip_records(con, spec, keys, reason, by="cli", data_dir=load_settings().data_dir)
        except RecordsNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    console.print(f"sync {spec.name}: skipped {len(done)} record(s): {', '.join(done)}. They are not sent again "
                  f"unless you run `integration-pipelines sync retry {spec.name} KEY`.")


@sync_app.command("retry")
def sync_retry(
    name: Annotated[str, typer.Argument(help="the sync's name (see `sync list`)")],
    keys: Annotated[list[str] | None, typer.Argument(help="record keys (see `sync errors NAME`)")] = None,
    all_records: Annotated[bool, typer.Option("--all", help="every failing, parked and skipped record")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Reset failing, parked or skipped records (attempts and backoff), so the next run sends them."""
    from .syncs.operations import RecordsNotFoundError, retry_records

    spec = _known_sync(name)
    if bool(keys) == all_records:
        err_console.print(f"[red]Name the records to retry (`sync retry {spec.name} KEY...`) or pass --all, "
                          "not both.[/red]")
        raise typer.Exit(2)
    with _ledger(timeout, write=True) as con:
        try:
            done = retry_records(con, spec, None if all_records else keys, data_dir=load_settings().data_dir)
        except RecordsNotFoundError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    if not done:
        console.print(f"sync {spec.name}: no failing, parked or skipped records to retry.")
        return
    console.print(f"sync {spec.name}: {len(done)} record(s) will be sent by the next run: {', '.join(done)} "
                  f"(`integration-pipelines sync run {spec.name}`, or materialize sync/{spec.name}).")


@sync_app.command("history")
def sync_history(
    name: Annotated[str | None, typer.Argument(help="one sync (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    limit: Annotated[int, typer.Option(help="how many runs, newest first")] = 20,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """Recent sync runs: when, and how many records were created, updated, failed and skipped."""
    import json as _json

    from .syncs.operations import run_history

    spec_name = _known_sync(name).name if name else None
    with _ledger(timeout, write=False) as con:
        runs = run_history(con, spec_name, limit)
    if as_json:
        def iso(value: object) -> str:
            return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)

        sys.stdout.write(_json.dumps(runs, default=iso, indent=2) + "\n")
        return
    table = Table()
    table.add_column("finished", no_wrap=True)
    table.add_column("sync", no_wrap=True)  # copied into other commands: never cut
    for column in ("created", "updated", "deleted", "failed", "new failures", "skipped", "parked", "backoff",
                   "before start", "dry run"):
        table.add_column(column, justify="right")
    for run in runs:
        table.add_row(_when(run["finished_at"]), run["sync_name"], *(str(run[c] or 0) for c in (
            "created", "updated", "deleted", "failed", "new_failures", "skipped", "parked", "backoff",
            "before_start")), "yes" if run["dry_run"] else "")
    _print_whole(table)
    console.print(f"[dim]{len(runs)} run(s)[/dim]")


def _print_whole(table: Table) -> None:
    """A table as wide as its content needs, even in a narrow terminal or a pipe (80 columns by default): a
    squeezed table cut names and hid whole columns of counts. The terminal wraps long lines; nothing is lost."""
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    Console(width=max(console.width, needed)).print(table)


def _wait_for(url: str, what: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise typer.Exit(f"{what} exited with code {process.returncode} before it was ready") from None
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise typer.Exit(f"{what} was not ready at {url} after {timeout:.0f} s")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # A new session per child: Ctrl-C reaches us once, and we stop each child's whole process group. The children
    # run in the demo's working folder (its `.env`), wherever the package is installed.
    return subprocess.Popen(args, env=env, start_new_session=True)


def _stop(processes: list[subprocess.Popen], grace: float = 45) -> None:
    """SIGTERM each child's process group, then SIGKILL whatever of a group outlives `grace`.

    Waiting for the leader alone is not enough: dagster dev can exit while its run workers (same group) are still
    winding a run down, and those would outlive the demo."""
    for process in reversed(processes):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in reversed(processes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def group_alive(group: int) -> bool:
    """Whether any process of group `group` is still there (a zombie counts until it is reaped)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a recycled group id owned by someone else: not ours any more
        return False
    return True


DEMO_HISTORY_DAYS = 30  # `sandbox serve --days` default: the sandbox's history ends today


def _first_catch_up(data_dir: Path, ui_url: str, first: date) -> None:
    """On the demo folder's first start, one run reads the sandbox's whole history (docs: first_run.py)."""
    from .first_run import launch_catch_up

    marker = data_dir / ".caught-up"
    if marker.exists():
        return
    last = datetime.now(UTC).date() - timedelta(days=1)
    try:
        run_id = launch_catch_up(ui_url, first, last)
    except (httpx.HTTPError, RuntimeError) as exc:
        err_console.print(f"[red]The first catch-up run was not launched[/red]: {redact(str(exc))}. Launch the "
                          f"`nightly_sync` job for {first}..{last} from the UI's Backfill button instead.")
        return
    marker.write_text(run_id + "\n")
    console.print(f"First start: run {run_id} reads {first}..{last} (the sandbox's history), then builds core, "
                  "syncs and reconciles; follow it in the UI's Runs tab.")


SANDBOX_WORLD_MARKER = ".sandbox-world"  # written when a demo starts its sandbox in the data folder


def _not_on_the_sandbox() -> list[str]:
    """The systems this environment points at something other than the sandbox: real credentials (live) or a
    configuration that cannot be resolved (treated alike: its data may not be the sandbox's)."""
    settings = load_settings()
    found = []
    for system in discover_systems():
        try:
            if resolve_system(system, settings).mode != "sandbox":
                found.append(system.name)
        except ConfigurationError:
            found.append(system.name)
    return found


def _set_aside_previous_world(data_dir: Path) -> None:
    """The sandbox keeps its world in memory, so every demo start is a new world: the previous start's warehouse,
    sync ledgers and runs describe records that no longer exist there, and a ledger saying "synced" would stop the
    syncs from ever writing to the new world. Move that folder aside to `<data_dir>.previous` (one kept) so the demo
    starts clean and catches up the new world. Kept in place when any system talks to a real service: its ledger
    is what stops a second write there."""
    if not (data_dir / SANDBOX_WORLD_MARKER).exists():
        return
    elsewhere = _not_on_the_sandbox()
    if elsewhere:
        console.print(f"[yellow]Keeping {data_dir}[/yellow]: {', '.join(elsewhere)} use real credentials (or are "
                      "misconfigured), and the sync ledgers in it are what stop a second write there. The sandbox "
                      "systems start a new world; their earlier records are gone.")
        return
    previous = data_dir.with_name(data_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    data_dir.rename(previous)
    console.print(f"The sandbox starts a new world at every start (it keeps nothing), so the last demo's warehouse, "
                  f"sync ledgers and runs were moved to {previous}; this demo starts clean and catches up the new "
                  "world.")


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="Dagster UI port")] = 3000,
    sandbox_port: Annotated[int, typer.Option(help="sandbox port")] = 8765,
    webhook_port: Annotated[int, typer.Option(help="webhook receiver port")] = 8766,
    data_dir: Annotated[Path, typer.Option(help="DAGSTER_HOME, warehouse and spools")] = Path(".data"),
    world: Annotated[str, typer.Option(callback=_check_world, help=WORLD_HELP)] = "tidy",
) -> None:
    """Start the sandbox, the webhook receiver, the activity simulator and the Dagster UI
    (http://127.0.0.1:3000) on a local .data folder. With `--world messy` the sandbox plants its anomalies
    first, and late, duplicated, out-of-order and replayed Stripe webhooks reach the receiver once it is up."""
    from importlib.resources import as_file, files

    data_dir = data_dir.resolve()  # relative to the working folder (`make demo`: the checkout)
    _set_aside_previous_world(data_dir)
    dagster_home = data_dir / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    # the instance config and the workspace ship in the package (integration_pipelines/deploy/), so a wheel install
    # runs the demo from any folder; deploy/dagster.yaml and workspace.yaml in a checkout link to them
    for name in ("dagster.yaml", "workspace.yaml"):
        with as_file(files("integration_pipelines") / "deploy" / name) as source:
            shutil.copyfile(source, dagster_home / name)
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    history_start = datetime.now(UTC).date() - timedelta(days=DEMO_HISTORY_DAYS)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "IP_DATA_DIR": str(data_dir),
           "IP_SANDBOX_URL": os.environ.get("IP_SANDBOX_URL", sandbox_url),
           # the partitions start where the sandbox's history does, not months before it
           "IP_PARTITIONS_START": os.environ.get("IP_PARTITIONS_START", history_start.isoformat()),
           # the demo's integrations act on the sandbox's whole history (a real business sets its own start)
           "IP_SYNC_START": os.environ.get("IP_SYNC_START", history_start.isoformat()),
           # alerts link to this UI, not to the default port
           "IP_ALERT_UI_BASE_URL": os.environ.get("IP_ALERT_UI_BASE_URL", f"http://127.0.0.1:{port}"),
           # Dagster's StartRun call waits until the new run process has imported the code location; on a busy
           # machine that took over Dagster's 60 s default and the daemon failed the first-start catch-up run
           # ("DEADLINE_EXCEEDED ... marked as failed from outside the execution context", seen at load ~20)
           "DAGSTER_GRPC_TIMEOUT_SECONDS": os.environ.get("DAGSTER_GRPC_TIMEOUT_SECONDS", "300")}
    bin_dir = Path(sys.executable).parent
    processes: list[subprocess.Popen] = []

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        processes.append(_spawn([sys.executable, "-m", "integration_pipelines.cli", "sandbox", "serve",
                                 "--port", str(sandbox_port), "--world", world], env))
        _wait_for(f"{sandbox_url}/_sandbox/health", "the sandbox", processes[-1], 30)
        if world == "messy":
            planted = _wait_for_messy_world(sandbox_url, processes[-1])
            console.print(f"[yellow]Messy world[/yellow]: {planted} anomalies planted, listed at "
                          f"{sandbox_url}/_sandbox/world/anomalies")
        console.print(f"[green]Sandbox ready[/green] on {sandbox_url}")
        (data_dir / SANDBOX_WORLD_MARKER).write_text(f"{world} world started {datetime.now(UTC).isoformat()}\n")
        receiver_url = f"http://127.0.0.1:{webhook_port}"
        env.setdefault("IP_WEBHOOK_PUBLIC_URL", receiver_url)
        processes.append(_spawn([sys.executable, "-m", "integration_pipelines.cli", "webhooks", "serve",
                                 "--port", str(webhook_port)], env))
        _wait_for(f"{receiver_url}/healthz", "the webhook receiver", processes[-1], 30)
        console.print(f"[green]Webhook receiver ready[/green] on {receiver_url}")
        if world == "messy":
            from .sandbox.messy import MessyError, MessyWorld

            try:
                with MessyWorld(sandbox_url) as messy:
                    sent = messy.plant_webhooks(receiver_url)
                console.print(f"[yellow]Messy world[/yellow]: {len(sent)} webhook delivery anomalies sent")
            except (MessyError, httpx.HTTPError) as exc:
                err_console.print(f"[red]Messy webhooks not sent[/red]: {redact(str(exc))}")
        processes.append(_spawn([sys.executable, "-m", "integration_pipelines.cli", "sandbox", "simulate",
                                 "--receiver-url", receiver_url, "--interval", "5"], env))
        processes.append(_spawn([str(bin_dir / "dagster"), "dev", "-w", str(dagster_home / "workspace.yaml"),
                                 "-h", "127.0.0.1", "-p", str(port)], env))
        # its first start imports every system's code: ~30 s on a quiet 2-core machine, over 180 s on a busy one
        _wait_for(f"http://127.0.0.1:{port}/server_info", "dagster dev", processes[-1], 600)
        console.print(f"[green]Dagster UI ready[/green] on http://127.0.0.1:{port}  (Ctrl-C stops everything)")
        _first_catch_up(data_dir, f"http://127.0.0.1:{port}", date.fromisoformat(env["IP_PARTITIONS_START"]))
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        console.print("[red]A demo process exited; stopping the rest.[/red]")
    except KeyboardInterrupt:
        console.print("Stopping the demo…")
    finally:
        _stop(processes)


if __name__ == "__main__":
    app()
