-- entity: invoices
-- requires: raw_stripe.invoices
SELECT
    'stripe' AS source_system,
    _pk AS source_id,
    coalesce(_raw->>'$.metadata.accounting_number', _raw->>'$.number') AS invoice_number,
    _raw->>'$.customer' AS customer_source_id,
    _raw->>'$.status' AS status,
    upper(_raw->>'$.currency') AS currency,
    (_raw->>'$.total')::BIGINT AS total_minor,
    (_raw->>'$.amount_remaining')::BIGINT AS balance_minor,
    to_timestamp((_raw->>'$.created')::BIGINT) AS issued_at,
    to_timestamp((_raw->>'$.due_date')::BIGINT) AS due_at,
    to_timestamp((_raw->>'$.created')::BIGINT) AS updated_at,
    NULL AS books_id
FROM raw_stripe.invoices
