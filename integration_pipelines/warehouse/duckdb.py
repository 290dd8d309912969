"""The Warehouse: short DuckDB transactions, keyed upserts of spooled batches, evolving columns.

DuckDB lets one process write a database file at a time and locks the whole file, so connections open late and
close early, and a lock conflict is waited out (with a message) instead of failing the run.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ..settings import load_settings

logger = logging.getLogger("integration_pipelines.warehouse")

_LOCK_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


#: Where each raw row came from (issue 15, sandbox and live never mix): the mode its system ran in (`sandbox` |
#: `live`) and the account (`provenance.account_of`: host plus realm/tenant/shop, never a credential). Constants of
#: a load, added in SQL as the rows are inserted (nothing per record in Python). NULL: loaded before these columns
#: existed, or by a load that did not say (`load_spool(source=None)`): unknown.
SOURCE_COLUMNS = (("_source_mode", "VARCHAR"), ("_source_account", "VARCHAR"))
_EMPTY_COLUMNS = (("_pk", "VARCHAR"), ("_cursor", "VARCHAR"), ("_source_system", "VARCHAR"),
                  ("_extracted_at", "TIMESTAMPTZ"), ("_run_id", "VARCHAR"), ("_raw", "VARCHAR"), ("_hash", "VARCHAR"),
                  ("_version", "TIMESTAMPTZ"), *SOURCE_COLUMNS)
_zstd_for_raw: bool | None = None


def _raw_compression(con: duckdb.DuckDBPyConnection) -> str:
    """` USING COMPRESSION zstd` for `_raw` where this DuckDB offers it, else nothing.

    Why: `_raw` is most of a raw table's bytes (the whole record as JSON) and is read only by staging models.
    Left to DuckDB's automatic choice, the checkpoint that makes a load durable spends most of its time analysing
    it: measured on 500k Stripe charges, zstd made the load 1.4x faster and the file 2.4x smaller. Asked once per
    process, outside any transaction (a failed statement would abort the load's)."""
    global _zstd_for_raw
    if _zstd_for_raw is None:
        try:
            con.execute("CREATE TEMP TABLE _compression_probe (x VARCHAR USING COMPRESSION zstd)")
            con.execute("DROP TABLE _compression_probe")
            _zstd_for_raw = True
        except duckdb.Error:
            _zstd_for_raw = False
    return " USING COMPRESSION zstd" if _zstd_for_raw else ""


def _create_raw_table(con: duckdb.DuckDBPyConnection, target: str, columns: Sequence[tuple[str, str]],
                      raw_compression: str) -> None:
    # a column of nulls only (DESCRIBE says "NULL") gets text until values say otherwise
    typed = [(name, "VARCHAR" if kind == '"NULL"' else kind) for name, kind in columns]
    ddl = ", ".join(f"{quote_ident(name)} {kind}{raw_compression if name == '_raw' else ''}" for name, kind in typed)
    con.execute(f"CREATE TABLE {target} ({ddl})")


_META_NAMES = frozenset(name for name, _ in _EMPTY_COLUMNS)
_SOURCE_NAMES = frozenset(name for name, _ in SOURCE_COLUMNS)


def _first_fields(staged: Sequence[tuple[str, str]], room: int) -> list[tuple[str, str]]:
    """The metadata columns and the first `room` fields: what a new raw table is created with."""
    kept: list[tuple[str, str]] = []
    for name, kind in staged:
        if name in _META_NAMES:
            kept.append((name, kind))
        elif room > 0:
            kept.append((name, kind))
            room -= 1
    return kept


def _fields_left_in_raw(files: Sequence[Path]) -> int:
    """How many fields the batches themselves left out (records_to_table's per-table cap), at most: the most
    any one spooled batch left out (they are mostly the same fields, page after page)."""
    import pyarrow.parquet as pq

    from .batches import FIELDS_LEFT_IN_RAW

    most = 0
    for path in files:
        metadata = pq.read_schema(path).metadata or {}
        most = max(most, int(metadata.get(FIELDS_LEFT_IN_RAW, b"0")))
    return most


class WarehouseLockedError(RuntimeError):
    """Another process held the DuckDB file for longer than we agreed to wait."""


class WarehouseMemoryError(RuntimeError):
    """A load needed more DuckDB memory than the largest limit it may grow to."""


LOAD_MEMORY_DOUBLINGS = 5
"""How often a load that ran out of DuckDB memory is retried with twice the limit (128MB grows to at most 4GB)."""
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}


def _doubled(limit: str) -> str:
    """Twice a DuckDB memory limit (`128MB`, `1.5GiB` ...), in whole megabytes."""
    match = _SIZE.fullmatch(limit)
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"IP_LOAD_MEMORY_LIMIT={limit!r} is not a size like 128MB or 1GB")
    megabytes = float(match.group(1)) * _UNITS[unit] / 1000**2
    return f"{max(1, round(megabytes * 2))}MB"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def table_name(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


@dataclass(frozen=True)
class RowSource:
    """Where the rows of a load came from: written into every inserted or updated row's `_source_mode` and
    `_source_account`."""

    mode: str
    account: str | None


@dataclass(frozen=True)
class StreamState:
    system: str
    stream: str
    state_key: str
    cursor: str | None


@dataclass
class LoadResult:
    table: str
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # snapshots older than the stored row (a late or replayed event): left alone
    total_rows: int = 0
    new_columns: list[str] = field(default_factory=list)
    new_column_types: dict[str, str] = field(default_factory=dict)  # the type each new column was added with
    schema_known: bool = False  # the table had fields of the API's before this load: new ones are a schema change
    type_warnings: list[str] = field(default_factory=list)
    # top-level fields that got no typed column (IP_MAX_NEW_COLUMNS_PER_LOAD / IP_MAX_COLUMNS_PER_TABLE): their
    # values are in `_raw` only; named in `type_warnings` too
    fields_left_in_raw: int = 0
    columns: list[tuple[str, str]] = field(default_factory=list)
    preview_markdown: str = ""


class Warehouse:
    def __init__(
        self,
        database: str,
        *,
        lock_timeout: float = 120.0,
        log: Any = None,
        memory_limit: str | None = None,
        load_memory_limit: str | None = None,
    ) -> None:
        self.database = database
        self.lock_timeout = lock_timeout
        self.log = log or logger
        settings = load_settings() if memory_limit is None or load_memory_limit is None else None
        # DuckDB's own default is 80% of RAM: a big load would grow the run process with the stream. Loads run
        # under a small limit and spill to `<database>.tmp` beside the file (measured: no slower, flat memory);
        # models and queries keep DuckDB's default unless IP_DUCKDB_MEMORY_LIMIT says otherwise.
        self.memory_limit = memory_limit or (settings.duckdb_memory_limit if settings else None)
        self.load_memory_limit = load_memory_limit or (settings.load_memory_limit if settings else None)
        self._session: duckdb.DuckDBPyConnection | None = None
        self._session_thread = 0  # the thread that opened the session; other threads get cursors of it
        self._row_source: RowSource | None = None

    @contextmanager
    def row_source(self, source: RowSource | None) -> Iterator[None]:
        """Every `load_spool` inside that does not name its own source records this one: an extract wraps its
        loads (its own stream's and a change feed's snapshots of other streams) in the mode and account it read
        them with."""
        before, self._row_source = self._row_source, source
        try:
            yield
        finally:
            self._row_source = before

    @property
    def is_file(self) -> bool:
        return not self.database.startswith("md:") and self.database != ":memory:"

    @contextmanager
    def connect(
        self, *, read_only: bool = False, memory_limit: str | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open, yield, close; waiting out another process's lock for up to `lock_timeout` seconds. Inside
        `session()`, the session's connection (under the requested memory limit while it is lent)."""
        if self._session is not None:
            if threading.get_ident() != self._session_thread:  # another thread of this unit: its own cursor
                cursor = self._session.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
                return
            with self._lent(self._session, memory_limit):
                yield self._session
            return
        if self.is_file and not read_only:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay, announced = 0.05, False
        while True:
            try:
                limit = memory_limit or self.memory_limit
                con = duckdb.connect(self.database, read_only=read_only,
                                     config={"memory_limit": limit} if limit else {})
                break
            except duckdb.Error as exc:
                text = str(exc).lower()
                if not any(marker in text for marker in _LOCK_MARKERS):
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseLockedError(
                        f"The warehouse {self.database} stayed locked by another process for "
                        f"{self.lock_timeout:.0f} s ({str(exc).splitlines()[0]}). Close other DuckDB "
                        "sessions on this file (a BI tool, a notebook), or raise "
                        "IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS."
                    ) from exc
                if not announced:
                    self.log.info(
                        f"Warehouse {self.database} is locked by another process; waiting up to "
                        f"{self.lock_timeout:.0f} s."
                    )
                    announced = True
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one read-write connection for a unit of work made of many small steps; every `connect()` inside
        reuses it. Why: opening and closing the file costs ~60 ms each time (the close checkpoints), and an event
        lane batch (ingest, core, a dozen syncs that each connect three or four times) spent more time opening
        the warehouse than working in it. The file stays locked for the whole unit: keep units short. Other
        threads of the unit (the event lane's concurrent syncs) get their own cursor of it: a connection of the
        same database with its own transactions, which DuckDB lets threads use at once."""
        if self._session is not None:
            yield
            return
        with self.connect() as con:
            self._session, self._session_thread = con, threading.get_ident()
            try:
                yield
            finally:
                self._session = None

    @contextmanager
    def _lent(self, con: duckdb.DuckDBPyConnection, memory_limit: str | None) -> Iterator[None]:
        if not memory_limit or memory_limit == self.memory_limit:
            yield
            return
        con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
        try:
            yield
        finally:
            con.execute(f"SET memory_limit = {quote_literal(self.memory_limit)}" if self.memory_limit
                        else "RESET memory_limit")

    # -- ops tables ------------------------------------------------------------------------------------
    @staticmethod
    def ensure_ops(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE SCHEMA IF NOT EXISTS ops")
        con.execute(
            """CREATE TABLE IF NOT EXISTS ops.stream_state (
                   system VARCHAR NOT NULL, stream VARCHAR NOT NULL, state_key VARCHAR NOT NULL,
                   cursor VARCHAR, updated_at TIMESTAMPTZ NOT NULL, run_id VARCHAR,
                   PRIMARY KEY (system, stream, state_key))"""
        )
        con.execute(
            """CREATE TABLE IF NOT EXISTS ops.extract_log (
                   run_id VARCHAR, system VARCHAR, stream VARCHAR, state_key VARCHAR,
                   started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, pages BIGINT, requests BIGINT,
                   records BIGINT, inserted BIGINT, updated BIGINT, unchanged BIGINT, cursor VARCHAR)"""
        )
        # sandbox or live, and which account: live writes refuse to carry sandbox-extracted data (provenance.py)
        con.execute("ALTER TABLE ops.extract_log ADD COLUMN IF NOT EXISTS source_mode VARCHAR")
        con.execute("ALTER TABLE ops.extract_log ADD COLUMN IF NOT EXISTS source_account VARCHAR")
        # the vendor's schema drifting: each column a later load added to a raw table (a first load's are not
        # changes), when and by which run; `systems status` lists them, and the extract alerts once per change
        con.execute(
            """CREATE TABLE IF NOT EXISTS ops.schema_changes (
                   table_name VARCHAR NOT NULL, column_name VARCHAR NOT NULL, column_type VARCHAR,
                   run_id VARCHAR, added_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (table_name, column_name))"""
        )

    def read_state(self, system: str, stream: str, state_key: str) -> str | None:
        if self.is_file and not Path(self.database).exists():
            return None
        with self.connect() as con:
            self.ensure_ops(con)
            row = con.execute(
                "SELECT cursor FROM ops.stream_state WHERE system=? AND stream=? AND state_key=?",
                [system, stream, state_key],
            ).fetchone()
        return row[0] if row else None

    # -- loading -------------------------------------------------------------------------------------
    def load_spool(
        self,
        *,
        schema: str,
        table: str,
        files: Sequence[Path],
        state: StreamState | None,
        run_id: str,
        log_row: dict[str, Any] | None = None,
        source: RowSource | None = None,
    ) -> LoadResult:
        """Upsert every spooled batch by `_pk` and advance the stream's cursor, in one transaction.

        Rows whose original JSON is unchanged are left alone, so a rerun writes nothing. A column the API
        added is added; a value whose type no longer fits its column is cast where it can be and kept in
        `_raw` where it cannot, with a warning in the result. `source` (default: the enclosing `row_source`)
        is written into each inserted or updated row; an unchanged row that now comes from another mode or
        account counts as changed, so each row always says where it was last read from.
        """
        source = source or self._row_source
        limit = self.load_memory_limit
        with self.connect(memory_limit=limit) as con:
            # row order in a raw table means nothing, and keeping it costs the insert memory per thread
            con.execute("SET preserve_insertion_order = false")
            raw_compression = _raw_compression(con)
            for attempt in range(LOAD_MEMORY_DOUBLINGS + 1):
                result = LoadResult(table=f"{schema}.{table}")
                con.execute("BEGIN TRANSACTION")
                try:
                    self._load(con, schema, table, files, state, run_id, log_row, result, raw_compression, source)
                    con.execute("COMMIT")
                    return result
                except duckdb.OutOfMemoryException as exc:
                    con.execute("ROLLBACK")
                    if limit is None or attempt == LOAD_MEMORY_DOUBLINGS:
                        raise WarehouseMemoryError(
                            f"Loading {schema}.{table} needed more than {limit or 'the default'} of DuckDB memory "
                            f"({str(exc).splitlines()[0]}); nothing was committed. Set IP_LOAD_MEMORY_LIMIT higher "
                            "(for example 4GB) and rerun the asset."
                        ) from exc
                    # What a load needs grows with the table's width and DuckDB's threads, not with the row
                    # count; a wide table under a small limit gets a larger one instead of a failed run.
                    bigger = _doubled(limit)
                    self.log.warning(
                        f"Loading {schema}.{table} needed more than {limit} of DuckDB memory; retrying the load "
                        f"with {bigger} (nothing was committed). Set IP_LOAD_MEMORY_LIMIT={bigger} to start there."
                    )
                    limit = bigger
                    con.execute(f"SET memory_limit = {quote_literal(limit)}")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _load(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        files: Sequence[Path],
        state: StreamState | None,
        run_id: str,
        log_row: dict[str, Any] | None,
        result: LoadResult,
        raw_compression: str = "",
        source: RowSource | None = None,
    ) -> None:
        """The statements of one load attempt, inside the caller's transaction."""
        target = table_name(schema, table)
        self.ensure_ops(con)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        if files:
            self._upsert(con, schema, table, files, result, raw_compression, source)
        elif not self._exists(con, schema, table):
            # An empty read still leaves a queryable table; the API's columns arrive with data.
            _create_raw_table(con, target, _EMPTY_COLUMNS, raw_compression)
        else:
            self._ensure_source_columns(con, target)
        added = [(name, kind) for name, kind in result.new_column_types.items()
                 if result.schema_known and not name.startswith("_")]
        if added:
            con.executemany("INSERT OR IGNORE INTO ops.schema_changes VALUES (?, ?, ?, ?, ?)",
                            [[f"{schema}.{table}", name, kind, run_id, datetime.now(UTC)] for name, kind in added])
        if log_row is not None and source is not None:
            log_row = {"source_mode": source.mode, "source_account": source.account, **log_row}
        if state is not None:
            con.execute(
                "INSERT OR REPLACE INTO ops.stream_state VALUES (?, ?, ?, ?, ?, ?)",
                [state.system, state.stream, state.state_key, state.cursor, datetime.now(UTC), run_id],
            )
        if log_row is not None:
            row = {**log_row, "finished_at": datetime.now(UTC), "inserted": result.inserted,
                   "updated": result.updated, "unchanged": result.unchanged}
            names = ", ".join(row)
            con.execute(
                f"INSERT INTO ops.extract_log ({names}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        if self._exists(con, schema, table):
            result.total_rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            result.columns = self._describe(con, target)
            result.preview_markdown = self._preview(con, target, result.columns)

    def _ensure_source_columns(self, con: duckdb.DuckDBPyConnection, target: str) -> None:
        """A raw table made before rows recorded their source gains the columns (its old rows: NULL, unknown)."""
        have = {n.lower() for n, _ in self._describe(con, target)}
        for name, kind in SOURCE_COLUMNS:
            if name not in have:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(name)} {kind}")

    def _upsert(
        self, con: duckdb.DuckDBPyConnection, schema: str, table: str, files: Sequence[Path], result: LoadResult,
        raw_compression: str = "", source: RowSource | None = None,
    ) -> None:
        """Why it is shaped like this: memory stays flat however big the stream. The spool's Parquet files are
        the staging area (a view, read as needed, never copied into DuckDB memory); change detection joins only
        `_pk` and `_hash` (the digest of `_raw`), so the hash table is tens of bytes per row instead of the
        whole record; and the insert streams the changed rows straight from Parquet."""
        target = table_name(schema, table)
        file_list = "[" + ", ".join(quote_literal(str(f)) for f in files) + "]"
        con.execute(f"CREATE OR REPLACE TEMP VIEW _spooled AS SELECT * FROM read_parquet({file_list}, "
                    "union_by_name = true)")
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT _pk) FROM _spooled").fetchone()
        if rows != distinct:
            # The same record twice in one load (offset paging drifting, a page served twice, two events about one
            # object): the newest version wins, and between equal versions the last read.
            con.execute("""CREATE OR REPLACE TEMP VIEW _staged AS SELECT s.* FROM _spooled s
                           SEMI JOIN (SELECT _pk, arg_max(_seq, (_version, _seq)) AS _seq FROM _spooled
                                      GROUP BY _pk) l
                           USING (_pk, _seq)""")
        else:
            con.execute("CREATE OR REPLACE TEMP VIEW _staged AS SELECT * FROM _spooled")
        result.staged = distinct
        staged = [(n, t) for n, t in self._describe(con, "_staged") if n != "_seq"]
        new_allowed, table_allowed = self._column_limits()
        if not self._exists(con, schema, table):
            # A first load takes the API's fields as they are (a CRM object may have hundreds), up to the table's
            # limit; IP_MAX_NEW_COLUMNS_PER_LOAD bounds what a later load adds.
            _create_raw_table(con, target, _first_fields(staged, table_allowed), raw_compression)
        self._ensure_source_columns(con, target)
        # DuckDB names are case-insensitive: a field that comes back as `name` after `Name` is the same column
        existing = {n.lower(): (n, t) for n, t in self._describe(con, target)}
        typed = sum(1 for n in existing.values() if n[0] not in _META_NAMES)
        # a table made by an empty read holds no field of the API's yet: its first records' fields are not changes
        result.schema_known = typed > 0
        budget = max(0, min(new_allowed, table_allowed - typed))
        select: list[str] = []
        left_out: list[str] = []
        for name, staged_type in staged:
            col = quote_ident(name)
            if name.lower() in _SOURCE_NAMES:
                continue  # ours, written from the load's source below; never a field of the API's
            if name.lower() not in existing:
                if name not in _META_NAMES and budget <= 0:
                    left_out.append(name)  # its values stay in `_raw`, which holds the whole record
                    continue
                con.execute(f"ALTER TABLE {target} ADD COLUMN {col} {staged_type}")
                result.new_columns.append(name)
                result.new_column_types[name] = staged_type
                budget -= name not in _META_NAMES
                select.append(col)
                continue
            column, column_type = existing[name.lower()]
            as_column = quote_ident(column)
            if column_type == staged_type or staged_type == '"NULL"':
                select.append(f"{col} AS {as_column}")
            else:
                lost = con.execute(
                    f"SELECT count(*) FROM _staged WHERE {col} IS NOT NULL "
                    f"AND TRY_CAST({col} AS {column_type}) IS NULL"
                ).fetchone()[0]
                if lost:
                    result.type_warnings.append(
                        f"{column}: {lost} value(s) of type {staged_type} do not fit the column's "
                        f"{column_type}; stored as NULL there and kept in _raw"
                    )
                select.append(f"TRY_CAST({col} AS {column_type}) AS {as_column}")
        batched_out = _fields_left_in_raw(files)
        if left_out or batched_out:
            result.fields_left_in_raw = len(left_out) + batched_out
            shown = ", ".join(left_out[:5]) + (" ..." if len(left_out) > 5 else "")
            result.type_warnings.append(
                f"{result.fields_left_in_raw} field(s) got no typed column and are kept in _raw only "
                f"(IP_MAX_NEW_COLUMNS_PER_LOAD={new_allowed} new columns per load, IP_MAX_COLUMNS_PER_TABLE="
                f"{table_allowed} per table{'; e.g. ' + shown if shown else ''}); read them with "
                "json_extract(_raw, '$.<field>'), or raise the limits and reload")
            self.log.warning(f"{schema}.{table}: {result.type_warnings[-1]}")
        # A table loaded before `_hash` existed has NULL there: every row compares as changed once and is
        # rewritten with its digest.
        # Apply by version, never by arrival: a staged snapshot older than the stored one (an event delivered late,
        # a captured delivery replayed, a read that started before a newer event was applied) is left out. Rows
        # loaded before `_version` existed have NULL there and count as older than anything.
        # A row read from another mode or account than the stored one is rewritten even when its JSON is the same:
        # its `_source_mode`/`_source_account` must say where it was last read from.
        provenance, moved = "", ""
        if source is not None:
            mode = quote_literal(source.mode)
            account = "NULL" if source.account is None else quote_literal(source.account)
            provenance = f", {mode} AS _source_mode, {account}::VARCHAR AS _source_account"
            moved = f" OR t._source_mode IS DISTINCT FROM {mode} OR t._source_account IS DISTINCT FROM {account}"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _changed AS
                SELECT s._pk, t._pk IS NULL AS _is_new,
                       t._pk IS NOT NULL AND s._version < t._version AS _is_stale
                FROM _staged s LEFT JOIN {target} t USING (_pk)
                WHERE t._pk IS NULL OR t._hash IS DISTINCT FROM s._hash{moved}"""
        )
        stale = con.execute("SELECT count(*) FROM _changed WHERE _is_stale").fetchone()[0]
        if stale:
            con.execute("DELETE FROM _changed WHERE _is_stale")
        changed, new = con.execute("SELECT count(*), count(*) FILTER (WHERE _is_new) FROM _changed").fetchone()
        result.inserted, result.updated, result.stale = new, changed - new, stale
        result.unchanged = result.staged - changed - stale
        if changed:
            con.execute(f"DELETE FROM {target} WHERE _pk IN (SELECT _pk FROM _changed WHERE NOT _is_new)")
            con.execute(f"INSERT INTO {target} BY NAME SELECT {', '.join(select)}{provenance} FROM _staged "
                        "WHERE _pk IN (SELECT _pk FROM _changed)")
        con.execute("DROP TABLE _changed")
        con.execute("DROP VIEW _staged")
        con.execute("DROP VIEW IF EXISTS _spooled")

    max_new_columns_per_load: int | None = None  # None: IP_MAX_NEW_COLUMNS_PER_LOAD
    max_columns_per_table: int | None = None  # None: IP_MAX_COLUMNS_PER_TABLE

    def _column_limits(self) -> tuple[int, int]:
        new, total = self.max_new_columns_per_load, self.max_columns_per_table
        if new is None or total is None:
            settings = load_settings()
            new = settings.max_new_columns_per_load if new is None else new
            total = settings.max_columns_per_table if total is None else total
        return new, total

    @staticmethod
    def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
        return bool(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?",
                [schema, table],
            ).fetchone()[0]
        )

    @staticmethod
    def _preview(con: duckdb.DuckDBPyConnection, target: str, columns: list[tuple[str, str]]) -> str:
        """Five rows of the scalar columns: nested JSON makes an unreadable table, and it is in `_raw`."""
        names = [quote_ident(name) for name, _ in columns if not name.startswith("_") or name == "_pk"]
        frame = con.execute(f"SELECT {', '.join(names)} FROM {target} ORDER BY _pk LIMIT 5").df()
        nested = [c for c in frame.columns if frame[c].astype(str).str.match(r"^[\[{]").any()]
        return frame.drop(columns=nested).iloc[:, :9].to_markdown(index=False)

    @staticmethod
    def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
        rows = con.execute(f"DESCRIBE {relation}").fetchall()
        return [(row[0], '"NULL"' if row[1] == "NULL" else row[1]) for row in rows]
