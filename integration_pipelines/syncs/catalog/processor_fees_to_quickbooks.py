"""Scenario 10: card payments and refunds → QuickBooks journal entries, gross, processor fee and net.

A processor pays out the gross charge less its fee; the books must show the fee as an expense and only the net
reaching the processor's clearing (bank) account. Scenario 6 records each charge at gross into Undeposited
Funds; here each charge becomes one balanced journal entry moving it out: credit Undeposited Funds (gross),
debit the processor clearing account (net) and merchant fees (fee). Each refund becomes a second entry:
debit sales refunds, credit the clearing account (the refunded amount; processors keep their fee).

Fees: Square reports them on the payment (`processing_fee`, core.payments.fee_minor). Stripe does not put the
fee on the charge: it is on the charge's balance transaction (`GET /v1/balance_transactions/{id}` or
`expand[]=data.balance_transaction`), which the Stripe connector does not read yet, so core.payments.fee_minor is
null for Stripe and its charges *wait* (`required_columns`) rather than being booked with a made-up fee of 0.
Stripe refunds need no fee and are booked. A refund is booked once, at the refunded amount first seen, dated
the payment's date (core.payments has no refund date); a later second partial refund is not booked (see the
module's report: updating a QBO entry needs its current SyncToken, which a sync payload cannot carry yet).

Duplicates: insert mode keyed by `<processor>:<payment id>` (+ `:refund`), QBO `requestid` on every write, and
a DocNumber naming the payment on each entry (journal entries are not refused on a repeated DocNumber, so the
ledger and the requestid are the protection). Account ids are per company (set them for yours).
"""

from ..spec import SyncSpec

UNDEPOSITED_FUNDS = "4"
PROCESSOR_CLEARING = "36"
MERCHANT_FEES = "37"
SALES_REFUNDS = "38"

_PAYMENTS = """
    WITH p AS (
        SELECT p.source_system AS processor, p.source_id AS payment_id, p.currency,
               CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END AS unit,
               p.amount_minor, p.fee_minor, p.refunded_minor, p.paid_at
        FROM core.payments AS p
        LEFT JOIN ref.currencies AS cur ON cur.currency = p.currency
        WHERE p.kind = 'processor' AND p.status IN ('succeeded', 'refunded')
    )
"""

def _line(amount: str, posting: str, account: str, description: str) -> dict:
    return {"DetailType": "JournalEntryLineDetail", "Amount": amount, "Description": description,
            "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": account}}}


SYNCS = (
    SyncSpec(
        name="processor_fees_to_quickbooks",
        title="Card payments → QuickBooks journal entries (gross, fee, net)",
        description="Books each card payment's processor fee and net payout as a balanced journal entry.",
        source_sql=_PAYMENTS + """
            SELECT processor || ':' || payment_id AS entry_key, processor, payment_id, currency,
                   CAST(amount_minor AS DECIMAL(18, 2)) / unit AS gross,
                   CAST(fee_minor AS DECIMAL(18, 2)) / unit AS fee,
                   CAST(amount_minor - fee_minor AS DECIMAL(18, 2)) / unit AS net,
                   strftime(paid_at, '%Y-%m-%d') AS paid_date,
                   left(processor, 2) || '-' || right(payment_id, 18) AS doc_number,
                   paid_at
            FROM p
        """,
        source_assets=(("core", "payments"),),
        key="entry_key",
        start_column="paid_at",
        target="quickbooks",
        mode="insert",
        create_writer="save_journalentry",
        required_columns=("fee",),
        payload={
            "TxnDate": "{paid_date}",
            "DocNumber": "{doc_number}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{processor} payment {payment_id}: gross, fee, net",
            "Line": [
                _line("{gross}", "Credit", UNDEPOSITED_FUNDS, "{processor} payment {payment_id} (gross)"),
                _line("{fee}", "Debit", MERCHANT_FEES, "{processor} fee on {payment_id}"),
                _line("{net}", "Debit", PROCESSOR_CLEARING, "{processor} payout of {payment_id} (net)"),
            ],
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="processor_refunds_to_quickbooks",
        title="Card refunds → QuickBooks journal entries",
        description="Books each card refund against the processor clearing account as a journal entry.",
        source_sql=_PAYMENTS + """
            SELECT processor || ':' || payment_id || ':refund' AS entry_key, processor, payment_id, currency,
                   CAST(refunded_minor AS DECIMAL(18, 2)) / unit AS refunded,
                   strftime(paid_at, '%Y-%m-%d') AS paid_date,
                   paid_at
            FROM p
            WHERE refunded_minor > 0
        """,
        source_assets=(("core", "payments"),),
        key="entry_key",
        start_column="paid_at",
        target="quickbooks",
        mode="insert",
        create_writer="save_journalentry",
        payload={
            "TxnDate": "{paid_date}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{processor} refund of payment {payment_id}",
            "Line": [
                _line("{refunded}", "Debit", SALES_REFUNDS, "{processor} refund of {payment_id}"),
                _line("{refunded}", "Credit", PROCESSOR_CLEARING, "{processor} refund of {payment_id}"),
            ],
        },
        manual_minutes_per_record=3.0,
    ),
)
