-- entity: customer_records
-- requires: raw_square.customers
SELECT 'square' AS source_system, _pk AS source_id,
       _raw->>'$.email_address' AS email, _raw->>'$.phone_number' AS phone,
       _raw->>'$.given_name' AS first_name, _raw->>'$.family_name' AS last_name,
       trim(concat_ws(' ', _raw->>'$.given_name', _raw->>'$.family_name')) AS full_name,
       _raw->>'$.company_name' AS company_name,
       _raw->>'$.address.address_line_1' AS address_line1, _raw->>'$.address.locality' AS city,
       _raw->>'$.address.postal_code' AS postal_code, upper(_raw->>'$.address.country') AS country,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS created_at, (_raw->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_square.customers
