-- entity: tickets
-- requires: raw_salesforce.cases
SELECT 'salesforce' AS source_system, _pk AS source_id, _raw->>'$.ContactId' AS customer_source_id,
       _raw->>'$.Subject' AS subject, _raw->>'$.Status' AS status, _raw->>'$.Priority' AS priority,
       (_raw->>'$.CreatedDate')::TIMESTAMPTZ AS created_at, (_raw->>'$.SystemModstamp')::TIMESTAMPTZ AS updated_at
FROM raw_salesforce.cases
WHERE NOT coalesce((_raw->>'$.IsDeleted')::BOOLEAN, false)
