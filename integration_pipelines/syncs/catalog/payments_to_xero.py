"""Scenario 6 (UK and DE books): card payments (Stripe, Square) → payments in Xero, on the invoices they pay.

The Xero half of payments_to_quickbooks, for the legal entities whose books of record are Xero. A Xero payment
applies to exactly one invoice, so the record is one allocation of a processor payment (a charge for several
invoices becomes one Xero payment per invoice, each naming the charge in its Reference).
- Only invoices of the books of record, matched by number within the payment's currency (core.payment_allocations):
  an invoice number that two entities share in different currencies lands on the right entity's invoice.
- Match before create: a Xero payment on that invoice whose Reference names the charge, or the only unlinked Xero
  payment of that amount on it (core.payment_matches), is linked in the ledger instead of created again; ambiguous
  candidates wait for a person (reconciliation `ambiguous_match`).
- Sent only to an authorised invoice with that much still due (Xero refuses payments on drafts and overpayments).
- The bank account the money lands in comes from ref.books_accounts (seeds/books_accounts.csv), not from code.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payments_to_xero",
    title="Card payments → Xero payments",
    description="Records each processor payment against the Xero invoice it settles (per invoice); links the ones "
                "the books already hold.",
    source_sql="""
        WITH allocations AS (
            SELECT a.*, inv.balance_minor, inv.status AS invoice_status,
                   CAST(a.allocated_minor AS DECIMAL(18, 2))
                       / CASE WHEN c.minor_exponent = 0 THEN 1 ELSE 100 END AS amount
            FROM core.payment_allocations AS a
            JOIN core.invoices AS inv ON inv.source_system = a.invoice_system AND inv.source_id = a.invoice_id
            LEFT JOIN ref.currencies AS c ON c.currency = a.currency
            WHERE a.kind = 'processor' AND a.payment_status = 'succeeded' AND a.match_status = 'matched'
              AND a.on_books_of_record AND a.invoice_system = 'xero'
        ),
        booked AS (
            SELECT a.source_system, a.source_id, x.payment_source_id AS xero_payment_id
            FROM allocations AS a
            JOIN core.payment_allocations AS x
              ON x.source_system = 'xero' AND x.kind = 'accounting' AND x.invoice_id = a.invoice_id
             AND contains(coalesce(x.reference, ''), a.payment_source_id)
            UNION ALL
            SELECT a.source_system, a.source_id, m.books_payment_id
            FROM allocations AS a
            JOIN core.payment_matches AS m
              ON m.processor_system = a.source_system AND m.processor_payment_id = a.payment_source_id
             AND m.books_system = 'xero' AND m.matched_by = 'same_amount'
        ),
        ambiguous AS (
            SELECT DISTINCT processor_system, processor_payment_id FROM core.payment_matches
            WHERE books_system = 'xero' AND matched_by = 'ambiguous'
        ),
        unbooked AS (  -- not in the books yet, in the order the money came in (see payments_to_quickbooks)
            SELECT a.source_id, sum(a.allocated_minor) OVER (
                       PARTITION BY a.invoice_system, a.invoice_id
                       ORDER BY a.paid_at, a.payment_source_id, a.source_id) <= a.balance_minor AS fits
            FROM allocations AS a
            LEFT JOIN sync.ledger AS l ON l.sync_name = 'payments_to_xero' AND l.external_id IS NOT NULL
                 AND l.record_key = a.source_system || ':' || a.source_id
            WHERE NOT EXISTS (SELECT 1 FROM booked b WHERE b.source_system = a.source_system
                              AND b.source_id = a.source_id)
              AND l.record_key IS NULL
        ),
        account AS (
            SELECT account_code FROM ref.books_accounts WHERE books_system = 'xero' AND purpose = 'card_payments'
        )
        SELECT a.source_system || ':' || a.source_id AS allocation_key,
               a.source_system AS processor,
               a.payment_source_id AS processor_payment_id,
               a.invoice_id AS xero_invoice_id,
               a.currency,
               a.amount,
               strftime(a.paid_at, '%Y-%m-%d') AS paid_date,
               (SELECT min(account_code) FROM account) AS account_code,
               min(b.xero_payment_id) AS xero_payment_id,
               any_value(a.paid_at) AS paid_at
        FROM allocations AS a
        LEFT JOIN booked AS b ON b.source_system = a.source_system AND b.source_id = a.source_id
        LEFT JOIN unbooked AS u ON u.source_id = a.source_id
        WHERE NOT EXISTS (SELECT 1 FROM ambiguous m WHERE m.processor_system = a.source_system
                          AND m.processor_payment_id = a.payment_source_id)
        GROUP BY ALL
        HAVING min(b.xero_payment_id) IS NOT NULL
            OR (any_value(a.invoice_status) = 'open' AND bool_and(coalesce(u.fits, true)))
    """,
    source_assets=(("core", "payment_allocations"), ("core", "payment_matches"), ("core", "invoices")),
    key="allocation_key",
    start_column="paid_at",  # payments before the switch-on are the bookkeeper's (already booked by hand)
    target="xero",
    mode="insert",
    create_writer="create_payments",
    external_id_column="xero_payment_id",
    required_columns=("xero_invoice_id", "account_code"),
    payload={
        "Invoice": {"InvoiceID": "{xero_invoice_id}"},
        "Account": {"Code": "{account_code}"},
        "Date": "{paid_date}",
        "Amount": "{amount}",
        "Reference": "{processor} payment {processor_payment_id}",
    },
    manual_minutes_per_record=4.0,
)
