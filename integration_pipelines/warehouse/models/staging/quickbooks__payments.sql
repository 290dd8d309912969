-- entity: payments
-- requires: raw_quickbooks.payments, raw_quickbooks.invoices
SELECT
    'quickbooks' AS source_system,
    p._pk AS source_id,
    'accounting' AS kind,
    p._raw->>'$.CustomerRef.value' AS customer_source_id,
    p._raw->>'$.Line[0].LinkedTxn[0].TxnId' AS invoice_source_id,
    i._raw->>'$.DocNumber' AS invoice_number,
    'succeeded' AS status,
    upper(coalesce(p._raw->>'$.CurrencyRef.value', 'USD')) AS currency,
    to_minor(p._raw->>'$.TotalAmt', coalesce(p._raw->>'$.CurrencyRef.value', 'USD')) AS amount_minor,
    NULL::BIGINT AS fee_minor,
    0::BIGINT AS refunded_minor,
    (p._raw->>'$.TxnDate')::DATE::TIMESTAMPTZ AS paid_at
FROM raw_quickbooks.payments AS p
LEFT JOIN raw_quickbooks.invoices AS i ON i._pk = p._raw->>'$.Line[0].LinkedTxn[0].TxnId'
