-- entity: deals
-- requires: raw_salesforce.opportunities
SELECT 'salesforce' AS source_system, _pk AS source_id, _raw->>'$.Name' AS name,
       _raw->>'$.ContactId' AS customer_source_id, _raw->>'$.StageName' AS stage,
       (_raw->>'$.IsWon')::BOOLEAN AS is_won, (_raw->>'$.IsClosed')::BOOLEAN AS is_closed,
       coalesce(_raw->>'$.CurrencyIsoCode', 'USD') AS currency,
       to_minor(_raw->>'$.Amount', coalesce(_raw->>'$.CurrencyIsoCode', 'USD')) AS amount_minor,
       (_raw->>'$.CloseDate')::DATE AS close_date,
       (_raw->>'$.CreatedDate')::TIMESTAMPTZ AS created_at, (_raw->>'$.SystemModstamp')::TIMESTAMPTZ AS updated_at
FROM raw_salesforce.opportunities
WHERE NOT coalesce((_raw->>'$.IsDeleted')::BOOLEAN, false)
