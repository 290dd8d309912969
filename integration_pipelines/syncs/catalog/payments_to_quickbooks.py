"""Scenario 6 (US books): card payments (Stripe, Square) → payments in QuickBooks, on the invoices they pay.

Today a bookkeeper matches each processor payout line to an invoice and records the payment by hand, so the
sync must never book a payment the books already hold, whoever recorded it first:
- The invoices come from core.payment_allocations: matched by invoice number within the payment's currency in the
  books of record (two entities may issue the same number), every invoice in QuickBooks, one customer. A charge for
  several invoices becomes one QuickBooks payment with a line per invoice.
- Match before create: a QuickBooks payment that already records the charge (its memo names the charge id, or it
  is the only unlinked payment of that amount on those invoices, core.payment_matches) is LINKED in the ledger
  through `external_id_column`, never created again. Several candidates are ambiguous: the row waits and the
  reconciliation reports it for a person.
- A payment is only sent while every invoice it pays still has that much open, counting the card payments not yet
  in the books in the order they came in; otherwise QuickBooks would refuse it as an overpayment (a customer who
  paid twice), and the reconciliation reports the disagreement instead of a failing write every night.
- Insert mode, keyed by the processor's payment id, QuickBooks `requestid` on every write, and the charge id in
  the memo, so even a lost ledger relinks instead of re-booking.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payments_to_quickbooks",
    title="Card payments → QuickBooks payments",
    description="Records each processor payment against the open QuickBooks invoices it settles; links the ones "
                "the books already hold.",
    source_sql="""
        WITH allocations AS (
            SELECT a.*, inv.customer_source_id, inv.balance_minor,
                   CAST(a.allocated_minor AS DECIMAL(18, 2))
                       / CASE WHEN c.minor_exponent = 0 THEN 1 ELSE 100 END AS amount
            FROM core.payment_allocations AS a
            JOIN core.invoices AS inv ON inv.source_system = a.invoice_system AND inv.source_id = a.invoice_id
            LEFT JOIN ref.currencies AS c ON c.currency = a.currency
            WHERE a.kind = 'processor' AND a.payment_status = 'succeeded'
        ),
        books AS (  -- the QuickBooks payment that already records the charge, when exactly one does
            SELECT processor_system, processor_payment_id, min(books_payment_id) AS books_payment_id,
                   bool_or(matched_by = 'ambiguous') AS ambiguous
            FROM core.payment_matches WHERE books_system = 'quickbooks' GROUP BY ALL
        ),
        unbooked AS (  -- what the books do not hold yet, in the order the money came in: a second card payment of
                       -- an invoice already settled (a customer paying twice) does not fit, and is left to a person
            SELECT a.source_id, sum(a.allocated_minor) OVER (
                       PARTITION BY a.invoice_system, a.invoice_id
                       ORDER BY a.paid_at, a.payment_source_id, a.source_id) <= a.balance_minor AS fits
            FROM allocations AS a
            LEFT JOIN books AS b
                 ON b.processor_system = a.source_system AND b.processor_payment_id = a.payment_source_id
            LEFT JOIN sync.ledger AS l ON l.sync_name = 'payments_to_quickbooks' AND l.external_id IS NOT NULL
                 AND l.record_key = a.source_system || ':' || a.payment_source_id
            WHERE b.books_payment_id IS NULL AND l.record_key IS NULL
        ),
        payments AS (
            SELECT a.source_system, a.payment_source_id, any_value(a.currency) AS currency,
                   any_value(a.paid_at) AS paid_at, count(*) AS allocations,
                   count(*) FILTER (WHERE a.match_status = 'matched' AND a.on_books_of_record
                                    AND a.invoice_system = 'quickbooks') AS in_quickbooks,
                   count(DISTINCT a.customer_source_id) AS customers,
                   any_value(a.customer_source_id) AS qbo_customer_id,
                   bool_and(coalesce(u.fits, true)) AS fits_open_balance,
                   sum(a.amount) AS amount,
                   list({'Amount': a.amount, 'LinkedTxn': [{'TxnId': a.invoice_id, 'TxnType': 'Invoice'}]}
                        ORDER BY a.source_id) AS lines
            FROM allocations AS a LEFT JOIN unbooked AS u USING (source_id) GROUP BY ALL
        )
        SELECT p.source_system || ':' || p.payment_source_id AS payment_key,
               p.source_system AS processor,
               p.payment_source_id AS processor_payment_id,
               p.qbo_customer_id,
               p.currency,
               p.amount,
               strftime(p.paid_at, '%Y-%m-%d') AS paid_date,
               p.lines,
               b.books_payment_id AS qbo_payment_id,
               p.paid_at
        FROM payments AS p
        LEFT JOIN books AS b ON b.processor_system = p.source_system AND b.processor_payment_id = p.payment_source_id
        WHERE p.allocations = p.in_quickbooks AND p.customers = 1 AND NOT coalesce(b.ambiguous, false)
          AND (b.books_payment_id IS NOT NULL OR p.fits_open_balance)
    """,
    source_assets=(("core", "payment_allocations"), ("core", "payment_matches"), ("core", "invoices")),
    key="payment_key",
    start_column="paid_at",  # payments before the switch-on are the bookkeeper's (already booked by hand)
    target="quickbooks",
    mode="insert",
    create_writer="save_payment",
    external_id_column="qbo_payment_id",
    required_columns=("qbo_customer_id",),
    payload={
        "CustomerRef": {"value": "{qbo_customer_id}"},
        "TotalAmt": "{amount}",
        "TxnDate": "{paid_date}",
        "CurrencyRef": {"value": "{currency}"},
        "PrivateNote": "{processor} payment {processor_payment_id}",
        "Line": "{lines}",
    },
    manual_minutes_per_record=4.0,
)
