"""Provenance: sandbox and live never mix.

A warehouse that was filled from the emulators (the demo, a trial run) holds fake customers, fake payments and fake
invoices. Once a target system is switched to its real service, a sync would happily create those records there:
fake invoices in the real books. The other way round, a sync into the sandbox of data read from the real services
records the sandbox's ids for real records in its ledger, and once that target goes live those records count as
already sent and never reach it. So every write resolution is checked against what the warehouse records:

- **where rows came from**: `ops.extract_log.source_mode` / `source_account` (one row per extracted stream per
  run) and, per raw row, `_source_mode` / `_source_account` (warehouse/duckdb.py). A live write refuses while any
  extract or raw row came from a sandbox (unless `IP_ALLOW_SANDBOX_DATA_IN_LIVE=true`: a test account fed from the
  sandbox on purpose); a sandbox write refuses while any came from a real service (`sync plan` previews without
  writing).
- **where ledger and journal entries went**: `sync.ledger_targets` (per ledger entry) and `sync.pending`'s
  `target_*` columns (per journaled record) (syncs/ledger.py). A write refuses while entries of its target system
  that hold (or may hold) an id went to the other mode, or, for a live target, to another live account: those ids
  belong there. `IP_ALLOW_SANDBOX_DATA_IN_LIVE` does not lift this: ids of another account are never right.

Each refusal is one paragraph that says how to start a clean data folder. NULL facts (rows, entries and extracts
from before these columns existed, rows of webhook files landed before the receiver recorded `verified_as`) are
unknown: neither evidence nor a pass for other facts. The account is never a secret (`account_of`). Live writes
are checked as the target is resolved (`connectors/runtime.py` calls `refuse_sandbox_data_in_live`); the sync
engine checks every write it makes, sandbox or live, on its own warehouse connection (`check_write_target`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb

from .connectors.errors import ConfigurationError
from .connectors.redaction import redact

if TYPE_CHECKING:
    from .connectors.runtime import ResolvedSystem
    from .settings import Settings

ALLOW_ENV = "IP_ALLOW_SANDBOX_DATA_IN_LIVE"
MODE_COLUMN = "source_mode"
_TRUE = {"1", "true", "yes", "on"}


#: non-secret values that say which account, company or tenant of a service is meant, in the order they are shown
ACCOUNT_VALUE_KEYS = ("shop", "realm_id", "tenant_id", "account_id", "company_id", "org_id", "db")


def account_of(resolved: ResolvedSystem) -> str:
    """Which account of the service a resolution talks to, in words that are safe anywhere: the base URL's host
    (and port), plus the spec's non-secret account values that the host does not already name (QuickBooks'
    realm id, Xero's tenant id, NetSuite's account id, an Odoo database), e.g.
    `quickbooks.api.intuit.com realm_id=9130350000000000` or, for the sandbox, `127.0.0.1:8765 realm_id=...`.
    Never a secret nor a hash of one: only values the spec marks `secret=False`, and the text is dropped for the
    bare host if any registered secret shows in it."""
    host = urlsplit(resolved.base_url).netloc.rpartition("@")[2].lower()  # never a URL's user:password@
    public = resolved.public_values
    extras = [f"{key}={public[key]}" for key in ACCOUNT_VALUE_KEYS
              if public.get(key) and str(public[key]).lower() not in host]
    text = " ".join([host, *extras]).strip()
    if redact(text) == text:
        return text
    return host if redact(host) == host else "unknown"


class MixedDataError(ConfigurationError):
    """A write was refused because sandbox and live would mix (see the module docstring)."""


class SandboxDataInLiveError(MixedDataError):
    """A live write was refused because the warehouse holds data extracted from a sandbox."""


class LiveDataInSandboxError(MixedDataError):
    """A sandbox write was refused because the warehouse holds data extracted from a real service."""


class LedgerOfAnotherAccountError(MixedDataError):
    """A write was refused because the sync ledger or journal holds entries of its target that went elsewhere."""


def allowed(settings: Settings, environ: Mapping[str, str]) -> bool:
    flag = environ.get(ALLOW_ENV)
    if flag is not None:
        return flag.strip().lower() in _TRUE
    return bool(getattr(settings, "allow_sandbox_data_in_live", False))


def _has_column(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "AND column_name = ?", [schema, table, column]).fetchone()[0])


def extracts_in_mode(con: duckdb.DuckDBPyConnection, mode: str) -> dict[str, int]:
    """System → number of stream extracts (`ops.extract_log` rows) made in `mode`."""
    if not _has_column(con, "ops", "extract_log", MODE_COLUMN):
        return {}
    rows = con.execute(f"SELECT system, count(*) FROM ops.extract_log WHERE {MODE_COLUMN} = ? "
                       "GROUP BY system ORDER BY system", [mode]).fetchall()
    return {str(system): int(count) for system, count in rows}


def raw_rows_in_mode(con: duckdb.DuckDBPyConnection, mode: str) -> dict[str, int]:
    """System → number of raw rows whose `_source_mode` is `mode`. Each table is first probed for one such row
    (`LIMIT 1`: DuckDB skips row groups whose min/max exclude the value), and counted only when it has one."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = '_source_mode' "
        "AND starts_with(table_schema, 'raw_') ORDER BY 1, 2").fetchall()
    found: dict[str, int] = {}
    for schema, table in tables:
        relation = f'"{schema}"."{table}"'
        if con.execute(f"SELECT 1 FROM {relation} WHERE _source_mode = ? LIMIT 1", [mode]).fetchone() is None:
            continue
        count = con.execute(f"SELECT count(*) FROM {relation} WHERE _source_mode = ?", [mode]).fetchone()[0]
        system = str(schema).removeprefix("raw_")
        found[system] = found.get(system, 0) + int(count)
    return found


def sandbox_extracts(database: str, lock_timeout: float = 120.0) -> dict[str, int]:
    """System → number of streams/runs extracted in sandbox mode, from `ops.extract_log.source_mode`."""
    with _open(database, lock_timeout) as con:
        return {} if con is None else extracts_in_mode(con, "sandbox")


@contextmanager
def _open(database: str, lock_timeout: float) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The warehouse, or None when there is none yet (nothing in it can mix)."""
    if database == ":memory:" or (not database.startswith("md:") and not Path(database).exists()):
        yield None
        return
    from .warehouse.duckdb import Warehouse

    with Warehouse(database, lock_timeout=lock_timeout).connect() as con:
        yield con


def _listed(extracts: dict[str, int], rows: dict[str, int]) -> str:
    parts = []
    for system in sorted(set(extracts) | set(rows)):
        said = [f"{n} extract{'s' if n != 1 else ''}" for n in [extracts.get(system, 0)] if n]
        said += [f"{n} raw row{'s' if n != 1 else ''}" for n in [rows.get(system, 0)] if n]
        parts.append(f"{system} ({', '.join(said)})")
    return ", ".join(parts)


_CLEAN_FOLDER = ("set IP_DATA_DIR to a new folder (or IP_WAREHOUSE to a new file), extract into it and run the "
                 "syncs there")


def check_write_target(con: duckdb.DuckDBPyConnection, resolved: ResolvedSystem, settings: Settings,
                       environ: Mapping[str, str], database: str | None = None) -> None:
    """Raise a `MixedDataError` (one paragraph) when writing to `resolved` (a write resolution, sandbox or live)
    would mix sandbox and live, judged from what the warehouse open on `con` records; see the module docstring."""
    if resolved.purpose != "write":
        return
    database = database or settings.warehouse_database
    title = resolved.system.title
    if resolved.mode == "live":
        if not allowed(settings, environ):
            extracts, rows = extracts_in_mode(con, "sandbox"), raw_rows_in_mode(con, "sandbox")
            if extracts or rows:
                raise SandboxDataInLiveError(
                    f"Refusing to write to the real {title}: the warehouse {database} holds data extracted from "
                    f"the sandbox ({_listed(extracts, rows)}), and a sync would push those fake records into the "
                    f"real service. Use a fresh warehouse for live data (set IP_WAREHOUSE to a new file, or "
                    f"IP_DATA_DIR to a new folder) and extract from the real services into it, or, if the target "
                    f"is itself a test account and this is intended, set {ALLOW_ENV}=true.")
    else:
        extracts, rows = extracts_in_mode(con, "live"), raw_rows_in_mode(con, "live")
        if extracts or rows:
            raise LiveDataInSandboxError(
                f"Refusing to write to {title}'s sandbox: the warehouse {database} holds data extracted from real "
                f"services ({_listed(extracts, rows)}). A sync would copy real records into the sandbox and record "
                f"the sandbox's ids for them in its ledger, so once {title} is live they would count as sent and "
                f"never reach it. Keep the sandbox in a data folder of its own: {_CLEAN_FOLDER}; or give {title} its "
                f"real credentials to write to the real service. `integration-pipelines sync plan NAME` shows what "
                "a sync would send without sending anything.")
    _refuse_entries_of_elsewhere(con, resolved, database)


def _refuse_entries_of_elsewhere(con: duckdb.DuckDBPyConnection, resolved: ResolvedSystem, database: str) -> None:
    from .syncs.ledger import HOLDS_TARGET_ID

    system, mode, account = resolved.system.name, resolved.mode, account_of(resolved)
    other = "(target_mode <> ? OR (? = 'live' AND target_account IS DISTINCT FROM ?))"
    ledger: list[tuple] = []
    if _has_column(con, "sync", "ledger_targets", "target_mode"):
        ledger = con.execute(
            f"""SELECT t.target_mode, t.target_account, t.sync_name, count(*)
                FROM sync.ledger_targets t JOIN sync.ledger l USING (sync_name, record_key)
                WHERE t.target_system = ? AND {other.replace('target_', 't.target_')}
                  AND (l.external_id IS NOT NULL OR list_contains(?, l.status))
                GROUP BY ALL ORDER BY 1, 2, 3""", [system, mode, mode, account, list(HOLDS_TARGET_ID)]).fetchall()
    journal: list[tuple] = []
    if _has_column(con, "sync", "pending", "target_mode"):
        journal = con.execute(
            f"""SELECT target_mode, target_account, sync_name, count(*) FROM sync.pending
                WHERE target_system = ? AND target_mode IS NOT NULL AND {other}
                GROUP BY ALL ORDER BY 1, 2, 3""", [system, mode, mode, account]).fetchall()
    if not ledger and not journal:
        return
    title = resolved.system.title
    here = f"the real {title} ({account})" if mode == "live" else f"{title}'s sandbox ({account})"

    def where(entry_mode: str, entry_account: str | None) -> str:
        shown = entry_account or "an unrecorded address"
        return f"the sandbox ({shown})" if entry_mode == "sandbox" else f"the real {title} at {shown}"

    groups: dict[tuple[str, str | None], list[str]] = {}
    for entry_mode, entry_account, sync_name, count in ledger:
        groups.setdefault((entry_mode, entry_account), []).append(f"{sync_name}: {count}")
    for entry_mode, entry_account, sync_name, count in journal:
        groups.setdefault((entry_mode, entry_account), []).append(f"{sync_name}: {count} journaled in sync.pending")
    said = "; ".join(f"to {where(m, a)} ({', '.join(items)})" for (m, a), items in groups.items())
    same_mode = [(m, a) for m, a in groups if m == mode == "live"]
    relabel = ""
    if same_mode:
        old = same_mode[0][1] or ""
        relabel = (f" If both addresses name the same {title} account (only the address changed), say so instead: "
                   f"UPDATE sync.ledger_targets SET target_account = '{account}' WHERE target_system = '{system}' "
                   f"AND target_account = '{old}', and the same in sync.pending.")
    raise LedgerOfAnotherAccountError(
        f"Refusing to write to {here}: the sync ledger of the warehouse {database} holds records that went "
        f"{said}. Their ids belong there, so a sync would take them as already in {title} here, send updates to ids "
        f"this account does not have, and link new records to them. Start a clean data folder for "
        f"{'the real services' if mode == 'live' else 'the sandbox'}: {_CLEAN_FOLDER}.{relabel}")


def refuse_sandbox_data_in_live(resolved: ResolvedSystem, settings: Settings, environ: Mapping[str, str]) -> None:
    """Raise a `MixedDataError` when `resolved` (a live write) would mix sandbox and live data: called as the target
    is resolved, on a connection of its own (`check_write_target`)."""
    if resolved.mode != "live" or resolved.purpose != "write":
        return
    database = settings.warehouse_database
    with _open(database, settings.warehouse_lock_timeout_seconds) as con:
        if con is not None:
            check_write_target(con, resolved, settings, environ, database)
