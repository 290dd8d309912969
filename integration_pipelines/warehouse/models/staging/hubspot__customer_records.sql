-- entity: customer_records
-- requires: raw_hubspot.contacts
-- optional: raw_hubspot.archived_contacts
-- A contact deleted in HubSpot (or merged away into another) is archived: the list of live contacts stops
-- showing it, but its row stays in raw_hubspot.contacts. The archived list says which ones are gone, so a deleted
-- customer is not synced back into the CRM.
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
  AND _pk NOT IN (SELECT _pk FROM raw_hubspot.archived_contacts)
