-- entity: invoices
-- requires: raw_quickbooks.invoices
SELECT
    'quickbooks' AS source_system,
    _pk AS source_id,
    _raw->>'$.DocNumber' AS invoice_number,
    _raw->>'$.CustomerRef.value' AS customer_source_id,
    CASE WHEN (_raw->>'$.Balance')::DECIMAL(18, 4) = 0 THEN 'paid' ELSE 'open' END AS status,
    upper(coalesce(_raw->>'$.CurrencyRef.value', 'USD')) AS currency,
    to_minor(_raw->>'$.TotalAmt', coalesce(_raw->>'$.CurrencyRef.value', 'USD')) AS total_minor,
    to_minor(_raw->>'$.Balance', coalesce(_raw->>'$.CurrencyRef.value', 'USD')) AS balance_minor,
    (_raw->>'$.TxnDate')::DATE::TIMESTAMPTZ AS issued_at,
    (_raw->>'$.DueDate')::DATE::TIMESTAMPTZ AS due_at,
    (_raw->>'$.MetaData.LastUpdatedTime')::TIMESTAMPTZ AS updated_at,
    NULL AS books_id
FROM raw_quickbooks.invoices
