-- entity: customer_records
-- requires: raw_quickbooks.customers
SELECT
    'quickbooks' AS source_system,
    _pk AS source_id,
    _raw->>'$.PrimaryEmailAddr.Address' AS email,
    _raw->>'$.PrimaryPhone.FreeFormNumber' AS phone,
    _raw->>'$.GivenName' AS first_name,
    _raw->>'$.FamilyName' AS last_name,
    _raw->>'$.DisplayName' AS full_name,
    _raw->>'$.CompanyName' AS company_name,
    _raw->>'$.BillAddr.Line1' AS address_line1,
    _raw->>'$.BillAddr.City' AS city,
    _raw->>'$.BillAddr.PostalCode' AS postal_code,
    upper(_raw->>'$.BillAddr.Country') AS country,
    (_raw->>'$.MetaData.CreateTime')::TIMESTAMPTZ AS created_at,
    (_raw->>'$.MetaData.LastUpdatedTime')::TIMESTAMPTZ AS updated_at
FROM raw_quickbooks.customers
