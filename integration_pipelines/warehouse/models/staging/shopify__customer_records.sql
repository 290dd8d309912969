-- entity: customer_records
-- requires: raw_shopify.customers
SELECT 'shopify' AS source_system, _pk AS source_id,
       _raw->>'$.email' AS email, coalesce(_raw->>'$.phone', _raw->>'$.addresses[0].phone') AS phone,
       _raw->>'$.first_name' AS first_name, _raw->>'$.last_name' AS last_name,
       trim(concat_ws(' ', _raw->>'$.first_name', _raw->>'$.last_name')) AS full_name,
       _raw->>'$.addresses[0].company' AS company_name, _raw->>'$.addresses[0].address1' AS address_line1,
       _raw->>'$.addresses[0].city' AS city, _raw->>'$.addresses[0].zip' AS postal_code,
       upper(_raw->>'$.addresses[0].country_code') AS country,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS created_at, (_raw->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_shopify.customers
