-- entity: invoices
-- requires: raw_netsuite.invoices
-- optional: raw_netsuite.customers
-- NetSuite invoices (SuiteTalk transactions of type _invoice). books_id is the issuing subsidiary's internalId: the
-- invoice's own `subsidiary` when the account returns it (OneWorld), else its customer's primary subsidiary, which
-- is what NetSuite defaults a transaction's subsidiary to. Currency: the currency record's name when it is an ISO
-- code (as the sandbox and many accounts name them); otherwise NULL, so the FX check reports it, never a guess.
SELECT 'netsuite' AS source_system,
       i._pk AS source_id,
       i._raw->>'$.tranId' AS invoice_number,
       i._raw->>'$.entity.internalId' AS customer_source_id,
       CASE i._raw->>'$.status' WHEN 'Paid In Full' THEN 'paid' WHEN 'Voided' THEN 'void' WHEN 'Rejected' THEN 'void'
            WHEN 'Pending Approval' THEN 'draft' ELSE 'open' END AS status,
       CASE WHEN regexp_full_match(i._raw->>'$.currency.name', '[A-Za-z]{3}')
            THEN upper(i._raw->>'$.currency.name') END AS currency,
       to_minor(i._raw->>'$.total', i._raw->>'$.currency.name') AS total_minor,
       to_minor(i._raw->>'$.amountRemaining', i._raw->>'$.currency.name') AS balance_minor,
       (i._raw->>'$.tranDate')::TIMESTAMPTZ AS issued_at,
       (i._raw->>'$.dueDate')::TIMESTAMPTZ AS due_at,
       (i._raw->>'$.lastModifiedDate')::TIMESTAMPTZ AS updated_at,
       coalesce(i._raw->>'$.subsidiary.internalId', c._raw->>'$.subsidiary.internalId') AS books_id
FROM raw_netsuite.invoices AS i
LEFT JOIN raw_netsuite.customers AS c ON c._pk = i._raw->>'$.entity.internalId'
