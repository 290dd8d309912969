-- entity: customer_records
-- requires: raw_hubspot.contacts
SELECT
    'hubspot' AS source_system,
    _pk AS source_id,
    _raw->>'$.properties.email' AS email,
    _raw->>'$.properties.phone' AS phone,
    _raw->>'$.properties.firstname' AS first_name,
    _raw->>'$.properties.lastname' AS last_name,
    trim(concat_ws(' ', _raw->>'$.properties.firstname', _raw->>'$.properties.lastname')) AS full_name,
    _raw->>'$.properties.company' AS company_name,
    _raw->>'$.properties.address' AS address_line1,
    _raw->>'$.properties.city' AS city,
    _raw->>'$.properties.zip' AS postal_code,
    upper(_raw->>'$.properties.country') AS country,
    (_raw->>'$.createdAt')::TIMESTAMPTZ AS created_at,
    (_raw->>'$.updatedAt')::TIMESTAMPTZ AS updated_at
FROM raw_hubspot.contacts
WHERE NOT coalesce((_raw->>'$.archived')::BOOLEAN, false)
