-- key: source_system, source_id
-- Each refund with the legal entity whose books hold the payment it gives back (core.payments.legal_entity), so a
-- refund is booked where its payment was; 'Unassigned' when the payment is not known (yet).
SELECT r.*, coalesce(p.legal_entity, 'Unassigned') AS legal_entity
FROM staging.refunds AS r
LEFT JOIN core.payments AS p ON p.source_system = r.source_system AND p.source_id = r.payment_source_id
ORDER BY r.source_system, r.source_id
