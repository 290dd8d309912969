"""Scenario 7: approved expense receipts (the expense tool) → the employing company's books.

A bookkeeper re-keys every approved receipt as an expense in the books. Each approved or reimbursed receipt in
core.expenses is booked in the books of the employee's company (core.expenses.legal_entity and books_system: the
employee's email domain matched to the legal-entities file, else the one entity keeping the receipt's currency;
with the shipped group the US company books in QuickBooks, the UK and German companies in Xero):
- QuickBooks: one `Purchase` paid from the employee-reimbursement (cash) account (`expense_paid_from`);
- Xero: one approved bill (ACCPAY invoice, AUTHORISED) to the employee as a contact, which is how Xero's own expense
  claims land: the company owes the employee the amount until the reimbursement is paid.
The line's expense account is the one the receipt's category maps to in `ref.books_accounts`
(`expense_category:<category>` per books system; seeds/books_accounts.csv or the business's own file named by
IP_BOOKS_ACCOUNTS_FILE). A category with no mapping, or a receipt no company can be told for, is not sent: it waits
in the plan's `waiting` count (`required_columns`) instead of landing on a catch-all account or in the wrong
company's books. Rejected and still-submitted receipts never leave.

The reimbursement: QuickBooks' purchase is already paid from the reimbursement account. A Xero bill stays owed to
the employee until `expense_reimbursements_to_xero` pays it: once the expense tool records the receipt reimbursed
(`reimbursed_at`), one Xero payment of the bill's amount from the bank account `expense_reimbursed_from`, dated that
day. Match before create: a payment the bookkeeper already recorded on the bill in Xero (read back from
`xero/payments`) is linked, never paid a second time; a bill voided or paid some other way in Xero waits and is a
person's to look at (its `AmountDue` no longer covers the receipt).

Duplicates: insert mode keyed by receipt, so the ledger sends each receipt once; every write carries the books'
idempotency key (QBO `requestid`, Xero `Idempotency-Key`, derived from sync, receipt and row hash), which the books
replay instead of booking a second expense. A receipt one books' sync has sent (or may have: in doubt) is never
sent to the other books, even when the employee later moves company.
"""

from __future__ import annotations

from ..spec import SyncSpec
from .books_accounts import books_account, with_accounts
from .sent_elsewhere import sent_by

_SYNC_NAME = {"quickbooks": "expenses_to_quickbooks", "xero": "expenses_to_xero"}

_APPROVED = """
    SELECT e.source_system || ':' || e.source_id AS expense_key,
           e.source_id AS receipt_id,
           e.employee,
           e.merchant,
           e.category,
           {expense_account} AS expense_account,
           e.currency,
           CAST(e.amount_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END
               AS amount,
           strftime(e.spent_at, '%Y-%m-%d') AS spent_date,
           e.spent_at
    FROM core.expenses AS e
    LEFT JOIN ref.currencies AS cur ON cur.currency = e.currency
    WHERE e.status IN ('approved', 'reimbursed') AND e.amount_minor > 0 AND e.books_system = '{system}'
      AND NOT EXISTS ({sent_elsewhere})
"""


# A reimbursed receipt's Xero bill (the one expenses_to_xero created: its ledger entry names it), with what Xero says
# of it now. `paid_by_hand`: a payment already on the bill (the bookkeeper recorded the transfer), which is linked.
# Otherwise the bill is paid when it is still AUTHORISED and owes the receipt's whole amount, or is not read back
# yet (it was created approved, with nothing paid); else `bill_id` is NULL and the record waits for a person.
_REIMBURSED = f"""
    WITH bills AS (
        SELECT record_key AS expense_key, external_id AS bill_id FROM sync.ledger
        WHERE sync_name = '{_SYNC_NAME["xero"]}' AND status IN ('synced', 'linked') AND external_id IS NOT NULL
    ),
    bill_state AS (
        SELECT lower(_pk) AS bill_id, _raw->>'$.Status' AS status, CAST(_raw->>'$.AmountDue' AS DECIMAL(18, 2)) AS due
        FROM raw_xero.invoices WHERE _raw->>'$.Type' = 'ACCPAY'
    ),
    paid_by_hand AS (
        SELECT lower(_raw->>'$.Invoice.InvoiceID') AS bill_id, min(_pk) AS payment_id
        FROM raw_xero.payments
        WHERE _raw->>'$.Status' <> 'DELETED' AND _raw->>'$.PaymentType' = 'ACCPAYPAYMENT'
        GROUP BY 1
    ),
    reimbursed AS (
        SELECT e.source_system || ':' || e.source_id AS expense_key, e.source_id AS receipt_id, e.reimbursed_at,
               CAST(e.amount_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END
                   AS amount
        FROM core.expenses AS e
        LEFT JOIN ref.currencies AS cur ON cur.currency = e.currency
        WHERE e.status = 'reimbursed' AND e.reimbursed_at IS NOT NULL AND e.books_system = 'xero'
    )
    SELECT r.expense_key,
           r.receipt_id,
           -- NULL (the record waits) when Xero shows the bill voided, or paid otherwise than by a payment on it
           CASE WHEN p.payment_id IS NOT NULL OR st.status IS NULL OR (st.status = 'AUTHORISED' AND st.due >= r.amount)
                THEN b.bill_id END AS bill_id,
           r.amount,
           strftime(r.reimbursed_at, '%Y-%m-%d') AS reimbursed_date,
           p.payment_id AS xero_payment_id,
           r.reimbursed_at
    FROM reimbursed AS r
    JOIN bills AS b ON b.expense_key = r.expense_key
    LEFT JOIN bill_state AS st ON st.bill_id = lower(b.bill_id)
    LEFT JOIN paid_by_hand AS p ON p.bill_id = lower(b.bill_id)
"""


def _source(system: str) -> str:
    other = next(name for books, name in _SYNC_NAME.items() if books != system)
    return _APPROVED.format(system=system,
                            sent_elsewhere=sent_by([other], "sent.record_key = e.source_system || ':' || e.source_id"),
                            expense_account=books_account(system, "'expense_category:' || e.category"))


SYNCS = (
    SyncSpec(
        name=_SYNC_NAME["quickbooks"],
        title="Expense receipts → QuickBooks purchases",
        description="Books each approved expense receipt of a company booking in QuickBooks (US) as a purchase on "
                    "its category's expense account.",
        source_sql=with_accounts(_source("quickbooks"), "quickbooks", paid_from_account="expense_paid_from"),
        source_assets=(("core", "expenses"),),
        key="expense_key",
        start_column="spent_at",  # receipts spent before the switch-on were booked by hand
        target="quickbooks",
        mode="insert",
        create_writer="save_purchase",
        required_columns=("expense_account",),
        payload={
            "PaymentType": "Cash",
            "AccountRef": {"value": "{paid_from_account}"},
            "TxnDate": "{spent_date}",
            "CurrencyRef": {"value": "{currency}"},
            "PrivateNote": "expense_tool receipt {receipt_id} ({employee}, {merchant})",
            "Line": [{"DetailType": "AccountBasedExpenseLineDetail", "Amount": "{amount}",
                      "Description": "{merchant}: {category}",
                      "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "{expense_account}"}}}],
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name=_SYNC_NAME["xero"],
        title="Expense receipts → Xero bills",
        description="Books each approved expense receipt of a company booking in Xero (UK, DE) as an approved bill "
                    "to the employee on its category's expense account.",
        source_sql=_source("xero"),
        source_assets=(("core", "expenses"),),
        key="expense_key",
        start_column="spent_at",
        target="xero",
        mode="insert",
        create_writer="create_invoices",
        required_columns=("expense_account",),
        payload={
            "Type": "ACCPAY",
            "Status": "AUTHORISED",
            "Contact": {"Name": "{employee}", "EmailAddress": "{employee}"},
            "Date": "{spent_date}",
            "DueDate": "{spent_date}",
            "InvoiceNumber": "{receipt_id}",
            "Reference": "expense_tool receipt {receipt_id} ({merchant})",
            "CurrencyCode": "{currency}",
            "LineItems": [{"Description": "{merchant}: {category}", "Quantity": 1, "UnitAmount": "{amount}",
                           "AccountCode": "{expense_account}"}],
        },
        manual_minutes_per_record=3.0,
    ),
    SyncSpec(
        name="expense_reimbursements_to_xero",
        title="Expense reimbursements → Xero bill payments",
        description="Pays each reimbursed receipt's Xero bill from the reimbursement bank account, on the day the "
                    "expense tool paid the employee; links a payment already recorded on the bill.",
        source_sql=with_accounts(_REIMBURSED, "xero", bank_account="expense_reimbursed_from"),
        source_assets=(("core", "expenses"), ("xero", "invoices"), ("xero", "payments")),
        key="expense_key",
        start_column="reimbursed_at",  # reimbursements before the switch-on were recorded by hand
        target="xero",
        mode="insert",
        create_writer="create_payments",
        external_id_column="xero_payment_id",
        required_columns=("bill_id",),
        depends_on=(_SYNC_NAME["xero"],),
        payload={
            "Invoice": {"InvoiceID": "{bill_id}"},
            "Account": {"Code": "{bank_account}"},
            "Date": "{reimbursed_date}",
            "Amount": "{amount}",
            "Reference": "reimbursement of expense_tool receipt {receipt_id}",
        },
        manual_minutes_per_record=2.0,
    ),
)
