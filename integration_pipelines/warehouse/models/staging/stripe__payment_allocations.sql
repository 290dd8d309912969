-- entity: payment_allocations
-- requires: raw_stripe.charges
-- A charge pays the accounting invoice(s) named in its metadata: `accounting_invoices` (comma-separated, one charge
-- for several invoices) or `accounting_invoice`; a charge for several invoices is not split here (amount null):
-- the core model applies it to each invoice's total. A charge without either pays its Stripe invoice, if any.
WITH named AS (
    SELECT _pk, _raw, string_split(coalesce(nullif(_raw->>'$.metadata.accounting_invoices', ''),
                                            nullif(_raw->>'$.metadata.accounting_invoice', ''), ''), ',') AS numbers
    FROM raw_stripe.charges
),
numbered AS (
    SELECT _pk, _raw, numbers, generate_subscripts(numbers, 1) AS position FROM named
)
SELECT 'stripe' AS source_system,
       _pk || ':' || position AS source_id,
       _pk AS payment_source_id,
       'processor' AS kind,
       CASE WHEN position = 1 THEN _raw->>'$.invoice' END AS invoice_source_id,
       nullif(trim(numbers[position]), '') AS invoice_number,
       upper(_raw->>'$.currency') AS currency,
       CASE WHEN len(list_filter(numbers, lambda n: trim(n) <> '')) <= 1 THEN (_raw->>'$.amount')::BIGINT END
           AS amount_minor,
       _raw->>'$.description' AS reference
FROM numbered
WHERE position = 1 OR trim(numbers[position]) <> ''
