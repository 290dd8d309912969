-- entity: customer_records
-- requires: raw_stripe.customers
SELECT
    'stripe' AS source_system,
    _pk AS source_id,
    _raw->>'$.email' AS email,
    _raw->>'$.phone' AS phone,
    NULL AS first_name,
    NULL AS last_name,
    _raw->>'$.name' AS full_name,
    _raw->>'$.metadata.company' AS company_name,
    _raw->>'$.address.line1' AS address_line1,
    _raw->>'$.address.city' AS city,
    _raw->>'$.address.postal_code' AS postal_code,
    upper(_raw->>'$.address.country') AS country,
    to_timestamp((_raw->>'$.created')::BIGINT) AS created_at,
    to_timestamp((_raw->>'$.created')::BIGINT) AS updated_at
FROM raw_stripe.customers
