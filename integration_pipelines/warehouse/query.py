"""Read the warehouse for a person: short read-only connections that wait out a writing run politely.

DuckDB locks the whole file while a run writes, so a reader cannot even open it then. Rather than failing (or,
worse, making the run fail), the reader waits with a message, up to a timeout, and closes as soon as it has
its rows, so the next run is never held up by a forgotten terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from .duckdb import Warehouse, quote_ident


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


def run_query(database: str, sql: str, *, timeout: float = 60.0,
              say: Callable[[str], None] = print) -> pd.DataFrame:
    with open_warehouse(database, timeout, say).connect(read_only=True) as con:
        return con.execute(sql).df()


def export_query(database: str, sql: str, output: Path, fmt: str, *, timeout: float = 60.0,
                 say: Callable[[str], None] = print) -> int:
    """Write the result with DuckDB's own writers (streamed, typed), returning the row count."""
    with open_warehouse(database, timeout, say).connect(read_only=True) as con:
        relation = con.sql(sql)
        if fmt == "parquet":
            relation.write_parquet(str(output))
        elif fmt == "csv":
            relation.write_csv(str(output), header=True)
        else:
            con.execute(f"COPY ({sql}) TO '{str(output).replace(chr(39), chr(39) * 2)}' (FORMAT json, ARRAY true)")
        return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0])


def list_tables(database: str, *, timeout: float = 60.0, say: Callable[[str], None] = print) -> pd.DataFrame:
    """Schemas, tables, row counts, and when their data was last extracted (raw tables).

    A relation this connection cannot read (a view whose definition needs something the writer's session had,
    such as a temporary macro) is listed with no row count and named on `say`, instead of hiding the whole list.
    """
    with open_warehouse(database, timeout, say).connect(read_only=True) as con:
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
