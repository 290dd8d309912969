"""Scenario 10 for the entities whose books are Xero (the UK and German companies): each card payment's processor
fee and each refund become a Xero manual journal, once, in the books of the payment's legal entity.

The Xero half of processor_fees_to_quickbooks.py: the same source rows (core.payments, core.refunds), the same
entry keys (`<processor>:<payment id>`, `<processor>:<refund id>`) and the same routing by legal entity
(ref.legal_entities.books_system, JOURNAL_SYNCS); an entry is booked in one company's books only, so an entry the
QuickBooks sync already holds waits here, and the other way round.

What the journal says, and why it is not the QuickBooks entry: Xero never lets a manual journal touch a bank
account (help.xero.com: "You can't post a manual journal to a bank account in Xero"), and scenario 6 books each card
payment at its gross amount into the bank account card payouts land in (ref.books_accounts `xero,card_payments`).
The processor pays out less: the gross minus its fee, minus the refunds it gives back. So the Xero entries do not
move the gross (that would need the bank account); they book what the processor keeps, against a clearing account:
- fee: debit merchant fees (ref.books_accounts `xero,card_merchant_fees`: Xero's default 404 Bank Fees, an
  expense), credit the card processor clearing account (`xero,card_processor_clearing`: 615, a current asset the
  group set up), at the fee; the narration states gross, fee and net.
- refund: debit sales refunds (`xero,card_sales_refunds`: 205), credit the same clearing account, at the refund's
  own amount, dated the day it was made (every partial refund is its own journal).
When the bookkeeper reconciles a payout in Xero (a bank line of the net against the gross payments), the difference
is coded to the clearing account, which then returns to zero: the fee is expensed once, by this sync, and the bank
shows only what arrived. Lines carry no tax (`LineAmountTypes` NoTax, `TaxType` NONE): card processing fees are
exempt financial services in the UK and Germany; a business with other rules changes the lines.

Currency: a Xero manual journal has no currency: Xero books it in the organisation's base currency. The amounts
are the payment's, so an entry is journaled only when the payment's currency is its entity's functional currency
(ref.legal_entities.functional_currency, which must be the base currency of the entity's Xero organisation) and, when
`IP_XERO_BASE_CURRENCY` names the connected organisation's base currency, that one; any other entry waits with the
reason (no FX conversion of journal amounts yet). One Xero organisation per deployment (`XERO_TENANT_ID`): the
sandbox's single organisation stands in for the UK and the German company's own (as in scenarios 6 and 14), and both
companies' entries land in it, each naming its entity in the narration. Separate organisations per entity are not
supported yet; a real group whose two entities share one organisation must set `IP_XERO_BASE_CURRENCY`, or one
entity's journals would be booked in a currency that is not the organisation's.

Exactly once: insert mode keyed by the entry, the Xero `Idempotency-Key` on every write (a retried batch replays
the first answer), and match before create: Xero keeps no business key on a journal, so the narration ends with a
marker naming the entry (`[fee stripe:ch_…]`, `[refund stripe:re_…]`) and the source links a journal the
organisation already holds with that marker (stream xero/manual_journals, as last read: whatever its status, so a
journal a person voided or deleted is not booked again) instead of creating another (`external_id_column`).
Payments with no fee (0) and refunds of 0 have nothing to journal and are left out. Accounts are per company:
module constants, like the QuickBooks ones (set them for yours; they must be non-bank accounts of your chart).
"""

from ..spec import SyncSetting, SyncSpec
from .books_accounts import with_accounts
from .processor_fees_to_quickbooks import (
    PAYMENTS,
    REFUNDS,
    ROUTE,
    elsewhere_reason,
    journaled_elsewhere,
    route_reason,
)

#: The books system these syncs post to.
BOOKS = "xero"

BASE_CURRENCY_ENV = "IP_XERO_BASE_CURRENCY"
_SETTINGS = {
    "base_currency": SyncSetting(
        env=BASE_CURRENCY_ENV,
        description="the connected Xero organisation's base currency (ISO code, e.g. GBP). When set, only entries "
        "in it are journaled (a manual journal has no currency of its own); empty: each entity's functional currency "
        "is taken to be its organisation's base currency"),
}


#: SQL: the configured base currency of the connected organisation, '' when none is set
_BASE = "coalesce((SELECT upper(trim(value)) FROM _sync_settings WHERE name = 'base_currency'), '')"


def _currency_reason(item: str) -> str:
    """SQL: why the entry `x` cannot be journaled in its entity's Xero organisation's currency, or null."""
    return f"""CASE WHEN b.functional_currency IS NULL
             THEN x.legal_entity || ' has no functional_currency in the legal-entities file, so the currency of its '
                  || 'Xero books is unknown (a manual journal has no currency of its own)'
             WHEN x.currency IS DISTINCT FROM b.functional_currency
             THEN 'this ' || coalesce(x.currency, 'unknown-currency') || ' {item} is not journaled: '
                  || x.legal_entity || ' keeps its Xero books in ' || b.functional_currency
                  || ' and a manual journal has no currency of its own (no FX conversion yet)'
             WHEN {_BASE} NOT IN ('', x.currency)
             THEN 'this ' || x.currency || ' {item} is not journaled: the connected Xero organisation''s base '
                  || 'currency is ' || {_BASE} || ' ({BASE_CURRENCY_ENV}) and a manual journal has no currency of its '
                  || 'own'
        END"""


def _journals(kind: str) -> str:
    """SQL CTE `journals (entry_key, journal_id)`: the journals the organisation holds for an entry of `kind` (fee or
    refund), found by the marker `[<kind> <entry key>]` in their narration (match before create)."""
    return f"""journals AS (
        SELECT regexp_extract(_raw->>'$.Narration', '\\[{kind} ([^\\]]+)\\]', 1) AS entry_key,
               min(_pk) AS journal_id
        FROM raw_xero.manual_journals
        GROUP BY 1
    )"""


def _routed(item: str) -> str:
    """SQL: the entry `x` goes to Xero (its entity books there, in the journal's currency, held by no other books)."""
    return f"b.books_system = '{BOOKS}' AND e.sync_name IS NULL AND ({_currency_reason(item)}) IS NULL"


def _money(minor: str) -> str:
    """SQL: minor units of `x` as a decimal amount of its currency."""
    return f"CAST({minor} AS DECIMAL(18, 2)) / x.unit"


def _text(minor: str) -> str:
    """SQL: the amount as the narration writes it (two decimals)."""
    return f"CAST(CAST({minor} AS DECIMAL(18, 2)) / x.unit AS DECIMAL(18, 2))::VARCHAR"


_FEES = f"""
    WITH {ROUTE},
    {PAYMENTS},
    {journaled_elsewhere(BOOKS, "fees")},
    {_journals("fee")}
    SELECT x.entry_key, x.processor, x.payment_id, x.currency, x.legal_entity, b.books_system,
           CASE WHEN {_routed("payment")} THEN b.books_system END AS books_route,
           coalesce({route_reason(BOOKS, "payment")}, {elsewhere_reason(BOOKS)}, {_currency_reason("payment")},
                    CASE WHEN x.fee_minor IS NULL THEN 'the processor fee is not known yet (a Stripe charge''s fee '
                         || 'is on its balance transaction: stripe/balance_transactions)' END) AS waiting_reason,
           {_money("x.fee_minor")} AS fee,
           -{_money("x.fee_minor")} AS fee_credit,
           x.processor || ' payment ' || x.payment_id || ' (' || x.legal_entity || '): gross '
               || {_text("x.amount_minor")} || ', fee ' || {_text("x.fee_minor")} || ', net '
               || {_text("x.amount_minor - x.fee_minor")} || ' ' || x.currency || ' [fee ' || x.entry_key || ']'
               AS narration,
           strftime(x.paid_at, '%Y-%m-%d') AS paid_date,
           j.journal_id AS xero_journal_id,
           x.paid_at
    FROM x
    LEFT JOIN books AS b ON b.legal_entity = x.legal_entity
    LEFT JOIN elsewhere AS e ON e.record_key = x.entry_key
    LEFT JOIN journals AS j ON j.entry_key = x.entry_key
    WHERE x.fee_minor IS DISTINCT FROM 0
"""

_REFUNDS = f"""
    WITH {ROUTE},
    {REFUNDS},
    {journaled_elsewhere(BOOKS, "refunds")},
    {_journals("refund")}
    SELECT x.entry_key, x.processor, x.refund_id, x.payment_id, x.currency, x.legal_entity, b.books_system,
           CASE WHEN {_routed("refund")} THEN b.books_system END AS books_route,
           coalesce({route_reason(BOOKS, "refunded payment")}, {elsewhere_reason(BOOKS)},
                    {_currency_reason("refund")},
                    CASE WHEN x.amount_minor IS NULL THEN 'the refund''s own amount is not known: the processor '
                         || 'reports only the total of several refunds on the payment' END) AS waiting_reason,
           {_money("x.amount_minor")} AS amount,
           -{_money("x.amount_minor")} AS amount_credit,
           x.processor || ' refund ' || x.refund_id || ' of payment ' || x.payment_id || ' (' || x.legal_entity
               || '): ' || {_text("x.amount_minor")} || ' ' || x.currency || ' [refund ' || x.entry_key || ']'
               AS narration,
           strftime(x.refunded_at, '%Y-%m-%d') AS refund_date,
           j.journal_id AS xero_journal_id,
           x.refunded_at
    FROM x
    LEFT JOIN books AS b ON b.legal_entity = x.legal_entity
    LEFT JOIN elsewhere AS e ON e.record_key = x.entry_key
    LEFT JOIN journals AS j ON j.entry_key = x.entry_key
    WHERE x.amount_minor IS DISTINCT FROM 0
"""


def _line(amount: str, account: str, description: str) -> dict:
    """A journal line: `amount` signed (debit positive, credit negative), no tax."""
    return {"LineAmount": amount, "AccountCode": account, "Description": description, "TaxType": "NONE"}


def _journal(date: str, lines: list[dict]) -> dict:
    return {"Narration": "{narration}", "Date": date, "Status": "POSTED", "LineAmountTypes": "NoTax",
            "JournalLines": lines}


SYNCS = (
    SyncSpec(
        name="processor_fees_to_xero",
        title="Card payment fees → Xero manual journals",
        description="Books each card payment's processor fee as a posted Xero manual journal (merchant fees against "
                    "the processor clearing account) in the Xero books of the payment's legal entity; other entities' "
                    "payments, and payments in another currency than the books', wait (waiting_reason).",
        source_sql=with_accounts(_FEES, BOOKS, merchant_fees_account="card_merchant_fees",
                                 clearing_account="card_processor_clearing"),
        source_assets=(("core", "payments"), ("xero", "manual_journals")),
        key="entry_key",
        start_column="paid_at",
        target=BOOKS,
        mode="insert",
        create_writer="create_manual_journals",
        external_id_column="xero_journal_id",
        required_columns=("books_route", "fee"),
        settings=_SETTINGS,
        payload=_journal("{paid_date}", [
            _line("{fee}", "{merchant_fees_account}", "{processor} fee on payment {payment_id}"),
            _line("{fee_credit}", "{clearing_account}",
                  "{processor} fee on payment {payment_id}, kept from its payout"),
        ]),
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="processor_refunds_to_xero",
        title="Card refunds → Xero manual journals",
        description="Books each card refund (every partial refund on its own, on its own date) as a posted Xero "
                    "manual journal (sales refunds against the processor clearing account) in the Xero books of the "
                    "payment's legal entity.",
        source_sql=with_accounts(_REFUNDS, BOOKS, sales_refunds_account="card_sales_refunds",
                                 clearing_account="card_processor_clearing"),
        source_assets=(("core", "refunds"), ("xero", "manual_journals")),
        key="entry_key",
        start_column="refunded_at",  # a refund made after the switch-on is booked, even of an older payment
        target=BOOKS,
        mode="insert",
        create_writer="create_manual_journals",
        external_id_column="xero_journal_id",
        required_columns=("books_route", "amount"),
        settings=_SETTINGS,
        payload=_journal("{refund_date}", [
            _line("{amount}", "{sales_refunds_account}", "{processor} refund {refund_id} of payment {payment_id}"),
            _line("{amount_credit}", "{clearing_account}", "{processor} refund {refund_id} of payment {payment_id}"),
        ]),
        manual_minutes_per_record=3.0,
    ),
)
