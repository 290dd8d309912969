"""S14, consolidated reporting across subsidiaries (issue 20): the legal entity comes from the books that hold the
invoice (a legal-entities file, not the customer's country), NetSuite invoices reach core, drafts are not
receivables, FX comes from a rates file and intercompany invoices are eliminated.

The group in these tests is written here, as a business would write its own file: the US company keeps its books in
QuickBooks (USD), the UK company in Xero (GBP), the German company is NetSuite subsidiary 3. The sandbox's QuickBooks,
Xero and NetSuite each hold every invoice of the seeded world, so the copies outside an entity's books must never
count. Expected values are computed by hand from the world's recorded facts (the world's invoices, the Xero
emulator's statuses) and the rates written below, never with the warehouse's SQL.
"""

from __future__ import annotations

import re
from datetime import UTC, date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from integration_pipelines.warehouse.models import ReportingConfigError, load_fx_rates, load_legal_entities, load_seeds

from .conftest import warehouse_rows
from .test_core_models import build, extract

US, UK, DE = "Acme Trading Inc (US)", "Acme Trading Ltd (UK)", "Acme Trading GmbH (DE)"
MARCH = date(2026, 3, 1)
# GBP and EUR change rate inside the world's three days (2026-03-07..09), so the date of each invoice matters.
RATES = """date,currency,rate
2026-03-01,GBP,1.25
2026-03-08,GBP,1.30
2026-03-01,EUR,1.10
2026-03-09,EUR,1.20
"""
GBP_RATE = {date(2026, 3, 7): Decimal("1.25"), date(2026, 3, 8): Decimal("1.30"), date(2026, 3, 9): Decimal("1.30")}
EUR_RATE = {date(2026, 3, 7): Decimal("1.10"), date(2026, 3, 8): Decimal("1.10"), date(2026, 3, 9): Decimal("1.20")}
LATEST = {"USD": Decimal(1), "GBP": Decimal("1.30"), "EUR": Decimal("1.20")}


def entities_file(intercompany_uk: str = "", intercompany_de: str = "") -> str:
    return f"""
entities:
  - legal_entity: {US}
    country: US
    functional_currency: USD
    books:
      - {{system: quickbooks, currencies: [USD]}}
  - legal_entity: {UK}
    country: GB
    functional_currency: GBP
    books:
      - {{system: xero, currencies: [GBP]}}
    intercompany: {{{intercompany_uk}}}
  - legal_entity: {DE}
    country: DE
    functional_currency: EUR
    books:
      - {{system: netsuite, books_id: "3"}}
    intercompany: {{{intercompany_de}}}
"""


def converted(minor: int, rate: Decimal) -> int:
    return int((Decimal(minor) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def utc_day(moment) -> date:  # type: ignore[no-untyped-def]
    return moment.astimezone(UTC).date()


def configure(monkeypatch, tmp_path: Path, entities: str, rates: str = RATES) -> None:
    (tmp_path / "entities.yaml").write_text(entities)
    (tmp_path / "rates.csv").write_text(rates)
    monkeypatch.setenv("IP_LEGAL_ENTITIES_FILE", str(tmp_path / "entities.yaml"))
    monkeypatch.setenv("IP_FX_RATES_FILE", str(tmp_path / "rates.csv"))


def xero_by_number(sandbox) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {i["InvoiceNumber"]: i for i in sandbox.emulator("xero").dump("invoices") if i["Type"] == "ACCREC"}


def rows(settings, sql: str, params: list | None = None) -> list[tuple]:  # type: ignore[no-untyped-def]
    return warehouse_rows(settings, sql, params)


@pytest.fixture
def group(settings, sandbox, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """The group above, one company of the world is the UK company's German sister (intercompany by email domain)
    and one Xero contact is the German company's account in the UK books (intercompany by customer id)."""
    world = sandbox.state.world
    xero = xero_by_number(sandbox)
    # the German company as a customer of the UK books: the contact of the first GBP invoice the books hold as sent
    de_in_uk = next(i for i in sorted(world.invoices, key=lambda i: i.key)
                    if i.currency == "GBP" and xero[i.number]["Status"] == "AUTHORISED")
    de_contact = xero[de_in_uk.number]["Contact"]["ContactID"]
    # the UK company as a customer everywhere: the company of the first USD invoice (people on its email domain)
    uk_company = next(i for i in sorted(world.invoices, key=lambda i: i.key) if i.currency == "USD").person.company
    configure(monkeypatch, tmp_path, entities_file(
        intercompany_uk=f"email_domains: [{uk_company.domain}]",
        intercompany_de=f"customers: [{{system: xero, id: {de_contact}}}]"))
    extract(settings, ("quickbooks", "xero", "netsuite"))
    build(settings)
    return {"world": world, "xero": xero, "de_contact": de_contact, "uk_company": uk_company}


def intercompany(invoice, group) -> bool:  # type: ignore[no-untyped-def]
    contact = group["xero"][invoice.number]["Contact"]["ContactID"]
    return invoice.person.company is group["uk_company"] or (
        invoice.currency == "GBP" and contact == group["de_contact"])


def test_an_open_xero_gbp_invoice_is_the_uk_companys_at_the_files_rate(settings, group):
    world, xero = group["world"], group["xero"]
    invoice = next(i for i in sorted(world.invoices, key=lambda i: i.key)
                   if i.currency == "GBP" and xero[i.number]["Status"] == "AUTHORISED" and not intercompany(i, group))
    record = xero[invoice.number]
    got = rows(settings, "SELECT legal_entity, is_books_of_record, status, currency, total_minor, balance_minor "
                         "FROM core.invoices WHERE source_system = 'xero' AND source_id = ?", [record["InvoiceID"]])
    assert got == [(UK, True, "open", "GBP", invoice.amount, invoice.amount)]
    # its QuickBooks and NetSuite copies are not counted again
    copies = rows(settings, "SELECT source_system, is_books_of_record FROM core.invoices "
                            "WHERE invoice_number = ? AND source_system <> 'xero' ORDER BY 1", [invoice.number])
    assert copies == [("netsuite", False), ("quickbooks", False)]

    # UK receivables: the Xero GBP invoices still AUTHORISED (sent, unpaid), at the latest rate (1.30), less the
    # German sister's invoice
    open_uk = [i for i in world.invoices if i.currency == "GBP" and xero[i.number]["Status"] == "AUTHORISED"]
    external = [i for i in open_uk if not intercompany(i, group)]
    assert invoice in external
    expected = sum(converted(round(xero[i.number]["AmountDue"] * 100), LATEST["GBP"]) for i in external)
    assert rows(settings, "SELECT reporting_currency, open_minor, open_invoice_count FROM core.receivables_by_entity "
                          "WHERE legal_entity = ?", [UK]) == [("USD", expected, len(external))]


def test_drafts_are_not_receivables_and_paid_invoices_are_not_open(settings, group):
    world, xero = group["world"], group["xero"]
    drafts = [i for i in world.invoices if i.currency == "GBP" and xero[i.number]["Status"] == "DRAFT"]
    assert drafts, "the Xero emulator keeps some unpaid GBP invoices as DRAFT"
    for invoice in drafts:
        assert rows(settings, "SELECT status, is_books_of_record FROM core.invoices WHERE source_system = 'xero' "
                              "AND invoice_number = ?", [invoice.number]) == [("draft", True)]
        # QuickBooks holds the same invoice as open: that copy is not the UK company's books and never counts
        assert rows(settings, "SELECT status, is_books_of_record FROM core.invoices "
                              "WHERE source_system = 'quickbooks' AND invoice_number = ?",
                    [invoice.number]) == [("open", False)]
    open_count = rows(settings, "SELECT open_invoice_count + intercompany_invoice_count FROM "
                                "core.receivables_by_entity WHERE legal_entity = ?", [UK])[0][0]
    assert open_count == len([i for i in world.invoices if i.currency == "GBP"
                              and xero[i.number]["Status"] == "AUTHORISED"])
    # revenue counts issued invoices only: GBP invoices minus the drafts
    assert rows(settings, "SELECT invoice_count + intercompany_invoice_count FROM core.revenue_by_entity "
                          "WHERE legal_entity = ?", [UK])[0][0] == len(
        [i for i in world.invoices if i.currency == "GBP"]) - len(drafts)
    # a paid invoice is not open: US receivables are exactly the unpaid USD invoices
    unpaid_usd = [i for i in world.invoices if i.currency == "USD" and not i.paid and not intercompany(i, group)]
    assert rows(settings, "SELECT open_minor, open_invoice_count FROM core.receivables_by_entity "
                          "WHERE legal_entity = ?", [US]) == [(sum(i.amount for i in unpaid_usd), len(unpaid_usd))]


def test_netsuite_invoices_reach_core_under_their_subsidiary(settings, group):
    world = group["world"]
    euro = sorted((i for i in world.invoices if i.currency == "EUR"), key=lambda i: i.key)
    first = euro[0]
    got = rows(settings, "SELECT invoice_number, legal_entity, books_id, is_books_of_record, currency, total_minor, "
                         "status FROM core.invoices WHERE source_system = 'netsuite' AND source_id = ?",
               [str(5000 + first.key)])
    assert got == [(first.number, DE, "3", True, "EUR", first.amount, "paid" if first.paid else "open")]
    assert rows(settings, "SELECT count(*) FROM core.invoices WHERE source_system = 'netsuite'")[0][0] == len(
        world.invoices)
    # every EUR invoice counted once, from NetSuite, at its day's rate; the Xero copies are not the German books.
    # (The UK company's email domain makes its people's invoices intercompany in NetSuite too.)
    external = [i for i in euro if not intercompany(i, group)]
    expected = sum(converted(i.amount, EUR_RATE[utc_day(i.issued_at)]) for i in external)
    assert rows(settings, "SELECT month, revenue_minor, invoice_count, intercompany_invoice_count, "
                          "invoices_without_rate FROM core.revenue_by_entity WHERE legal_entity = ?",
                [DE]) == [(MARCH, expected, len(external), len(euro) - len(external), 0)]
    assert rows(settings, "SELECT count(*) FILTER (WHERE is_books_of_record) FROM core.invoices "
                          "WHERE source_system = 'xero' AND currency = 'EUR'")[0][0] == 0


def test_intercompany_invoices_are_flagged_and_eliminated(settings, group):
    world, xero = group["world"], group["xero"]
    sister = group["uk_company"]
    usd = [i for i in world.invoices if i.currency == "USD"]
    to_sister = [i for i in usd if i.person.company is sister]
    assert to_sister
    flagged = rows(settings, "SELECT invoice_number, counterparty_entity FROM core.invoices "
                             "WHERE source_system = 'quickbooks' AND is_intercompany AND currency = 'USD' ORDER BY 1")
    assert flagged == sorted((i.number, UK) for i in to_sister)
    assert rows(settings, "SELECT revenue_minor, invoice_count, intercompany_minor, intercompany_invoice_count "
                          "FROM core.revenue_by_entity WHERE legal_entity = ?", [US]) == [
        (sum(i.amount for i in usd if i not in to_sister), len(usd) - len(to_sister),
         sum(i.amount for i in to_sister), len(to_sister))]

    # in the UK books, the German sister's Xero contact (by customer id) and the UK company's own domain
    gbp = [i for i in world.invoices if i.currency == "GBP" and xero[i.number]["Status"] != "DRAFT"]
    eliminated = [i for i in gbp if intercompany(i, group)]
    assert any(xero[i.number]["Contact"]["ContactID"] == group["de_contact"] for i in eliminated)
    rate = {i.number: GBP_RATE[utc_day(i.issued_at)] for i in gbp}
    assert rows(settings, "SELECT revenue_minor, intercompany_minor, intercompany_invoice_count "
                          "FROM core.revenue_by_entity WHERE legal_entity = ?", [UK]) == [
        (sum(converted(i.amount, rate[i.number]) for i in gbp if i not in eliminated),
         sum(converted(i.amount, rate[i.number]) for i in eliminated), len(eliminated))]


def test_a_currency_without_a_rate_is_reported_not_counted_as_zero(settings, sandbox, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, entities_file(), rates="date,currency,rate\n2026-03-01,GBP,1.25\n")
    extract(settings, ("netsuite",))
    build(settings)
    euro = [i for i in sandbox.state.world.invoices if i.currency == "EUR"]
    assert rows(settings, "SELECT revenue_minor, invoice_count, invoices_without_rate FROM core.revenue_by_entity "
                          "WHERE legal_entity = ?", [DE]) == [(0, len(euro), len(euro))]
    unpaid = [i for i in euro if not i.paid]
    assert rows(settings, "SELECT open_invoice_count, invoices_without_rate FROM core.receivables_by_entity "
                          "WHERE legal_entity = ?", [DE]) == [(len(unpaid), len(unpaid))]


def test_the_shipped_demo_group_counts_each_world_invoice_once(settings, sandbox):
    """No settings: the demo files. The sandbox world's Xero tells the UK and German companies apart by currency."""
    extract(settings, ("quickbooks", "xero", "netsuite"))
    build(settings)
    world = sandbox.state.world
    counted = rows(settings, "SELECT legal_entity, currency, count(*) FROM core.invoices WHERE is_books_of_record "
                             "GROUP BY ALL ORDER BY ALL")
    by_currency = {c: len([i for i in world.invoices if i.currency == c]) for c in ("USD", "GBP", "EUR")}
    assert counted == [(DE, "EUR", by_currency["EUR"]), (US, "USD", by_currency["USD"]),
                       (UK, "GBP", by_currency["GBP"])]
    assert rows(settings, "SELECT DISTINCT source_system FROM core.invoices WHERE is_books_of_record AND "
                          "legal_entity = ?", [UK]) == [("xero",)]
    assert rows(settings, "SELECT sum(invoices_without_rate) FROM core.revenue_by_entity")[0][0] == 0


# -- the configuration is checked when it is read ----------------------------------------------------------------


def test_a_bad_legal_entities_file_names_the_file_and_the_entry(tmp_path):
    path = tmp_path / "entities.yaml"
    path.write_text("entities:\n  - legal_entity: A\n    books: [{system: xero}]\n"
                    "  - legal_entity: B\n    books: [{system: xero, currencies: [pounds]}]\n")
    where = re.escape(f"{path}: entities entry 2 (B), books entry 1: `currencies`")
    with pytest.raises(ReportingConfigError, match=where):
        load_legal_entities(path)
    path.write_text("entities:\n  - legal_entity: A\n")
    with pytest.raises(ReportingConfigError, match=r"entities entry 1 \(A\): `books` must list"):
        load_legal_entities(path)


def test_a_bad_rates_file_names_the_file_and_the_line(tmp_path, monkeypatch):
    path = tmp_path / "rates.csv"
    path.write_text("date,currency,rate\n2026-03-01,GBP,1.25\n2026-03-02,GBP,zero\n")
    with pytest.raises(ReportingConfigError, match=rf"{re.escape(str(path))}, line 3: rate 'zero' is not a number"):
        load_fx_rates(path, "USD")
    path.write_text("date,currency,rate,to_currency\n2026-03-01,GBP,1.25,USD\n")
    with pytest.raises(ReportingConfigError, match=r"line 2: the rate is to USD but the reporting currency is EUR"):
        load_fx_rates(path, "EUR")
    # the shipped demo rates are to USD: another reporting currency needs its own file, said at build time
    for name in ("IP_FX_RATES_FILE", "IP_LEGAL_ENTITIES_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IP_REPORTING_CURRENCY", "EUR")
    with duckdb.connect() as con, pytest.raises(ReportingConfigError, match="reporting currency is EUR"):
        load_seeds(con)
    monkeypatch.setenv("IP_LEGAL_ENTITIES_FILE", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("IP_REPORTING_CURRENCY", "USD")
    with duckdb.connect() as con, pytest.raises(ReportingConfigError, match=r"IP_LEGAL_ENTITIES_FILE=.*no such file"):
        load_seeds(con)
