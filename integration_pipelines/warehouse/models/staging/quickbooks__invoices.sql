-- entity: invoices
-- requires: raw_quickbooks.invoices
-- optional: raw_quickbooks.invoice_changes
-- A voided invoice (QuickBooks keeps it under its number with every amount zeroed and `Voided` before its private
-- note) and a deleted one (which queries stop returning: only ChangeDataCapture, raw_quickbooks.invoice_changes,
-- reports it, as `status: Deleted`) are `void`: neither revenue nor a receivable any more, still there for the deal
-- or milestone it was raised for. A deleted invoice keeps the total it had and owes nothing.
WITH deleted AS (
    SELECT _pk AS id FROM raw_quickbooks.invoice_changes WHERE _raw->>'$.status' = 'Deleted'
)
SELECT
    'quickbooks' AS source_system,
    i._pk AS source_id,
    i._raw->>'$.DocNumber' AS invoice_number,
    i._raw->>'$.CustomerRef.value' AS customer_source_id,
    CASE WHEN d.id IS NOT NULL THEN 'void'
         WHEN coalesce(i._raw->>'$.PrivateNote', '') LIKE 'Voided%' AND (i._raw->>'$.TotalAmt')::DECIMAL(18, 4) = 0
         THEN 'void'
         WHEN (i._raw->>'$.Balance')::DECIMAL(18, 4) = 0 THEN 'paid'
         ELSE 'open' END AS status,
    upper(coalesce(i._raw->>'$.CurrencyRef.value', 'USD')) AS currency,
    to_minor(i._raw->>'$.TotalAmt', coalesce(i._raw->>'$.CurrencyRef.value', 'USD')) AS total_minor,
    CASE WHEN d.id IS NOT NULL THEN 0
         ELSE to_minor(i._raw->>'$.Balance', coalesce(i._raw->>'$.CurrencyRef.value', 'USD')) END AS balance_minor,
    (i._raw->>'$.TxnDate')::DATE::TIMESTAMPTZ AS issued_at,
    (i._raw->>'$.DueDate')::DATE::TIMESTAMPTZ AS due_at,
    (i._raw->>'$.MetaData.LastUpdatedTime')::TIMESTAMPTZ AS updated_at,
    NULL AS books_id
FROM raw_quickbooks.invoices AS i
LEFT JOIN deleted AS d ON d.id = i._pk
