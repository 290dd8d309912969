"""Scenario 10: card payments and refunds → journal entries (gross, processor fee, net) in each entity's books.

A processor pays out the gross charge less its fee; the books must show the fee as an expense and only the net
reaching the processor's clearing (bank) account. Scenario 6 records each charge at gross into Undeposited
Funds; here each charge becomes one balanced journal entry moving it out: credit Undeposited Funds (gross),
debit the processor clearing account (net) and merchant fees (fee). Each refund becomes its own entry: debit
sales refunds, credit the clearing account (the refunded amount; processors keep their fee).

Which books: the books of record of the legal entity the payment belongs to (core.payments.legal_entity, the
entity whose invoice it settles; a refund follows its payment, core.refunds.legal_entity), from the group's
legal-entities file (ref.legal_entities.books_system, see seeds/legal_entities.yaml). Each books system with a
journal writer has its own pair of syncs (JOURNAL_SYNCS): these two post the entries of the entities that book in
QuickBooks (connectors/quickbooks.py `save_journalentry`); processor_fees_to_xero.py posts those of the entities
that book in Xero (the UK and German companies) as Xero manual journals. Every other entry waits here
(`books_route` is null) with its reason in `waiting_reason`, never booked in another company's books: an entity
whose books are elsewhere (Xero: booked by the Xero syncs; a books system without a journal writer, e.g. NetSuite:
not booked anywhere yet), a payment that settles no invoice of the books of record (legal entity 'Unassigned', so
whose books it belongs in is unknown), and an entry that another books system's sync has already journaled (its
entity changed afterwards, e.g. a corrected legal-entities file): money is booked in one company's books only, and
moving it is a person's decision.

Fees: Square reports them on the payment (`processing_fee`); Stripe on the charge's balance transaction
(stream stripe/balance_transactions, staging/stripe__payments.sql). A payment whose fee is not known yet waits
(`fee` is required) rather than being booked with a made-up fee of 0.

Refunds: one entry per refund (core.refunds), at its own amount and dated the day it was made, so a second
partial refund is a second entry. Refunds whose amount the source does not give one by one (several Square refunds
on a payment, see staging/square__refunds.sql) wait.

Exactly once: insert mode keyed by `<processor>:<payment id>` (fees) and `<processor>:<refund id>` (refunds), a
QBO `requestid` on every write, and a DocNumber naming the payment or refund (journal entries are not refused on
a repeated DocNumber, so the ledger and the requestid are the protection). Match before create: earlier versions
of the refund sync booked one entry per payment (`<processor>:<payment id>:refund`) at the amount refunded by
then; the refunds made before that entry was pushed are linked to it (`booked_entry_id`), not booked again, and
only later refunds are new entries. The account ids are the company's own, from `ref.books_accounts` (purposes
`card_undeposited_funds`, `card_merchant_fees`, `card_processor_clearing`, `card_sales_refunds`; the sandbox realm's
in seeds/books_accounts.csv, yours in IP_BOOKS_ACCOUNTS_FILE); one missing stops the plan naming it.
"""

from ..spec import SyncSpec
from .books_accounts import with_accounts
from .sent_elsewhere import sent_entries

#: The books system these syncs post to: entries of entities whose books of record are elsewhere wait here.
BOOKS = "quickbooks"

#: books system → the syncs that journal the fees and the refunds of the entities keeping their books there. An
#: entity whose books system is missing here has no journal-entry writer yet: its entries wait in every sync.
JOURNAL_SYNCS: dict[str, dict[str, str]] = {
    "quickbooks": {"fees": "processor_fees_to_quickbooks", "refunds": "processor_refunds_to_quickbooks"},
    "xero": {"fees": "processor_fees_to_xero", "refunds": "processor_refunds_to_xero"},
}

#: Each entity's books of record and functional currency, and the minor-unit divisor of each currency.
ROUTE = """books AS (SELECT legal_entity, books_system, functional_currency FROM ref.legal_entities),
    units AS (SELECT currency, CASE WHEN minor_exponent = 0 THEN 1 ELSE 100 END AS unit FROM ref.currencies)"""

#: `x`: every succeeded (or since refunded) processor payment, keyed `<processor>:<payment id>`.
PAYMENTS = """x AS (
        SELECT p.source_system || ':' || p.source_id AS entry_key, p.source_system AS processor,
               p.source_id AS payment_id, p.currency, p.legal_entity,
               coalesce(u.unit, 100) AS unit, p.amount_minor, p.fee_minor, p.paid_at
        FROM core.payments AS p
        LEFT JOIN units AS u ON u.currency = p.currency
        WHERE p.kind = 'processor' AND p.status IN ('succeeded', 'refunded')
    )"""

#: `x`: every succeeded refund, keyed `<processor>:<refund id>`, with the payment it gives back.
REFUNDS = """x AS (
        SELECT r.source_system || ':' || r.source_id AS entry_key, r.source_system AS processor,
               r.source_id AS refund_id, r.payment_source_id AS payment_id, r.currency, r.legal_entity,
               coalesce(u.unit, 100) AS unit, r.amount_minor, r.refunded_at
        FROM core.refunds AS r
        LEFT JOIN units AS u ON u.currency = r.currency
        WHERE r.status = 'succeeded'
    )"""


def route_reason(books: str, payment: str) -> str:
    """SQL: why the entry `x` (its entity's books `b`) is not journaled in `books`, or null when it is routed there
    (`payment` names it in the text)."""
    elsewhere = ", ".join(f"'{system}'" for system in JOURNAL_SYNCS if system != books) or "''"
    return f"""CASE WHEN b.books_system IS NULL
             THEN 'no legal entity: the {payment} settles no invoice of the books of record, so whose books it '
                  || 'belongs in is unknown (legal_entity ' || coalesce(x.legal_entity, 'null') || ')'
             WHEN b.books_system IN ({elsewhere})
             THEN x.legal_entity || ' keeps its books in ' || b.books_system || ': its entries are journaled by '
                  || 'the ' || b.books_system || ' syncs, not in another company''s {books}'
             WHEN b.books_system <> '{books}'
             THEN x.legal_entity || ' keeps its books in ' || b.books_system || ', which has no journal-entry '
                  || 'writer yet: not booked in another company''s {books}'
        END"""


def journaled_elsewhere(books: str, kind: str) -> str:
    """SQL CTE `elsewhere (record_key, sync_name)`: entries the `kind` ("fees" or "refunds") sync of another books
    system holds (pushed, linked, in doubt, or journaled in a batch whose answer is not known yet). Such an entry is
    in that company's books: it is not booked here too, whatever its entity says now."""
    others = [syncs[kind] for system, syncs in JOURNAL_SYNCS.items() if system != books]
    return f"""elsewhere AS (
        SELECT record_key, min(sync_name) AS sync_name FROM {sent_entries(others)} GROUP BY record_key
    )"""


def elsewhere_reason(books: str) -> str:
    """SQL: why an entry another books system's sync holds (`e`, from `journaled_elsewhere`) waits here."""
    return (f"CASE WHEN e.sync_name IS NOT NULL THEN 'already journaled by ' || e.sync_name || ' in another "
            f"company''s books: not booked again in {books} (moving it is a person''s decision)' END")


_FEES = f"""
    WITH {ROUTE},
    {PAYMENTS},
    {journaled_elsewhere(BOOKS, "fees")}
    SELECT x.entry_key, x.processor, x.payment_id, x.currency, x.legal_entity,
           b.books_system,
           CASE WHEN b.books_system = '{BOOKS}' AND e.sync_name IS NULL THEN b.books_system END AS books_route,
           coalesce({route_reason(BOOKS, "payment")}, {elsewhere_reason(BOOKS)},
                    CASE WHEN x.fee_minor IS NULL THEN 'the processor fee is not known yet (a Stripe charge''s fee '
                         || 'is on its balance transaction: stripe/balance_transactions)' END) AS waiting_reason,
           CAST(x.amount_minor AS DECIMAL(18, 2)) / x.unit AS gross,
           CAST(x.fee_minor AS DECIMAL(18, 2)) / x.unit AS fee,
           CAST(x.amount_minor - x.fee_minor AS DECIMAL(18, 2)) / x.unit AS net,
           strftime(x.paid_at, '%Y-%m-%d') AS paid_date,
           left(x.processor, 2) || '-' || right(x.payment_id, 18) AS doc_number,
           x.paid_at
    FROM x
    LEFT JOIN books AS b ON b.legal_entity = x.legal_entity
    LEFT JOIN elsewhere AS e ON e.record_key = x.entry_key
"""

_REFUNDS = f"""
    WITH {ROUTE},
    {REFUNDS},
    {journaled_elsewhere(BOOKS, "refunds")},
    -- entries of the earlier one-entry-per-payment refund sync: they hold every refund made before they were pushed
    per_payment AS (
        SELECT record_key, external_id, last_synced_at FROM sync.ledger
        WHERE sync_name = 'processor_refunds_to_quickbooks' AND ends_with(record_key, ':refund')
          AND external_id IS NOT NULL
    )
    SELECT x.entry_key, x.processor, x.refund_id, x.payment_id, x.currency,
           x.legal_entity, b.books_system,
           CASE WHEN b.books_system = '{BOOKS}' AND e.sync_name IS NULL THEN b.books_system END AS books_route,
           coalesce({route_reason(BOOKS, "refunded payment")}, {elsewhere_reason(BOOKS)},
                    CASE WHEN x.amount_minor IS NULL THEN 'the refund''s own amount is not known: the processor '
                         || 'reports only the total of several refunds on the payment' END) AS waiting_reason,
           CAST(x.amount_minor AS DECIMAL(18, 2)) / x.unit AS amount,
           strftime(x.refunded_at, '%Y-%m-%d') AS refund_date,
           left(x.processor, 2) || 'R' || right(x.refund_id, 18) AS doc_number,
           pp.external_id AS booked_entry_id,
           x.refunded_at
    FROM x
    LEFT JOIN books AS b ON b.legal_entity = x.legal_entity
    LEFT JOIN elsewhere AS e ON e.record_key = x.entry_key
    LEFT JOIN per_payment AS pp ON pp.record_key = x.processor || ':' || x.payment_id || ':refund'
                               AND x.refunded_at <= pp.last_synced_at
"""


def _line(amount: str, posting: str, account: str, description: str) -> dict:
    return {"DetailType": "JournalEntryLineDetail", "Amount": amount, "Description": description,
            "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": account}}}


SYNCS = (
    SyncSpec(
        name="processor_fees_to_quickbooks",
        title="Card payments → QuickBooks journal entries (gross, fee, net)",
        description="Books each card payment's processor fee and net payout as a balanced journal entry in the "
                    "QuickBooks of the payment's legal entity; other entities' payments wait (waiting_reason).",
        source_sql=with_accounts(_FEES, BOOKS, undeposited_funds_account="card_undeposited_funds",
                                 merchant_fees_account="card_merchant_fees",
                                 clearing_account="card_processor_clearing"),
        source_assets=(("core", "payments"),),
        key="entry_key",
        start_column="paid_at",
        target=BOOKS,
        mode="insert",
        create_writer="save_journalentry",
        required_columns=("books_route", "fee"),
        payload={
            "TxnDate": "{paid_date}",
            "DocNumber": "{doc_number}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{processor} payment {payment_id}: gross, fee, net",
            "Line": [
                _line("{gross}", "Credit", "{undeposited_funds_account}", "{processor} payment {payment_id} (gross)"),
                _line("{fee}", "Debit", "{merchant_fees_account}", "{processor} fee on {payment_id}"),
                _line("{net}", "Debit", "{clearing_account}", "{processor} payout of {payment_id} (net)"),
            ],
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="processor_refunds_to_quickbooks",
        title="Card refunds → QuickBooks journal entries",
        description="Books each card refund (every partial refund on its own, on its own date) against the "
                    "processor clearing account in the QuickBooks of the payment's legal entity.",
        source_sql=with_accounts(_REFUNDS, BOOKS, sales_refunds_account="card_sales_refunds",
                                 clearing_account="card_processor_clearing"),
        source_assets=(("core", "refunds"),),
        key="entry_key",
        start_column="refunded_at",  # a refund made after the switch-on is booked, even of an older payment
        target=BOOKS,
        mode="insert",
        create_writer="save_journalentry",
        external_id_column="booked_entry_id",
        required_columns=("books_route", "amount"),
        payload={
            "TxnDate": "{refund_date}",
            "DocNumber": "{doc_number}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "{processor} refund {refund_id} of payment {payment_id}",
            "Line": [
                _line("{amount}", "Debit", "{sales_refunds_account}", "{processor} refund {refund_id} of {payment_id}"),
                _line("{amount}", "Credit", "{clearing_account}", "{processor} refund {refund_id} of {payment_id}"),
            ],
        },
        manual_minutes_per_record=3.0,
    ),
)
