-- entity: customer_records
-- requires: raw_salesforce.contacts
SELECT 'salesforce' AS source_system, _pk AS source_id,
       _raw->>'$.Email' AS email, _raw->>'$.Phone' AS phone,
       _raw->>'$.FirstName' AS first_name, _raw->>'$.LastName' AS last_name, _raw->>'$.Name' AS full_name,
       NULL AS company_name, _raw->>'$.MailingStreet' AS address_line1, _raw->>'$.MailingCity' AS city,
       _raw->>'$.MailingPostalCode' AS postal_code, upper(_raw->>'$.MailingCountry') AS country,
       (_raw->>'$.CreatedDate')::TIMESTAMPTZ AS created_at, (_raw->>'$.SystemModstamp')::TIMESTAMPTZ AS updated_at
FROM raw_salesforce.contacts
WHERE NOT coalesce((_raw->>'$.IsDeleted')::BOOLEAN, false)
