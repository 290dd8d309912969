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
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
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


IDENTITY_TABLES = ("customers", "customer_xref", "customer_duplicates")  # identity.resolve builds these


def core_lineage() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Core table → (raw tables it reads through staging, other core tables it reads), from the SQL itself:
    `staging.<entity>` names the staging models of that entity (and their `-- requires:`/`-- optional:` raw
    tables), `core.<table>` another core table. The identity tables read `staging.customer_records`."""
    raw_of: dict[str, set[str]] = {}
    for model in staging_models():
        raw_of.setdefault(model.entity, set()).update((*model.requires, *model.optional))
    lineage = {t: (frozenset(raw_of.get("customer_records", ())), frozenset()) for t in IDENTITY_TABLES}
    for table, _, sql in core_models():
        name = table.split(".", 1)[1]
        entities = set(re.findall(r"\bstaging\.(\w+)", sql))
        cores = set(re.findall(r"\bcore\.(\w+)", sql)) - {name}
        lineage[name] = (frozenset(t for e in entities for t in raw_of.get(e, ())), frozenset(cores))
    return lineage


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".", 1)
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?", [schema, table]
    ).fetchone()[0])


LEGAL_ENTITIES_FILE_ENV = "IP_LEGAL_ENTITIES_FILE"
FX_RATES_FILE_ENV = "IP_FX_RATES_FILE"
REPORTING_CURRENCY_ENV = "IP_REPORTING_CURRENCY"
BOOKS_ACCOUNTS_FILE_ENV = "IP_BOOKS_ACCOUNTS_FILE"
DEFAULT_BOOKS_ACCOUNTS = MODELS_DIR / "seeds" / "books_accounts.csv"
DEFAULT_LEGAL_ENTITIES = MODELS_DIR / "seeds" / "legal_entities.yaml"
DEFAULT_FX_RATES = MODELS_DIR / "seeds" / "fx_rates.csv"
DEFAULT_REPORTING_CURRENCY = "USD"
_CURRENCY = re.compile(r"^[A-Z]{3}$")

_SETTINGS_TABLE = "\n".join([
    "| variable | default | what |",
    "|---|---|---|",
    f"| `{LEGAL_ENTITIES_FILE_ENV}` | `warehouse/models/seeds/legal_entities.yaml` (the sandbox group) | the group's "
    "legal entities, the books each keeps, and how each is recognised as a customer (intercompany) |",
    f"| `{FX_RATES_FILE_ENV}` | `warehouse/models/seeds/fx_rates.csv` (illustrative monthly demo rates 2025-2026, "
    "not market data) | FX rates: CSV `date,currency,rate[,to_currency]`, `rate` = units of the reporting currency "
    "per unit of `currency`, daily or monthly; the latest rate on or before a date applies |",
    f"| `{REPORTING_CURRENCY_ENV}` | `{DEFAULT_REPORTING_CURRENCY}` | the currency of the consolidated figures; a "
    "`to_currency` column in the rates file must name it |",
    f"| `{BOOKS_ACCOUNTS_FILE_ENV}` | `warehouse/models/seeds/books_accounts.csv` (the sandbox books' ids) | the "
    "accounts, items and bank accounts the syncs post to in each books: CSV `books_system,purpose,account_code"
    "[,description]`, read as `ref.books_accounts` (codes are text: `090` stays `090`) |",
])

#: The settings a business fills in for consolidated reporting (docs/warehouse.md prints this).
REPORTING_SETTINGS_DOC = f"""\
## Settings for consolidated reporting

Which company issued an invoice, and what it is worth in the group's currency, is configuration, read at every
core build (an error names the file and the entry or line):

{_SETTINGS_TABLE}

`legal_entities.yaml`: `entities` is a list; each has `legal_entity` (its name), `country`, `functional_currency`,
`books` (where its invoices are held, its books of record first: `system`, optional `books_id` = the books' own
id for the entity, e.g. the NetSuite `subsidiary` internalId or a Xero BrandingThemeID, optional `currencies`)
and `intercompany` (`email_domains`, and `customers` as `{{system, id}}`: how the other group companies hold this
entity as a customer). An invoice belongs to the first `books` entry it matches (`core.invoices.legal_entity`);
a copy of the same invoice (number and currency) in a books listed later for the same entity is not counted
again (`is_books_of_record`). The shipped file is the sandbox's rule: its single Xero organisation cannot tell the
UK company's invoices from the German one's, so the demo assigns Xero invoices by currency (GBP → UK, EUR → DE).

Open means open: `core.receivables_by_entity` counts invoices of the books of record whose status is `open`
(drafts, Xero DRAFT and SUBMITTED, are not receivables; voided, deleted and paid invoices are not open) at each
currency's latest rate on or before the build date; `core.revenue_by_entity` counts every issued invoice (not
draft, not void) at the latest rate on or before its invoice date. Invoices to a group company are eliminated
from both and shown in the `intercompany_*` columns. An invoice whose currency has no rate is counted in
`invoices_without_rate` and fails the `fx_rates_cover_currencies` check; it is never converted at zero.
"""


class ReportingConfigError(ValueError):
    """A legal-entities or FX-rates file that cannot be used; the message names the file and the entry or line."""


def reporting_currency() -> str:
    value = (os.environ.get(REPORTING_CURRENCY_ENV) or DEFAULT_REPORTING_CURRENCY).strip().upper()
    if not _CURRENCY.match(value):
        raise ReportingConfigError(f"{REPORTING_CURRENCY_ENV}={value!r}: expected an ISO 4217 code such as USD")
    return value


def _config_path(env: str, default: Path) -> Path:
    value = os.environ.get(env, "").strip()
    if not value:
        return default
    path = Path(value).expanduser()
    if not path.is_file():
        raise ReportingConfigError(f"{env}={value}: no such file")
    return path


@dataclass(frozen=True)
class LegalEntities:
    entities: list[tuple[str, str | None, str | None, str | None]]  # legal_entity, country, currency, books_system
    books: list[tuple[int, str, str, str | None, str | None]]  # precedence, entity, system, books_id, currency
    intercompany: list[tuple[str, str, str | None, str]]  # entity, kind (email_domain|customer), system, value


def load_legal_entities(path: Path) -> LegalEntities:
    """Read and check a legal-entities file (see REPORTING_SETTINGS_DOC)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReportingConfigError(f"{path}: cannot read the legal entities: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("entities"), list) or not raw["entities"]:
        raise ReportingConfigError(f"{path}: expected a mapping with a non-empty list `entities`")
    out = LegalEntities([], [], [])
    seen: set[str] = set()
    for number, entry in enumerate(raw["entities"], start=1):
        where = f"{path}: entities entry {number}"
        if not isinstance(entry, dict):
            raise ReportingConfigError(f"{where}: expected a mapping, got {entry!r}")
        name = entry.get("legal_entity")
        if not isinstance(name, str) or not name.strip():
            raise ReportingConfigError(f"{where}: `legal_entity` (the entity's name) is missing")
        name = name.strip()
        where = f"{where} ({name})"
        unknown = set(entry) - {"legal_entity", "country", "functional_currency", "books", "intercompany"}
        if unknown:
            raise ReportingConfigError(f"{where}: unknown keys {sorted(unknown)}")
        if name in seen:
            raise ReportingConfigError(f"{where}: the legal entity is listed twice")
        seen.add(name)
        country = entry.get("country")
        if country is not None and not (isinstance(country, str) and re.fullmatch(r"[A-Z]{2}", country)):
            raise ReportingConfigError(f"{where}: `country` must be an ISO 3166 alpha-2 code, got {country!r}")
        functional = entry.get("functional_currency")
        if functional is not None and not (isinstance(functional, str) and _CURRENCY.match(functional)):
            raise ReportingConfigError(f"{where}: `functional_currency` must be an ISO 4217 code, got {functional!r}")
        books = entry.get("books")
        if not isinstance(books, list) or not books:
            raise ReportingConfigError(f"{where}: `books` must list at least one books ({{system: ...}})")
        for position, book in enumerate(books, start=1):
            at = f"{where}, books entry {position}"
            if not isinstance(book, dict) or not isinstance(book.get("system"), str) or not book["system"].strip():
                raise ReportingConfigError(f"{at}: expected a mapping with `system`, got {book!r}")
            if set(book) - {"system", "books_id", "currencies"}:
                extra = sorted(set(book) - {"system", "books_id", "currencies"})
                raise ReportingConfigError(f"{at}: unknown keys {extra}")
            books_id = book.get("books_id")
            if books_id is not None and not isinstance(books_id, str | int):
                raise ReportingConfigError(f"{at}: `books_id` must be a text or a number, got {books_id!r}")
            currencies = book.get("currencies") or [None]
            if not isinstance(currencies, list) or not all(c is None or (isinstance(c, str) and _CURRENCY.match(c))
                                                           for c in currencies):
                raise ReportingConfigError(f"{at}: `currencies` must be a list of ISO 4217 codes, got {currencies!r}")
            precedence = len({b[0] for b in out.books}) + 1
            for currency in currencies:
                out.books.append((precedence, name, book["system"].strip().lower(),
                                  None if books_id is None else str(books_id), currency))
        out.entities.append((name, country, functional, books[0]["system"].strip().lower()))
        intercompany = entry.get("intercompany") or {}
        if not isinstance(intercompany, dict) or set(intercompany) - {"email_domains", "customers"}:
            raise ReportingConfigError(f"{where}: `intercompany` takes `email_domains` and `customers`, "
                                       f"got {intercompany!r}")
        for domain in intercompany.get("email_domains") or []:
            if not isinstance(domain, str) or "." not in domain or "@" in domain:
                raise ReportingConfigError(f"{where}: intercompany email domain {domain!r} is not a domain")
            out.intercompany.append((name, "email_domain", None, domain.strip().lower()))
        for customer in intercompany.get("customers") or []:
            if not (isinstance(customer, dict) and isinstance(customer.get("system"), str)
                    and isinstance(customer.get("id"), str | int)):
                raise ReportingConfigError(f"{where}: an intercompany customer is {{system, id}}, got {customer!r}")
            out.intercompany.append((name, "customer", customer["system"].strip().lower(), str(customer["id"])))
    return out


def load_fx_rates(path: Path, reporting: str) -> list[tuple[date, str, Decimal]]:
    """Read and check an FX rates CSV: `date,currency,rate[,to_currency]`, rate in the reporting currency."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise ReportingConfigError(f"{path}: cannot read the FX rates: {exc}") from exc
    rows: list[tuple[date, str, Decimal]] = []
    seen: set[tuple[date, str]] = set()
    with handle:
        reader = csv.DictReader(handle)
        missing = {"date", "currency", "rate"} - set(reader.fieldnames or [])
        if missing:
            raise ReportingConfigError(f"{path}: the header must name date, currency, rate (and optionally "
                                       f"to_currency); missing {sorted(missing)}")
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            try:
                day = date.fromisoformat((row["date"] or "").strip())
            except ValueError:
                raise ReportingConfigError(f"{where}: date {row['date']!r} is not YYYY-MM-DD") from None
            currency = (row["currency"] or "").strip().upper()
            if not _CURRENCY.match(currency):
                raise ReportingConfigError(f"{where}: currency {row['currency']!r} is not an ISO 4217 code")
            to_currency = (row.get("to_currency") or "").strip().upper()
            if to_currency and to_currency != reporting:
                raise ReportingConfigError(
                    f"{where}: the rate is to {to_currency} but the reporting currency is {reporting} "
                    f"({REPORTING_CURRENCY_ENV}); give rates to {reporting} ({FX_RATES_FILE_ENV})")
            try:
                rate = Decimal((row["rate"] or "").strip())
            except InvalidOperation:
                raise ReportingConfigError(f"{where}: rate {row['rate']!r} is not a number") from None
            if not rate.is_finite() or rate <= 0:
                raise ReportingConfigError(f"{where}: rate {row['rate']!r} must be a positive number")
            if currency == reporting and rate != 1:
                raise ReportingConfigError(f"{where}: the reporting currency {reporting} converts at 1, not {rate}")
            if (day, currency) in seen:
                raise ReportingConfigError(f"{where}: a second rate for {currency} on {day}")
            seen.add((day, currency))
            rows.append((day, currency, rate))
    return rows


def load_seeds(con: duckdb.DuckDBPyConnection) -> None:
    """Reference tables in schema `ref`: the shipped seeds (currencies, books accounts), the group's legal entities
    and FX rates (configurable files, see REPORTING_SETTINGS_DOC) and the reporting currency."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ref")
    for path in sorted((MODELS_DIR / "seeds").glob("*.csv")):
        if path not in (DEFAULT_FX_RATES, DEFAULT_BOOKS_ACCOUNTS):
            con.execute(f"CREATE OR REPLACE TABLE ref.{path.stem} AS SELECT * FROM read_csv(?, header = true)",
                        [str(path)])
    _load_books_accounts(con, _config_path(BOOKS_ACCOUNTS_FILE_ENV, DEFAULT_BOOKS_ACCOUNTS))
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
    _load_reporting_config(con)


def _load_books_accounts(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """ref.books_accounts from the shipped seed or the business's own file (IP_BOOKS_ACCOUNTS_FILE): every code is
    text, as books ids are (Xero's `090` is not 90), and a file without the columns or with a blank code stops the
    build naming the file and line rather than leaving a sync to post to a missing account."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"books_system", "purpose", "account_code"} - set(reader.fieldnames or ())
            if missing:
                raise ReportingConfigError(f"{path}: the books accounts need the columns books_system, purpose, "
                                           f"account_code[, description]; missing {', '.join(sorted(missing))}")
            rows = []
            for line, row in enumerate(reader, start=2):
                values = [(row.get(c) or "").strip() for c in ("books_system", "purpose", "account_code")]
                if not all(values):
                    raise ReportingConfigError(f"{path}: line {line}: books_system, purpose and account_code "
                                               "must all be filled in")
                rows.append((values[0].lower(), values[1], values[2], (row.get("description") or "").strip()))
    except OSError as exc:
        raise ReportingConfigError(f"{path}: cannot read the books accounts: {exc}") from exc
    con.execute("CREATE OR REPLACE TABLE ref.books_accounts (books_system VARCHAR, purpose VARCHAR, "
                "account_code VARCHAR, description VARCHAR)")
    con.executemany("INSERT INTO ref.books_accounts VALUES (?, ?, ?, ?)", rows)


def _load_reporting_config(con: duckdb.DuckDBPyConnection) -> None:
    reporting = reporting_currency()
    entities_path = _config_path(LEGAL_ENTITIES_FILE_ENV, DEFAULT_LEGAL_ENTITIES)
    rates_path = _config_path(FX_RATES_FILE_ENV, DEFAULT_FX_RATES)
    entities = load_legal_entities(entities_path)
    rates = load_fx_rates(rates_path, reporting)
    con.execute("CREATE OR REPLACE TABLE ref.reporting (currency VARCHAR, legal_entities_file VARCHAR, "
                "fx_rates_file VARCHAR)")
    con.execute("INSERT INTO ref.reporting VALUES (?, ?, ?)", [reporting, str(entities_path), str(rates_path)])
    con.execute("CREATE OR REPLACE TABLE ref.legal_entities (legal_entity VARCHAR, country VARCHAR, "
                "functional_currency VARCHAR, books_system VARCHAR)")
    con.executemany("INSERT INTO ref.legal_entities VALUES (?, ?, ?, ?)", entities.entities)
    con.execute("CREATE OR REPLACE TABLE ref.entity_books (precedence INTEGER, legal_entity VARCHAR, "
                "books_system VARCHAR, books_id VARCHAR, currency VARCHAR)")
    con.executemany("INSERT INTO ref.entity_books VALUES (?, ?, ?, ?, ?)", entities.books)
    con.execute("CREATE OR REPLACE TABLE ref.intercompany_customers (legal_entity VARCHAR, kind VARCHAR, "
                "books_system VARCHAR, value VARCHAR)")
    if entities.intercompany:
        con.executemany("INSERT INTO ref.intercompany_customers VALUES (?, ?, ?, ?)", entities.intercompany)
    # factor: reporting-currency minor units per minor unit of `currency` (the rate, scaled by the two exponents)
    con.execute("CREATE OR REPLACE TABLE ref.fx_rates (rate_date DATE, currency VARCHAR, rate DECIMAL(38, 10), "
                "factor DECIMAL(38, 10))")
    con.execute("CREATE OR REPLACE TEMP TABLE _fx_file (rate_date DATE, currency VARCHAR, rate DECIMAL(38, 10))")
    if rates:
        con.executemany("INSERT INTO _fx_file VALUES (?, ?, ?)", rates)
    con.execute("INSERT INTO _fx_file VALUES (DATE '0001-01-01', ?, 1)", [reporting])  # converts at 1, always
    con.execute("""
        INSERT INTO ref.fx_rates
        SELECT f.rate_date, f.currency, f.rate,
               CAST(f.rate * CAST(power(10, coalesce(r.minor_exponent, 2) - coalesce(c.minor_exponent, 2))
                                  AS DECIMAL(38, 10)) AS DECIMAL(38, 10))
        FROM _fx_file f
        LEFT JOIN ref.currencies c ON c.currency = f.currency
        LEFT JOIN ref.currencies r ON r.currency = ?
        ORDER BY f.currency, f.rate_date""", [reporting])
    con.execute("DROP TABLE _fx_file")


def build_staging(con: duckdb.DuckDBPyConnection, report: BuildReport,
                  entities: frozenset[str] | None = None) -> None:
    """Staging views and one typed `staging.<entity>` table per contract; only `entities` when given (the
    others keep what the last build made)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    built: dict[str, list[str]] = {name: [] for name in contracts() if entities is None or name in entities}
    for model in staging_models():
        if model.entity not in built:
            continue
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
        if name not in built:
            continue
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


def scope_of(changed_raw: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The staging entities and core tables (names without `core.`) that raw tables `changed_raw` reach, from
    the models' own SQL: an entity whose staging models read one of them, a core table that reads such an
    entity or a reached core table. A Stripe charge reaches payments and their allocations, not the identity
    graph, the deals or the inventory."""
    changed = set(changed_raw)
    entities = frozenset(m.entity for m in staging_models() if changed.intersection((*m.requires, *m.optional)))
    lineage = core_lineage()
    reached: set[str] = set()
    if "customer_records" in entities:
        reached.update(IDENTITY_TABLES)
    for table, _, _ in core_models():  # file order is dependency order
        name = table.split(".", 1)[1]
        raw, cores = lineage[name]
        if changed.intersection(raw) or reached.intersection(cores):
            reached.add(name)
    return entities, frozenset(reached)


def build_scoped(con: duckdb.DuckDBPyConnection, systems: list[tuple[str, str]],
                 changed_raw: Collection[str]) -> BuildReport:
    """Rebuild only what `changed_raw` reaches (see `scope_of`), inside the caller's transaction; the rest of
    core is left as the last build made it, which is what a full build would produce again since none of its
    inputs changed. Falls back to `build_all` while a staging or core table it would rely on does not exist
    yet. Why: the event lane rebuilds core per batch, and the identity graph alone costs seconds."""
    from .identity import resolve  # identity imports this module

    entities, reached = scope_of(changed_raw)
    needed = [f"staging.{e}" for e in contracts()] + [t for t, _, _ in core_models()]
    needed += [f"core.{t}" for t in IDENTITY_TABLES]
    if not all(_exists(con, t) for t in needed):
        return build_all(con, systems)
    report = BuildReport()
    if not entities:
        return report
    load_seeds(con)
    write_systems(con, systems)
    build_staging(con, report, entities)
    if reached.intersection(IDENTITY_TABLES):
        report.changes.update({f"core.{k}": v for k, v in resolve(con).items()})
    for table, key, sql in core_models():
        if table.split(".", 1)[1] in reached:
            report.changes[table] = write_by_key(con, table, sql, key)
    return report


def build_committed(con: duckdb.DuckDBPyConnection, systems: list[tuple[str, str]],
                    changed_raw: Collection[str] | None = None) -> BuildReport:
    """`build_all` (or `build_scoped` to what `changed_raw` reaches) in its own transaction: readers see the
    previous picture or the new one, never half."""
    con.execute("BEGIN TRANSACTION")
    try:
        report = build_all(con, systems) if changed_raw is None else build_scoped(con, systems, changed_raw)
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
