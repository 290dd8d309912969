-- entity: expenses
-- requires: raw_expense_tool.expense_receipts
SELECT 'expense_tool' AS source_system, _pk AS source_id,
       lower(_raw->>'$.employee_email') AS employee, _raw->>'$.merchant' AS merchant,
       _raw->>'$.category' AS category, upper(_raw->>'$.currency') AS currency,
       (_raw->>'$.amount_minor')::BIGINT AS amount_minor,
       (_raw->>'$.spent_on')::DATE::TIMESTAMPTZ AS spent_at, _raw->>'$.status' AS status,
       (_raw->>'$.reimbursed_at')::TIMESTAMPTZ AS reimbursed_at
FROM raw_expense_tool.expense_receipts
