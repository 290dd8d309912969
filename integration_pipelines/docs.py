"""Reference docs generated from the specs themselves, so they cannot drift from the code."""

from __future__ import annotations

from .connectors.registry import discover_systems
from .connectors.spec import OAuth2AuthSpec


def _listed(scopes: tuple[str, ...]) -> str:
    return ", ".join(f"`{scope}`" for scope in scopes) if scopes else "—"


def sync_scopes(spec: object) -> tuple[str, ...]:
    """What the target's write credentials need for one sync: the scopes of the writers it uses."""
    from .connectors.registry import get_system

    try:
        system = get_system(spec.target)  # type: ignore[attr-defined]
    except KeyError:
        return ()
    if system.scopes is None:
        return ()
    names = [getattr(spec, field) for field in ("create_writer", "update_writer", "delete_writer")]
    needed: list[str] = []
    for name in names:
        for scope in system.scopes.for_writer(name) if name else ():
            if scope not in needed:
                needed.append(scope)
    return tuple(needed)


def systems_markdown() -> str:
    lines = [
        "# Systems",
        "",
        "Generated from the connector specs by `integration-pipelines docs`; do not edit by hand.",
        "",
        "With none of a system's secret variables set, it talks to the sandbox; with all of them set, to the "
        "real service at its base URL. Every system also honours `<SYSTEM>_BASE_URL`, "
        "`<SYSTEM>_REQUESTS_PER_SECOND`, `<SYSTEM>_MAX_RETRIES`, `<SYSTEM>_TIMEOUT_SECONDS`, "
        "`<SYSTEM>_PAGE_SIZE` and `<SYSTEM>_ENABLED`.",
        "",
        "Least privilege: every variable may be split into a read set `<SYSTEM>_READ_<VAR>` (used by extraction) "
        "and a write set `<SYSTEM>_WRITE_<VAR>` (used by syncs), each falling back to `<SYSTEM>_<VAR>`, and any "
        "secret may be given as `<VAR>_FILE` instead (see [credentials.md](credentials.md)). The scopes below are "
        "the least each set needs, in the vendor's own names.",
        "",
    ]
    for system in discover_systems():
        lines += [f"## {system.title} (`{system.name}`, {system.category})", ""]
        if system.docs_url:
            lines += [f"Vendor reference: {system.docs_url}", ""]
        lines += [f"- Base URL: `{system.base_url}`; default budget {system.requests_per_second:g} requests/s "
                  f"(burst {system.burst}), {system.max_attempts} attempts per request.",
                  f"- Auth: {system.auth.kind}"
                  + (f" ({system.auth.grant_type}, token URL `{system.auth.token_url}`)"
                     if isinstance(system.auth, OAuth2AuthSpec) else ""), ""]
        if system.scopes is not None:
            scopes = system.scopes
            writes = bool(system.writers or (system.soap and system.soap.writers))
            lines += [f"- Read credentials need: {_listed(scopes.read)}.",
                      f"- Write credentials need: {_listed(scopes.write) if writes else 'none (nothing writes here)'}."]
            if scopes.note:
                lines.append(f"- {scopes.note}")
            lines.append("")
        lines += ["| variable | secret | what |", "|---|---|---|"]
        lines += [f"| `{v.env}` | {'yes' if v.secret else 'no'} | {v.description or key} |"
                  for key, v in system.values.items()]
        lines += ["", "| stream | asset | primary key | incremental | partitions |", "|---|---|---|---|---|"]
        for stream in system.streams:
            incremental = f"`{stream.cursor_field}`" if stream.incremental_request and stream.cursor_field else "—"
            lines.append(f"| {stream.name} | `{system.name}/{stream.name}` | `{stream.primary_key}` | {incremental} "
                         f"| {stream.partitioned or '—'} |")
        if system.writers:
            lines += ["", "| writer | request | idempotency | needs |", "|---|---|---|---|"]
            for writer in system.writers:
                idem = writer.idempotency
                key = f"{idem.location} `{idem.name}`" if idem.location != "none" else "none (upsert by key)"
                needs = _listed(system.scopes.for_writer(writer.name)) if system.scopes else "—"
                lines.append(f"| {writer.name} | `{writer.method} {writer.path}` | {key} | {needs} |")
        lines.append("")
    return "\n".join(lines)


DERIVED_COLUMNS = {
    "golden_customer_id": "the golden customer (core.customers.golden_id) this row belongs to",
    "golden_id": "the golden customer id, stable across rebuilds",
    "legal_entity": "the group company (legal-entities file, see Settings below) it belongs to: for an invoice "
                    "the one that issued it, from the books that hold it; for a payment the entity of the invoice it "
                    "settles; for a customer or deal the one that invoices it (by the customer's country); for an "
                    "expense the employee's company (by email domain, else currency)",
    "books_system": "the books system: for a deal, customer or expense its legal entity's books of record (the "
                    "entity's first `books` entry in the legal-entities file); for a payment match the books "
                    "holding the payment",
    "books_id": "the books' own id for the issuing entity (NetSuite subsidiary, Xero branding theme)",
    "is_books_of_record": "this copy is the one that counts (the entity's books of record); other copies never count",
    "is_intercompany": "the customer is a group company (intercompany in the legal-entities file); eliminated "
                       "from revenue_by_entity and receivables_by_entity",
    "counterparty_entity": "the group company that is the customer of an intercompany invoice",
    "source_category": "the source system's category (accounting rows are the books)",
    "invoice_system": "system of the invoice this payment settles",
    "invoice_id": "id of the invoice this payment settles, in invoice_system",
    "invoice_status": "matched | no_invoice | invoice_not_found",
    "match_rule": "the identity rule that linked this record: email | phone+last_name | name+address | unique",
    "email": "normalized email (most trusted source first)",
    "phone_e164": "phone in E.164",
    "company_domain": "email domain when it is not a free-mail provider",
    "systems": "systems that hold this customer",
    "record_count": "source records merged into this customer",
    "first_seen_at": "earliest creation time across sources",
    "source_id_a": "first record of the duplicate pair",
    "source_id_b": "second record of the duplicate pair",
    "email_a": "normalized email of record a",
    "email_b": "normalized email of record b",
    "action": "what a person should do",
    "month": "calendar month (first day)",
    "reporting_currency": "the reporting currency (IP_REPORTING_CURRENCY) of the converted columns",
    "revenue_minor": "revenue to customers outside the group, in minor units of the reporting currency",
    "intercompany_minor": "revenue invoiced to group companies, eliminated (not in revenue_minor)",
    "intercompany_invoice_count": "invoices to group companies, eliminated",
    "revenue_usd_minor": "same as revenue_minor (kept for the published report; in the reporting currency)",
    "invoice_count": "invoices counted (outside the group)",
    "invoices_without_rate": "invoices whose currency had no FX rate (a check fails when > 0)",
    "source_currencies": "currencies that were converted",
    "open_minor": "open balance owed by customers outside the group, in minor units of the reporting currency",
    "intercompany_open_minor": "open balance owed by group companies, eliminated (not in open_minor)",
    "open_usd_minor": "same as open_minor (kept for the published report; in the reporting currency)",
    "open_invoice_count": "open invoices with a balance (outside the group)",
    "overdue_invoice_count": "open invoices past their due date",
    "_row_hash": "hash of the row's content; a rebuild rewrites a row only when it changes",
}


def warehouse_markdown() -> str:
    """Build every model on an empty in-memory warehouse and describe what comes out."""
    import duckdb

    from .assets.core import CORE_TABLES, DESCRIPTIONS
    from .warehouse.models import REPORTING_SETTINGS_DOC, build_all, contracts, describe_core

    con = duckdb.connect()
    build_all(con, [(s.name, s.category) for s in discover_systems()])
    described = describe_core(con)
    generic = {c: spec["description"] for c, spec in contracts()["customer_records"].columns.items()}
    lines = ["# Warehouse reference", "",
             "Generated from the model definitions by `integration-pipelines docs`; do not edit by hand.", "",
             "Schemas: `raw_<system>` (one table per extracted stream, the API's fields plus `_pk`, `_cursor`, "
             "`_source_system`, `_extracted_at`, `_run_id` and `_raw`, the record's original JSON), `staging` (each "
             "source in one vocabulary, see `warehouse/models/contracts.yaml`), `core` (below), `ref` (seeds: "
             "currencies; the group's `legal_entities`, their books `entity_books` and `intercompany_customers`; "
             "`fx_rates` and the `reporting` currency, see Settings below; systems) and `ops` (cursors and the "
             "extract log).", "",
             "Money columns ending in `_minor` are integer minor units (cents) with a `currency` column; "
             "timestamps are UTC.", ""]
    for table in CORE_TABLES:
        lines += [f"## core.{table}", "", DESCRIPTIONS.get(table, ""), "",
                  f"Key: `{', '.join(CORE_TABLES[table])}`", "", "| column | type | meaning |", "|---|---|---|"]
        own = {c: spec["description"] for c, spec in contracts()[table].columns.items()} if table in contracts() else {}
        for column, kind in described[table]:
            meaning = own.get(column) or DERIVED_COLUMNS.get(column) or generic.get(column, "")
            lines.append(f"| `{column}` | {kind} | {meaning} |")
        lines.append("")
    lines += [REPORTING_SETTINGS_DOC]
    return "\n".join(lines)


def sync_catalog_markdown() -> str:
    """The catalog of outbound syncs, from the SyncSpecs."""
    from .syncs.registry import discover_syncs

    lines = ["# Sync catalog", "", "Generated from `integration_pipelines/syncs/catalog/` by `integration-pipelines "
             "docs`; do not edit by hand. How syncs work: [syncs.md](syncs.md).", "",
             "| sync (asset `sync/<name>`) | what | target | mode | waits for | minutes saved per record | "
             "target's write credentials need |",
             "|---|---|---|---|---|---|---|"]
    for spec in discover_syncs():
        lines.append(f"| `{spec.name}` | {spec.title} | {spec.target} | {spec.mode} | "
                     f"{', '.join(spec.depends_on) or '—'} | {spec.manual_minutes_per_record:g} | "
                     f"{_listed(sync_scopes(spec))} |")
    lines.append("")
    for spec in discover_syncs():
        lines += [f"## {spec.title}", "", spec.description, ""]
    return "\n".join(lines)
