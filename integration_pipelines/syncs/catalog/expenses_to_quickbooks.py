"""Scenario 7: approved expense receipts (the expense tool) → QuickBooks purchases.

A bookkeeper re-keys every approved receipt as an expense in the books. Each approved or reimbursed receipt in
core.expenses becomes one QuickBooks `Purchase` paid from the employee-reimbursement (cash) account, on the
expense account its category maps to. A category with no mapping fails visibly (QBO refuses a line without an
expense account) instead of landing on a catch-all account; rejected and still-submitted receipts never leave.

Duplicates: insert mode keyed by receipt, so the ledger sends each receipt once; every write carries QBO's
`requestid` (derived from sync, receipt and row hash), which QBO replays instead of booking a second purchase.
The account ids below are the company's chart of accounts and must be set per company (QBO ids are per realm).
"""

from ..spec import SyncSpec

PAID_FROM_ACCOUNT = "35"
"""QBO account the expenses are paid from (an employee-reimbursement cash/bank account in this company)."""

SYNC = SyncSpec(
    name="expenses_to_quickbooks",
    title="Expense receipts → QuickBooks purchases",
    description="Books each approved expense receipt as a QuickBooks purchase on its category's expense account.",
    source_sql="""
        SELECT e.source_system || ':' || e.source_id AS expense_key,
               e.source_id AS receipt_id,
               e.employee,
               e.merchant,
               e.category,
               CASE e.category WHEN 'travel' THEN '58' WHEN 'lodging' THEN '58' WHEN 'meals' THEN '13'
                               WHEN 'office_supplies' THEN '15' WHEN 'software' THEN '29' END AS expense_account,
               e.currency,
               CAST(e.amount_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END
                   AS amount,
               strftime(e.spent_at, '%Y-%m-%d') AS spent_date,
               e.spent_at
        FROM core.expenses AS e
        LEFT JOIN ref.currencies AS cur ON cur.currency = e.currency
        WHERE e.status IN ('approved', 'reimbursed') AND e.amount_minor > 0
    """,
    source_assets=(("core", "expenses"),),
    key="expense_key",
    start_column="spent_at",  # receipts spent before the switch-on were booked by hand
    target="quickbooks",
    mode="insert",
    create_writer="save_purchase",
    payload={
        "PaymentType": "Cash",
        "AccountRef": {"value": PAID_FROM_ACCOUNT},
        "TxnDate": "{spent_date}",
        "CurrencyRef": {"value": "{currency}"},
        "PrivateNote": "expense_tool receipt {receipt_id} ({employee}, {merchant})",
        "Line": [{"DetailType": "AccountBasedExpenseLineDetail", "Amount": "{amount}",
                  "Description": "{merchant}: {category}",
                  "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "{expense_account}"}}}],
    },
    manual_minutes_per_record=3.0,
)
