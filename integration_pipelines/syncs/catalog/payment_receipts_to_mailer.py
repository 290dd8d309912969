"""Scenario 11: each successful card payment → one custom receipt email through the transactional-email platform.

Today someone writes a thank-you-and-receipt email per payment (the processor's stock receipt has no invoice
number, no company wording). The receipt is sent once per payment, ever: insert mode keyed by the processor's
payment id, so a payment whose receipt was accepted never reaches the mailer again. Postmark has no idempotency
key; the remaining window (a response lost after the mailer accepted the message, then retried) is covered by
`Metadata.idempotency_key` = the payment key, which the sandbox dedupes on and which makes a duplicate
findable in the real service's outbound search. Payments whose customer has no email wait (`required_columns`).
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payment_receipts_to_mailer",
    title="Payments → receipt emails",
    description="Sends one receipt email per successful card payment, through the transactional-email API.",
    source_sql="""
        SELECT p.source_system || ':' || p.source_id AS payment_key,
               p.source_system AS processor,
               p.source_id AS processor_payment_id,
               c.email,
               coalesce(c.full_name, c.email) AS customer_name,
               p.currency,
               CASE WHEN cur.minor_exponent = 0 THEN printf('%d', p.amount_minor)
                    ELSE printf('%.2f', p.amount_minor / 100.0) END AS amount,
               coalesce(p.invoice_number, '-') AS invoice_number,
               strftime(p.paid_at, '%Y-%m-%d') AS paid_date,
               p.paid_at
        FROM core.payments AS p
        LEFT JOIN core.customers AS c ON c.golden_id = p.golden_customer_id
        LEFT JOIN ref.currencies AS cur ON cur.currency = p.currency
        WHERE p.kind = 'processor' AND p.status = 'succeeded'
    """,
    source_assets=(("core", "payments"), ("core", "customers")),
    key="payment_key",
    start_column="paid_at",  # no receipt for a payment made before the sync was switched on
    target="mailer",
    mode="insert",
    create_writer="send_email",
    required_columns=("email",),
    payload={
        "From": "{from_address}",
        "To": "{email}",
        "Subject": "Your payment receipt: {currency} {amount} on {paid_date}",
        "HtmlBody": "<p>Dear {customer_name},</p><p>we received your payment of <b>{currency} {amount}</b> on "
                    "{paid_date} (invoice {invoice_number}). Thank you.</p><p>Reference: {processor_payment_id}</p>",
        "TextBody": "Dear {customer_name},\n\nwe received your payment of {currency} {amount} on {paid_date} "
                    "(invoice {invoice_number}). Thank you.\n\nReference: {processor_payment_id}",
        "MessageStream": "outbound",
        "Metadata": {"idempotency_key": "{record_key}", "payment_id": "{processor_payment_id}"},
    },
    manual_minutes_per_record=2.0,
)
