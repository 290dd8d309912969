-- entity: invoices
-- requires: raw_xero.invoices
-- SUBMITTED (awaiting approval) is a draft: not yet a receivable. books_id: the invoice's branding theme, which a
-- group keeping several companies in one Xero organisation can use to tell them apart.
SELECT 'xero' AS source_system, _pk AS source_id, _raw->>'$.InvoiceNumber' AS invoice_number,
       _raw->>'$.Contact.ContactID' AS customer_source_id,
       CASE _raw->>'$.Status' WHEN 'PAID' THEN 'paid' WHEN 'VOIDED' THEN 'void' WHEN 'DELETED' THEN 'void'
            WHEN 'DRAFT' THEN 'draft' WHEN 'SUBMITTED' THEN 'draft' ELSE 'open' END AS status,
       _raw->>'$.CurrencyCode' AS currency,
       to_minor(_raw->>'$.Total', _raw->>'$.CurrencyCode') AS total_minor,
       to_minor(_raw->>'$.AmountDue', _raw->>'$.CurrencyCode') AS balance_minor,
       (_raw->>'$.DateString')::TIMESTAMP AT TIME ZONE 'UTC' AS issued_at,
       (_raw->>'$.DueDateString')::TIMESTAMP AT TIME ZONE 'UTC' AS due_at,
       to_timestamp(CAST(regexp_extract(_raw->>'$.UpdatedDateUTC', '\d+') AS BIGINT) / 1000) AS updated_at,
       _raw->>'$.BrandingThemeID' AS books_id
FROM raw_xero.invoices
WHERE _raw->>'$.Type' = 'ACCREC'
