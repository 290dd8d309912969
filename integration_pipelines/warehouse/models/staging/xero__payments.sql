-- entity: payments
-- requires: raw_xero.payments
SELECT 'xero' AS source_system, _pk AS source_id, 'accounting' AS kind,
       _raw->>'$.Invoice.Contact.ContactID' AS customer_source_id,
       _raw->>'$.Invoice.InvoiceID' AS invoice_source_id, _raw->>'$.Invoice.InvoiceNumber' AS invoice_number,
       CASE WHEN _raw->>'$.Status' = 'DELETED' THEN 'failed' ELSE 'succeeded' END AS status,
       _raw->>'$.Invoice.CurrencyCode' AS currency,
       to_minor(_raw->>'$.Amount', _raw->>'$.Invoice.CurrencyCode') AS amount_minor,
       NULL::BIGINT AS fee_minor, 0::BIGINT AS refunded_minor,
       to_timestamp(CAST(regexp_extract(_raw->>'$.Date', '\d+') AS BIGINT) / 1000) AS paid_at
FROM raw_xero.payments
WHERE _raw->>'$.Status' <> 'DELETED'
  -- money the company pays out (a bill's payment, e.g. an expense reimbursement) is no customer's payment
  AND coalesce(_raw->>'$.PaymentType', '') NOT IN ('ACCPAYPAYMENT', 'APCREDITPAYMENT', 'APOVERPAYMENTPAYMENT',
                                                  'APPREPAYMENTPAYMENT')
