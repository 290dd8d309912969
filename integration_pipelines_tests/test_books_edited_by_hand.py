"""The books are edited by hand after they were read: the warehouse must say what the books say now.

A US bookkeeper, in QuickBooks itself (its API, as the web app does), voids INV-1001 (Dennis Goldwasser, USD
1,596.00, open), deletes INV-1008 (Hedy Thompson, USD 1,245.00, open) and deletes payment 192, which had paid INV-1003
(Alan Johnson, USD 2,400.00) in full. Expected, by hand from those facts: INV-1001 and INV-1008 are void and owe
nothing; INV-1003 is open again for 2,400.00; the payment is gone from the warehouse; the US company's open
receivables move by -1,596.00 - 1,245.00 + 2,400.00 = -441.00. A deleted transaction leaves QuickBooks' queries, so
without ChangeDataCapture the warehouse would keep INV-1008 as a receivable for ever.
"""

from __future__ import annotations

from .conftest import materialize_all_partitions, warehouse_rows
from .target_api import qbo_remove
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
