"""The books are edited by hand after they were read: the warehouse must say what the books say now.

A US bookkeeper, in QuickBooks itself (its API, as the web app does), voids INV-1001 (Dennis Goldwasser, USD
1,596.00, open), deletes INV-1008 (Hedy Thompson, USD 1,245.00, open) and deletes payment 192, which had paid INV-1003
(Alan Johnson, USD 2,400.00) in full. Expected, by hand from those facts: INV-1001 and INV-1008 are void and owe
nothing; INV-1003 is open again for 2,400.00; the payment is gone from the warehouse; the US company's open
receivables move by -1,596.00 - 1,245.00 + 2,400.00 = -441.00. A deleted transaction leaves QuickBooks' queries, so
without ChangeDataCapture the warehouse would keep INV-1008 as a receivable for ever.

The UK bookkeeper, in Xero, voids INV-1020 (Linus Wilson, GBP 15.00, approved, nothing paid): it is void, and the
UK company has one open invoice fewer.
"""

from __future__ import annotations

from integration_pipelines.webhooks.notices import streams_for_notice

from .conftest import materialize_all_partitions, warehouse_rows
from .target_api import qbo_remove, xero_get, xero_post
from .test_core_models import build

STREAMS = ("customers", "invoices", "payments", "invoice_changes", "payment_changes")


def _read_books(settings) -> None:
    for stream in STREAMS:
        materialize_all_partitions(settings, "quickbooks", stream)
    build(settings)


def _invoice(settings, number: str) -> tuple[str, int, int]:
    [row] = warehouse_rows(settings, "SELECT status, total_minor, balance_minor FROM core.invoices "
                                     "WHERE source_system = 'quickbooks' AND invoice_number = ?", [number])
    return row


def _us_open_receivables(settings) -> int:
    [(open_minor,)] = warehouse_rows(settings, "SELECT r.open_minor FROM core.receivables_by_entity AS r "
                                               "JOIN ref.legal_entities AS e USING (legal_entity) "
                                               "WHERE e.books_system = 'quickbooks'")
    return open_minor


def _open_invoice_counts(settings) -> dict[str, int]:
    return dict(warehouse_rows(settings, "SELECT e.functional_currency, r.open_invoice_count "
                                         "FROM core.receivables_by_entity AS r JOIN ref.legal_entities AS e "
                                         "USING (legal_entity)"))


def test_invoices_voided_or_deleted_and_a_payment_deleted_by_hand_are_read_as_the_books_now_say(
        settings, sandbox, sandbox_server):
    _read_books(settings)
    assert _invoice(settings, "INV-1001") == ("open", 159_600, 159_600)
    assert _invoice(settings, "INV-1008") == ("open", 124_500, 124_500)
    assert _invoice(settings, "INV-1003") == ("paid", 240_000, 0)
    before = _us_open_receivables(settings)

    url = sandbox_server.url
    assert qbo_remove(url, "Invoice", "167", "void")["PrivateNote"].startswith("Voided")  # INV-1001
    assert qbo_remove(url, "Invoice", "179", "delete")["status"] == "Deleted"  # INV-1008
    assert qbo_remove(url, "Payment", "192", "delete")["status"] == "Deleted"  # INV-1003's payment
    _read_books(settings)

    assert _invoice(settings, "INV-1001") == ("void", 0, 0)
    assert _invoice(settings, "INV-1008") == ("void", 124_500, 0)
    assert _invoice(settings, "INV-1003") == ("open", 240_000, 240_000)
    assert warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE source_system = 'quickbooks' "
                                    "AND source_id = '192'") == [(0,)]
    assert _us_open_receivables(settings) == before - 44_100


def test_an_invoice_voided_by_hand_in_xero_is_no_longer_open(settings, sandbox, sandbox_server):
    for stream in ("contacts", "invoices", "payments"):
        materialize_all_partitions(settings, "xero", stream)
    build(settings)
    [row] = warehouse_rows(settings, "SELECT status, balance_minor FROM core.invoices WHERE source_system = 'xero' "
                                     "AND invoice_number = 'INV-1020'")
    assert row == ("open", 1_500)
    before = _open_invoice_counts(settings)

    [invoice] = xero_get(sandbox_server.url, "Invoices", InvoiceNumbers="INV-1020")
    assert xero_post(sandbox_server.url, "Invoices", {"InvoiceID": invoice["InvoiceID"],
                                                      "Status": "VOIDED"})["Status"] == "VOIDED"
    materialize_all_partitions(settings, "xero", "invoices")
    build(settings)

    [row] = warehouse_rows(settings, "SELECT status FROM core.invoices WHERE source_system = 'xero' "
                                     "AND invoice_number = 'INV-1020'")
    assert row == ("void",)
    after = _open_invoice_counts(settings)
    assert after["GBP"] == before["GBP"] - 1 and after["EUR"] == before["EUR"]


def test_a_quickbooks_deletion_notice_also_reads_change_data_capture():
    """QuickBooks says "Invoice 179 Delete" (classic notice) or `qbo.invoice.deleted.v1` (CloudEvents): the lane must
    read ChangeDataCapture too, since the invoice read can no longer see it; an update needs no such read."""
    classic = streams_for_notice("quickbooks", {"name": "Invoice", "id": "179", "operation": "Delete"})
    cloud = streams_for_notice("quickbooks", {"type": "qbo.payment.deleted.v1", "id": "192"})
    update = streams_for_notice("quickbooks", {"name": "Invoice", "id": "179", "operation": "Update"})
    assert classic == {("quickbooks", "invoices"), ("quickbooks", "invoice_changes")}
    assert cloud == {("quickbooks", "payments"), ("quickbooks", "payment_changes")}
    assert update == {("quickbooks", "invoices")}
