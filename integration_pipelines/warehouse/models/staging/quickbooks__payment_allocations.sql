-- entity: payment_allocations
-- requires: raw_quickbooks.payments, raw_quickbooks.invoices
-- optional: raw_quickbooks.payment_changes
-- One row per payment line linked to an invoice: a deposit applied to several invoices has several lines. A payment
-- deleted in QuickBooks (ChangeDataCapture) has none.
WITH lines AS (
    SELECT p._pk, p._raw, g.i AS position, json_extract(p._raw, '$.Line[' || g.i || ']') AS line
    FROM raw_quickbooks.payments AS p,
         generate_series(0, CAST(coalesce(json_array_length(p._raw->'$.Line'), 0) AS BIGINT) - 1) AS g(i)
)
SELECT 'quickbooks' AS source_system,
       l._pk || ':' || (l.position + 1) AS source_id,
       l._pk AS payment_source_id,
       'accounting' AS kind,
       l.line->>'$.LinkedTxn[0].TxnId' AS invoice_source_id,
       i._raw->>'$.DocNumber' AS invoice_number,
       upper(coalesce(l._raw->>'$.CurrencyRef.value', 'USD')) AS currency,
       to_minor(l.line->>'$.Amount', coalesce(l._raw->>'$.CurrencyRef.value', 'USD')) AS amount_minor,
       concat_ws(' ', l._raw->>'$.PaymentRefNum', l._raw->>'$.PrivateNote') AS reference
FROM lines AS l
LEFT JOIN raw_quickbooks.invoices AS i ON i._pk = l.line->>'$.LinkedTxn[0].TxnId'
WHERE l.line->>'$.LinkedTxn[0].TxnType' = 'Invoice'
  AND l._pk NOT IN (SELECT _pk FROM raw_quickbooks.payment_changes WHERE _raw->>'$.status' = 'Deleted')
