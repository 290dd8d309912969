-- entity: payments
-- requires: raw_quickbooks.payments, raw_quickbooks.invoices
-- optional: raw_quickbooks.payment_changes
-- A payment deleted in QuickBooks (reported only by ChangeDataCapture, raw_quickbooks.payment_changes) is gone from
-- the books; a voided one (every amount zeroed, `Voided` before its note) is `failed`, as a refused card payment is.
SELECT
    'quickbooks' AS source_system,
    p._pk AS source_id,
    'accounting' AS kind,
    p._raw->>'$.CustomerRef.value' AS customer_source_id,
    p._raw->>'$.Line[0].LinkedTxn[0].TxnId' AS invoice_source_id,
    i._raw->>'$.DocNumber' AS invoice_number,
    CASE WHEN coalesce(p._raw->>'$.PrivateNote', '') LIKE 'Voided%' AND (p._raw->>'$.TotalAmt')::DECIMAL(18, 4) = 0
         THEN 'failed' ELSE 'succeeded' END AS status,
    upper(coalesce(p._raw->>'$.CurrencyRef.value', 'USD')) AS currency,
    to_minor(p._raw->>'$.TotalAmt', coalesce(p._raw->>'$.CurrencyRef.value', 'USD')) AS amount_minor,
    NULL::BIGINT AS fee_minor,
    0::BIGINT AS refunded_minor,
    (p._raw->>'$.TxnDate')::DATE::TIMESTAMPTZ AS paid_at
FROM raw_quickbooks.payments AS p
LEFT JOIN raw_quickbooks.invoices AS i ON i._pk = p._raw->>'$.Line[0].LinkedTxn[0].TxnId'
WHERE p._pk NOT IN (SELECT _pk FROM raw_quickbooks.payment_changes WHERE _raw->>'$.status' = 'Deleted')
