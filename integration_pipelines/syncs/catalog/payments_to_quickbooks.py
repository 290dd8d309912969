"""Scenario 6: card payments (Stripe, Square) → payments applied to the matching open QuickBooks invoice.

Today a bookkeeper matches each processor payout line to an invoice and records the payment by hand. The match
comes from core.payments (the processor payment names the accounting invoice number); only invoices that are
still open are paid, so a payment already recorded by hand is never recorded twice, and a charge is applied
exactly once (insert mode, keyed by the processor's payment id, QuickBooks `requestid` on every write).
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payments_to_quickbooks",
    title="Card payments → QuickBooks payments",
    description="Records each processor payment against the open QuickBooks invoice it settles.",
    source_sql="""
        SELECT p.source_system || ':' || p.source_id AS payment_key,
               p.source_system AS processor,
               p.source_id AS processor_payment_id,
               inv.source_id AS qbo_invoice_id,
               inv.customer_source_id AS qbo_customer_id,
               p.currency,
               CAST(p.amount_minor AS DECIMAL(18, 2)) / CASE WHEN c.minor_exponent = 0 THEN 1 ELSE 100 END
                   AS amount,
               strftime(p.paid_at, '%Y-%m-%d') AS paid_date
        FROM core.payments AS p
        JOIN core.invoices AS inv ON inv.source_system = p.invoice_system AND inv.source_id = p.invoice_id
        LEFT JOIN ref.currencies AS c ON c.currency = p.currency
        WHERE p.kind = 'processor' AND p.status = 'succeeded' AND p.invoice_system = 'quickbooks'
          AND inv.balance_minor > 0 AND inv.customer_source_id IS NOT NULL
    """,
    source_assets=(("core", "payments"), ("core", "invoices")),
    key="payment_key",
    target="quickbooks",
    mode="insert",
    create_writer="save_payment",
    required_columns=("qbo_customer_id", "qbo_invoice_id"),
    payload={
        "CustomerRef": {"value": "{qbo_customer_id}"},
        "TotalAmt": "{amount}",
        "TxnDate": "{paid_date}",
        "CurrencyRef": {"value": "{currency}"},
        "PrivateNote": "{processor} payment {processor_payment_id}",
        "Line": [{"Amount": "{amount}", "LinkedTxn": [{"TxnId": "{qbo_invoice_id}", "TxnType": "Invoice"}]}],
    },
    manual_minutes_per_record=4.0,
)
