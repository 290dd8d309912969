-- entity: deals
-- requires: raw_hubspot.deals
SELECT
    'hubspot' AS source_system,
    _pk AS source_id,
    _raw->>'$.properties.dealname' AS name,
    -- the deal's contact: HubSpot keeps it as an association (`associations=contacts` on the list read), not as a
    -- property; the connector does not ask for associations yet, so this is null until it does
    coalesce(_raw->>'$.properties.associated_contact_id',
             _raw->>'$.associations.contacts.results[0].id') AS customer_source_id,
    _raw->>'$.properties.dealstage' AS stage,
    _raw->>'$.properties.dealstage' = 'closedwon' AS is_won,
    _raw->>'$.properties.dealstage' IN ('closedwon', 'closedlost') AS is_closed,
    upper(coalesce(_raw->>'$.properties.deal_currency_code', 'USD')) AS currency,
    to_minor(_raw->>'$.properties.amount', coalesce(_raw->>'$.properties.deal_currency_code', 'USD')) AS amount_minor,
    ((_raw->>'$.properties.closedate')::TIMESTAMPTZ)::DATE AS close_date,
    (_raw->>'$.createdAt')::TIMESTAMPTZ AS created_at,
    (_raw->>'$.updatedAt')::TIMESTAMPTZ AS updated_at
FROM raw_hubspot.deals
WHERE NOT coalesce((_raw->>'$.archived')::BOOLEAN, false)
