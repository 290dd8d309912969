-- entity: deals
-- requires: raw_hubspot.deals
-- optional: raw_hubspot.deal_contacts
-- The deal's contact is a HubSpot association, not a property: raw_hubspot.deal_contacts holds each deal's
-- associated contact ids (the list read with `associations=contacts`; the search read of changed deals returns no
-- associations). A deal with several contacts is invoiced to the first one HubSpot lists (its lowest id).
WITH contact_of AS (
    SELECT _pk AS deal_id,
           (SELECT min(TRY_CAST(c->>'$.id' AS BIGINT))
            FROM unnest(json_extract(_raw, '$.associations.contacts.results[*]')) AS t(c)) AS contact_id
    FROM raw_hubspot.deal_contacts
)
SELECT
    'hubspot' AS source_system,
    _pk AS source_id,
    _raw->>'$.properties.dealname' AS name,
    CAST(contact_of.contact_id AS VARCHAR) AS customer_source_id,
    _raw->>'$.properties.dealstage' AS stage,
    _raw->>'$.properties.dealstage' = 'closedwon' AS is_won,
    _raw->>'$.properties.dealstage' IN ('closedwon', 'closedlost') AS is_closed,
    upper(coalesce(_raw->>'$.properties.deal_currency_code', 'USD')) AS currency,
    to_minor(_raw->>'$.properties.amount', coalesce(_raw->>'$.properties.deal_currency_code', 'USD')) AS amount_minor,
    ((_raw->>'$.properties.closedate')::TIMESTAMPTZ)::DATE AS close_date,
    (_raw->>'$.createdAt')::TIMESTAMPTZ AS created_at,
    (_raw->>'$.updatedAt')::TIMESTAMPTZ AS updated_at
FROM raw_hubspot.deals
LEFT JOIN contact_of ON contact_of.deal_id = raw_hubspot.deals._pk
WHERE NOT coalesce((_raw->>'$.archived')::BOOLEAN, false)
