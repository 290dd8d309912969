-- key: source_system, source_id
-- Every CRM deal with its golden customer and the legal entity that issues its invoice: the customer's entity
-- (core.customer_entities: its country matched to the legal-entities file, else the group's first entity), as
-- neither CRM read here carries a deal-level entity field (the Salesforce Opportunity and the HubSpot deal have no
-- entity/subsidiary field, so staging.deals has no such column). A deal without a golden customer gets the group's
-- first entity (it is never invoiced: S4 needs the customer).
-- books_system: the entity's books of record (core.customer_entities.books_system): where S4 creates the deal's
-- customer and invoice.
-- same_deal_as: the key (`source_system:source_id`) of the record this won deal duplicates in another CRM, null for
-- the first record of a deal (and for every deal kept in one CRM only). A group that runs two CRMs (a migration, a
-- subsidiary on HubSpot while the parent runs Salesforce) often holds the same won deal in both; it is one sale
-- and must be invoiced once. Two won deals in different CRMs are the same deal when they have the same golden
-- customer, currency, amount and close date; when one CRM holds several such deals, the n-th oldest of each CRM
-- pair up, so a customer with two identical sales in Salesforce and one in HubSpot is invoiced twice, not three
-- times and not once. The earliest created record of a pair is the deal; the other names it here.
WITH first_entity AS (
    SELECT e.legal_entity, e.books_system
    FROM ref.legal_entities AS e
    JOIN ref.entity_books AS b ON b.legal_entity = e.legal_entity
    ORDER BY b.precedence
    LIMIT 1
),
deals AS (
    SELECT d.*, x.golden_id AS golden_customer_id,
           coalesce(ce.legal_entity, (SELECT legal_entity FROM first_entity)) AS legal_entity,
           coalesce(ce.books_system, (SELECT books_system FROM first_entity)) AS books_system
    FROM staging.deals AS d
    LEFT JOIN core.customer_xref AS x ON x.source_system = d.source_system AND x.source_id = d.customer_source_id
    LEFT JOIN core.customer_entities AS ce ON ce.golden_id = x.golden_id
),
won AS (
    SELECT source_system, source_id, created_at, golden_customer_id, currency, amount_minor, close_date,
           row_number() OVER (PARTITION BY golden_customer_id, currency, amount_minor, close_date, source_system
                              ORDER BY created_at, source_id) AS nth
    FROM deals
    WHERE is_won AND golden_customer_id IS NOT NULL AND amount_minor IS NOT NULL AND close_date IS NOT NULL
),
twins AS (
    SELECT source_system, source_id,
           first_value(source_system || ':' || source_id) OVER (
               PARTITION BY golden_customer_id, currency, amount_minor, close_date, nth
               ORDER BY created_at, source_system, source_id) AS first_key
    FROM won
)
SELECT deals.*,
       nullif(t.first_key, deals.source_system || ':' || deals.source_id) AS same_deal_as
FROM deals
LEFT JOIN twins AS t ON t.source_system = deals.source_system AND t.source_id = deals.source_id
ORDER BY deals.source_system, deals.source_id
