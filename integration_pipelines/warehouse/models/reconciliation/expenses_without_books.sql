-- Approved (or reimbursed) expense receipts that S7 cannot book, and why: the books would otherwise never hear of
-- them, and nobody would reimburse the employee.
-- - no_company: the employee's email domain is none of the group companies' (the legal-entities file's
--   `intercompany.email_domains`) and no single company keeps the receipt's currency;
-- - no_expense_account: the company's books have no expense account for the receipt's category
--   (ref.books_accounts `expense_category:<category>`; seeds/books_accounts.csv or IP_BOOKS_ACCOUNTS_FILE).
SELECT CASE WHEN e.books_system IS NULL THEN 'no_company' ELSE 'no_expense_account' END AS finding,
       e.source_system, e.source_id AS receipt_id, e.employee, e.category, e.amount_minor, e.currency,
       e.spent_at, e.legal_entity, e.books_system
FROM core.expenses AS e
WHERE e.status IN ('approved', 'reimbursed') AND e.amount_minor > 0
  AND (e.books_system IS NULL
       OR NOT EXISTS (SELECT 1 FROM ref.books_accounts AS a
                      WHERE a.books_system = e.books_system AND a.purpose = 'expense_category:' || e.category))
ORDER BY e.source_system, e.source_id
