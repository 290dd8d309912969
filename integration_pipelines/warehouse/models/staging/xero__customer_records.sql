-- entity: customer_records
-- requires: raw_xero.contacts
SELECT 'xero' AS source_system, _pk AS source_id,
       _raw->>'$.EmailAddress' AS email, nullif(_raw->>'$.Phones[0].PhoneNumber', '') AS phone,
       _raw->>'$.FirstName' AS first_name, _raw->>'$.LastName' AS last_name, _raw->>'$.Name' AS full_name,
       NULL AS company_name, nullif(_raw->>'$.Addresses[0].AddressLine1', '') AS address_line1,
       nullif(_raw->>'$.Addresses[0].City', '') AS city, nullif(_raw->>'$.Addresses[0].PostalCode', '') AS postal_code,
       nullif(upper(_raw->>'$.Addresses[0].Country'), '') AS country,
       NULL::TIMESTAMPTZ AS created_at,
       to_timestamp(CAST(regexp_extract(_raw->>'$.UpdatedDateUTC', '\d+') AS BIGINT) / 1000) AS updated_at
FROM raw_xero.contacts
WHERE _raw->>'$.ContactStatus' <> 'ARCHIVED'
