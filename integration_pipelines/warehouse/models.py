"""Build staging and core models from the raw tables, in one transaction, deterministically.

Staging models are SQL files `models/staging/<system>__<entity>.sql` with two header lines, `-- entity:` (which
contract of contracts.yaml they produce) and `-- requires:` (the raw tables they read). A staging model whose raw
tables do not exist yet is skipped, so the warehouse builds from whatever systems have been extracted.
`staging.<entity>` is the union of the built ones, cast to the contract (an empty, typed table when none is).

Core tables are written by key with a row hash: only new, changed and removed rows are touched, so a rebuild
from unchanged raw data changes no row, and the counts say exactly what changed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

from .duckdb import quote_ident

MODELS_DIR = Path(__file__).parent / "models"
_HEADER = re.compile(r"^--\s*(entity|requires|optional|key|depends):\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Contract:
    name: str
    description: str
    key: tuple[str, ...]
    columns: dict[str, dict[str, str]]


@dataclass(frozen=True)
class StagingModel:
    name: str
    entity: str
    requires: tuple[str, ...]
    sql: str
    optional: tuple[str, ...] = ()  # raw tables read when present; an empty one stands in until the first read


@dataclass
class TableChange:
    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rows: int = 0


@dataclass
class BuildReport:
    staging_built: list[str] = field(default_factory=list)
    staging_skipped: dict[str, list[str]] = field(default_factory=dict)
    changes: dict[str, TableChange] = field(default_factory=dict)


@cache
def contracts() -> dict[str, Contract]:
    raw = yaml.safe_load((MODELS_DIR / "contracts.yaml").read_text())
    return {name: Contract(name, spec["description"], tuple(spec["key"]), spec["columns"])
            for name, spec in raw.items()}


def _headers(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in _HEADER.finditer(text)}


@cache
def staging_models() -> tuple[StagingModel, ...]:
    models = []
    for path in sorted((MODELS_DIR / "staging").glob("*.sql")):
        text = path.read_text()
        header = _headers(text)
        if header.get("entity") not in contracts():
            raise ValueError(f"{path}: '-- entity:' must name one of {sorted(contracts())}")
        requires = tuple(t.strip() for t in header.get("requires", "").split(",") if t.strip())
        optional = tuple(t.strip() for t in header.get("optional", "").split(",") if t.strip())
        models.append(StagingModel(path.stem, header["entity"], requires, text, optional))
    return tuple(models)


def core_inputs() -> frozenset[str]:
    """Every raw table the staging models read (`schema.table`): core changes only when one of these does, so
    the event lane skips the rebuild for a batch of change notices or form posts."""
    return frozenset(t for m in staging_models() for t in (*m.requires, *m.optional))


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".", 1)
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?", [schema, table]
    ).fetchone()[0])


def load_seeds(con: duckdb.DuckDBPyConnection) -> None:
    """Reference tables shipped with the code (currencies, legal entities, FX rates) in schema `ref`."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ref")
    for path in sorted((MODELS_DIR / "seeds").glob("*.csv")):
        con.execute(f"CREATE OR REPLACE TABLE ref.{path.stem} AS SELECT * FROM read_csv(?, header = true)",
                    [str(path)])
    with (MODELS_DIR / "seeds" / "currencies.csv").open() as handle:
        zero_decimal = [row["currency"] for row in csv.DictReader(handle) if row["minor_exponent"] == "0"]
    zero_list = ", ".join(f"'{c}'" for c in zero_decimal) or "''"
    # Decimal strings → integer minor units, exact (DECIMAL, not float) and aware of zero-decimal currencies.
    # Stored in the warehouse (not a session's TEMP macro): the staging views call it, and a user's `query`, a BI
    # tool or `tables` must be able to read those views from their own sessions.
    con.execute(
        f"""CREATE OR REPLACE MACRO main.to_minor(amount, currency) AS
            CAST(round(CAST(amount AS DECIMAL(38, 6))
                 * CASE WHEN upper(currency) IN ({zero_list}) THEN 1 ELSE 100 END) AS BIGINT)"""
    )


def build_staging(con: duckdb.DuckDBPyConnection, report: BuildReport) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    built: dict[str, list[str]] = {name: [] for name in contracts()}
    for model in staging_models():
        missing = [t for t in model.requires if not _exists(con, t)]
        if missing:
            report.staging_skipped[model.name] = missing
            continue
        for table in model.optional:  # e.g. a stream of deletions not read yet: nothing is deleted so far
            if not _exists(con, table):
                schema, name = table.split(".", 1)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
                con.execute(f"CREATE TABLE {quote_ident(schema)}.{quote_ident(name)} (_pk VARCHAR, _raw VARCHAR)")
        con.execute(f"CREATE OR REPLACE VIEW staging.{quote_ident(model.name)} AS {model.sql}")
        built[model.entity].append(model.name)
        report.staging_built.append(model.name)
    for name, contract in contracts().items():
        columns = ", ".join(f"CAST({quote_ident(c)} AS {spec['type']}) AS {quote_ident(c)}"
                            for c, spec in contract.columns.items())
        if built[name]:
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM staging.{quote_ident(m)}" for m in built[name])
            body = f"SELECT {columns} FROM ({union})"
        else:
            empty = ", ".join(f"NULL::{spec['type']} AS {quote_ident(c)}" for c, spec in contract.columns.items())
            body = f"SELECT {empty} WHERE false"
        con.execute(f"CREATE OR REPLACE TABLE staging.{quote_ident(name)} AS {body}")


def write_by_key(con: duckdb.DuckDBPyConnection, target: str, select_sql: str, key: tuple[str, ...]) -> TableChange:
    """Make `target` equal to `select_sql`, touching only rows whose content changed (by key and row hash)."""
    schema, table = target.split(".", 1)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _next AS SELECT q.*, md5(to_json(q)::VARCHAR) AS _row_hash "
                f"FROM ({select_sql}) AS q")
    duplicates = con.execute(
        f"SELECT count(*) - count(DISTINCT ({', '.join(map(quote_ident, key))})) FROM _next").fetchone()[0]
    if duplicates:
        raise ValueError(f"{target}: {duplicates} rows share a key {key}; the model must be unique by its key")
    change = TableChange(target)
    qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
    next_columns = con.execute("DESCRIBE _next").fetchall()
    if _exists(con, target):
        current_columns = con.execute(f"DESCRIBE {qualified}").fetchall()
        if [c[:2] for c in current_columns] != [c[:2] for c in next_columns]:
            con.execute(f"DROP TABLE {qualified}")  # the model's shape changed: rebuild it whole
    if not _exists(con, target):
        con.execute(f"CREATE TABLE {qualified} AS SELECT * FROM _next")
        change.inserted = change.rows = con.execute("SELECT count(*) FROM _next").fetchone()[0]
        return change
    join = " AND ".join(f"t.{quote_ident(k)} IS NOT DISTINCT FROM n.{quote_ident(k)}" for k in key)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _diff AS
        SELECT n.*, t._row_hash IS NULL AS _is_new FROM _next n LEFT JOIN {qualified} t ON {join}
        WHERE t._row_hash IS NULL OR t._row_hash <> n._row_hash""")
    change.deleted = con.execute(
        f"SELECT count(*) FROM {qualified} t WHERE NOT EXISTS (SELECT 1 FROM _next n WHERE {join})").fetchone()[0]
    changed, new = con.execute("SELECT count(*), count(*) FILTER (WHERE _is_new) FROM _diff").fetchone()
    change.inserted, change.updated = new, changed - new
    con.execute(f"DELETE FROM {qualified} t WHERE NOT EXISTS (SELECT 1 FROM _next n WHERE {join})")
    con.execute(f"DELETE FROM {qualified} t WHERE EXISTS (SELECT 1 FROM _diff n WHERE NOT n._is_new AND {join})")
    con.execute(f"INSERT INTO {qualified} BY NAME SELECT * EXCLUDE (_is_new) FROM _diff")
    change.rows = con.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0]
    change.unchanged = change.rows - change.inserted - change.updated
    return change


@cache
def core_models() -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(table, key, select SQL) for models/core/*.sql, in file-name order (prefix numbers set the order)."""
    out = []
    for path in sorted((MODELS_DIR / "core").glob("*.sql")):
        text = path.read_text()
        header = _headers(text)
        key = tuple(k.strip() for k in header["key"].split(","))
        out.append((f"core.{path.stem.split('_', 1)[1]}", key, text))
    return tuple(out)


CATEGORY_TRUST = {"accounting": 1, "erp": 2, "crm": 3, "payments": 4, "ecommerce": 5}


def write_systems(con: duckdb.DuckDBPyConnection, systems: list[tuple[str, str]]) -> None:
    """ref.systems: each system's category and how far its customer data is trusted (survivorship)."""
    con.execute("CREATE OR REPLACE TABLE ref.systems (name VARCHAR, category VARCHAR, trust_rank INTEGER)")
    if systems:
        con.executemany("INSERT INTO ref.systems VALUES (?, ?, ?)",
                        [(name, category, CATEGORY_TRUST.get(category, 9)) for name, category in systems])


def build_all(con: duckdb.DuckDBPyConnection, systems: list[tuple[str, str]]) -> BuildReport:
    """Seeds → staging → identity → core, inside the caller's transaction."""
    from .identity import resolve  # identity imports this module

    report = BuildReport()
    load_seeds(con)
    write_systems(con, systems)
    build_staging(con, report)
    report.changes.update({f"core.{k}": v for k, v in resolve(con).items()})
    for table, key, sql in core_models():
        report.changes[table] = write_by_key(con, table, sql, key)
    return report


def build_committed(con: duckdb.DuckDBPyConnection, systems: list[tuple[str, str]]) -> BuildReport:
    """`build_all` in its own transaction: readers see the previous picture or the new one, never half."""
    con.execute("BEGIN TRANSACTION")
    try:
        report = build_all(con, systems)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def describe_core(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'core' ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        out.setdefault(table, []).append((column, kind))
    return out


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()
