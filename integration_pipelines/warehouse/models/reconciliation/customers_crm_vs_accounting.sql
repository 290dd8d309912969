-- CRM and accounting disagree about a customer: one golden customer whose CRM email differs from the email
-- the books have (a contact created twice, or an address changed on one side only).
WITH sides AS (
    SELECT x.golden_id, s.category, x.source_system, x.source_id, lower(c.email) AS email
    FROM core.customer_xref x
    JOIN staging.customer_records c USING (source_system, source_id)
    JOIN ref.systems s ON s.name = x.source_system
    WHERE s.category IN ('crm', 'accounting') AND c.email IS NOT NULL
)
SELECT 'conflicting_email' AS finding, crm.golden_id,
       crm.source_system AS crm_system, crm.source_id AS crm_id, crm.email AS crm_email,
       acc.source_system AS accounting_system, acc.source_id AS accounting_id, acc.email AS accounting_email
FROM sides crm
JOIN sides acc ON acc.golden_id = crm.golden_id AND acc.category = 'accounting'
WHERE crm.category = 'crm' AND crm.email <> acc.email
ORDER BY crm.golden_id, crm.source_system, crm.source_id
