-- entity: customer_records
-- requires: raw_odoo.partners
-- People only: company partners are accounts, and suppliers are not customers.
SELECT 'odoo' AS source_system, _pk AS source_id,
       nullif(_raw->>'$.email', 'false') AS email, nullif(_raw->>'$.phone', 'false') AS phone,
       NULL AS first_name, NULL AS last_name, _raw->>'$.name' AS full_name,
       nullif(_raw->>'$.commercial_partner_id[1]', 'false') AS company_name,
       nullif(_raw->>'$.street', 'false') AS address_line1, nullif(_raw->>'$.city', 'false') AS city,
       nullif(_raw->>'$.zip', 'false') AS postal_code, NULL AS country,
       (_raw->>'$.create_date')::TIMESTAMP AT TIME ZONE 'UTC' AS created_at,
       (_raw->>'$.write_date')::TIMESTAMP AT TIME ZONE 'UTC' AS updated_at
FROM raw_odoo.partners
WHERE NOT (_raw->>'$.is_company')::BOOLEAN AND coalesce((_raw->>'$.customer_rank')::INT, 0) > 0
