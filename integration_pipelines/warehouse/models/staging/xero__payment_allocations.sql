-- entity: payment_allocations
-- requires: raw_xero.payments
-- A Xero payment is applied to exactly one invoice.
SELECT 'xero' AS source_system, _pk || ':1' AS source_id, _pk AS payment_source_id, 'accounting' AS kind,
       _raw->>'$.Invoice.InvoiceID' AS invoice_source_id, _raw->>'$.Invoice.InvoiceNumber' AS invoice_number,
       _raw->>'$.Invoice.CurrencyCode' AS currency,
       to_minor(_raw->>'$.Amount', _raw->>'$.Invoice.CurrencyCode') AS amount_minor,
       _raw->>'$.Reference' AS reference
FROM raw_xero.payments
WHERE _raw->>'$.Status' <> 'DELETED'
  -- money the company pays out (a bill's payment, e.g. an expense reimbursement) is no customer's payment
  AND coalesce(_raw->>'$.PaymentType', '') NOT IN ('ACCPAYPAYMENT', 'APCREDITPAYMENT', 'APOVERPAYMENTPAYMENT',
                                                  'APPREPAYMENTPAYMENT')
