-- entity: customer_records
-- requires: raw_netsuite.customers
SELECT 'netsuite' AS source_system,
       _pk AS source_id,
       _raw->>'$.email' AS email,
       _raw->>'$.phone' AS phone,
       _raw->>'$.firstName' AS first_name,
       _raw->>'$.lastName' AS last_name,
       coalesce(nullif(trim(concat_ws(' ', _raw->>'$.firstName', _raw->>'$.lastName')), ''),
                _raw->>'$.companyName') AS full_name,
       _raw->>'$.companyName' AS company_name,
       NULL AS address_line1,
       NULL AS city,
       NULL AS postal_code,
       NULL AS country,
       (_raw->>'$.dateCreated')::TIMESTAMPTZ AS created_at,
       (_raw->>'$.lastModifiedDate')::TIMESTAMPTZ AS updated_at
FROM raw_netsuite.customers
