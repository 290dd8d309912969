"""Read the warehouse for a person: short read-only connections that wait out a writing run politely.

DuckDB locks the whole file while a run writes, so a reader cannot even open it then. Rather than failing (or,
worse, making the run fail), the reader waits with a message, up to a timeout, and closes as soon as it has
its rows, so the next run is never held up by a forgotten terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from .duckdb import Warehouse, quote_ident, quote_literal


class WarehouseMissingError(RuntimeError):
    pass


@dataclass
class _Notice:
    say: Callable[[str], None]

    def info(self, message: str) -> None:
        self.say(message)

    warning = info


def open_warehouse(database: str, timeout: float, say: Callable[[str], None]) -> Warehouse:
    warehouse = Warehouse(database, lock_timeout=timeout, log=_Notice(say))
    if warehouse.is_file and not Path(database).exists():
        raise WarehouseMissingError(
            f"There is no warehouse at {database} yet. Materialize an extract asset first (make demo, then "
            "Materialize in the UI), or point IP_WAREHOUSE / IP_DATA_DIR at an existing one.")
    return warehouse


class QueryRefusedError(RuntimeError):
    """The SQL asked for something the read-only `query` command does not do (a write, a file, an extension)."""


_READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA,
            duckdb.StatementType.CALL, duckdb.StatementType.RELATION}
_WHAT = {"ATTACH": "attaching another database", "DETACH": "detaching a database", "COPY": "copying to a file",
         "COPY_DATABASE": "copying a database", "EXPORT": "exporting to files", "LOAD": "installing or loading an "
         "extension", "EXTENSION": "installing or loading an extension", "SET": "changing a setting or the current "
         "database (SET, RESET, USE)", "VARIABLE_SET": "setting a variable"}
# DuckDB's own switches, set on the read-only connection before the user's SQL runs. Together they are the
# boundary: no file or network access (ATTACH, COPY, EXPORT, read_csv/read_parquet/read_json/glob on paths,
# INSTALL), no extension loading, and the configuration locked so that the SQL cannot turn any of it back on.
LOCKDOWN = (("enable_external_access", "false"), ("allow_unsigned_extensions", "false"),
            ("allow_community_extensions", "false"), ("autoinstall_known_extensions", "false"),
            ("autoload_known_extensions", "false"), ("lock_configuration", "true"))
_REFUSAL_MARKERS = ("file system operations are disabled", "disabled through configuration",
                    "configuration has been locked", "attached in read-only mode", "in read-only mode",
                    "cannot detach database")


def _refusal(what: str) -> QueryRefusedError:
    return QueryRefusedError(
        f"`query` only reads the warehouse, and this SQL asks for {what}. It runs on a read-only connection with "
        "DuckDB's external access, extension loading and configuration changes switched off, so it cannot write "
        "the warehouse, attach or detach databases, read or write files, install extensions or change settings. "
        "Ask with SELECT (or DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); to save a result, use --output FILE, which "
        "this command writes itself.")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse, before running anything, a statement whose kind is not a read (DuckDB's own parser says which).
    The connection's lockdown stays the boundary; this only gives the clearer message first."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error:
        return  # a syntax error: running it gives DuckDB's own message
    for statement in statements:
        if statement.type not in _READING:
            kind = statement.type.name
            raise _refusal(_WHAT.get(kind, f"a {kind.lower().replace('_', ' ')} statement (a change)"))


def _lock_down(con: duckdb.DuckDBPyConnection, database: str) -> None:
    for name, value in LOCKDOWN:
        if name == "enable_external_access" and database.startswith("md:"):
            continue  # MotherDuck is reached over the network; its read-only token is the boundary there
        con.execute(f"SET {name} = {value}")


@contextmanager
def _reading(database: str, sql: str, timeout: float,
             say: Callable[[str], None]) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(database, timeout, say).connect(read_only=True) as con:
        _lock_down(con, database)
        check_read_only(con, sql)
        try:
            yield con
        except duckdb.Error as exc:
            text = str(exc).lower()
            if isinstance(exc, duckdb.PermissionException) or any(m in text for m in _REFUSAL_MARKERS):
                raise _refusal(f"what DuckDB refused ({str(exc).splitlines()[0]})") from exc
            raise


def run_query(database: str, sql: str, *, timeout: float = 60.0,
              say: Callable[[str], None] = print) -> pd.DataFrame:
    with _reading(database, sql, timeout, say) as con:
        return con.execute(sql).df()


def export_query(database: str, sql: str, output: Path, fmt: str, *, timeout: float = 60.0,
                 say: Callable[[str], None] = print) -> int:
    """Write the result to `output` (csv, json or parquet), returning the row count. DuckDB only reads; the file
    is written here, batch by batch as the rows stream out, so the query itself never touches the file system."""
    with _reading(database, sql, timeout, say) as con:
        result = con.execute(sql)
        # DuckDB 2 names it to_arrow_reader; 1.x fetch_record_batch
        stream = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
        reader = stream(_BATCH_ROWS)
        return _write(reader, output, fmt)


_BATCH_ROWS = 100_000


def _write(reader: pa.RecordBatchReader, output: Path, fmt: str) -> int:
    """Stream the result into `output` through a separate in-memory DuckDB that sees nothing but these rows
    (the warehouse connection stays locked down), keeping DuckDB's CSV, JSON and Parquet writers."""
    partial = output.with_name(f".{output.name}.partial")
    target = quote_literal(str(partial))
    options = {"parquet": "FORMAT parquet, COMPRESSION zstd", "csv": "FORMAT csv, HEADER true"}.get(
        fmt, "FORMAT json, ARRAY true")
    try:
        with duckdb.connect(":memory:") as writer:
            writer.register("_result", reader)
            rows = writer.execute(f"COPY (SELECT * FROM _result) TO {target} ({options})").fetchone()
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return int(rows[0]) if rows else 0


def list_tables(database: str, *, timeout: float = 60.0, say: Callable[[str], None] = print) -> pd.DataFrame:
    """Schemas, tables, row counts, and when their data was last extracted (raw tables).

    A relation this connection cannot read (a view whose definition needs something the writer's session had,
    such as a temporary macro) is listed with no row count and named on `say`, instead of hiding the whole list.
    """
    with open_warehouse(database, timeout, say).connect(read_only=True) as con:
        _lock_down(con, database)
        tables = con.execute(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') AND table_catalog = current_database() "
            "ORDER BY 1, 2").fetchall()
        rows = []
        for schema, table, kind in tables:
            target = f"{quote_ident(schema)}.{quote_ident(table)}"
            count = fresh = None
            try:
                columns = {c[0] for c in con.execute(f"DESCRIBE {target}").fetchall()}
                count = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                fresh = (con.execute(f"SELECT max(_extracted_at) FROM {target}").fetchone()[0]
                         if "_extracted_at" in columns else None)
            except duckdb.Error as exc:
                say(f"{schema}.{table} cannot be read: {str(exc).splitlines()[0]}")
            rows.append({"schema": schema, "table": table, "kind": "view" if kind == "VIEW" else "table",
                         "rows": count, "last_extracted": fresh})
        frame = pd.DataFrame(rows, columns=["schema", "table", "kind", "rows", "last_extracted"])
        # counts are whole numbers; an unreadable relation's missing count must not turn them all into floats
        return frame.astype({"rows": "Int64"})
