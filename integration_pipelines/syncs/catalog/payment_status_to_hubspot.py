"""Payment status from the card payments → properties on the CRM contact (not a scenario of its own).

Sales and support see in HubSpot whether a customer pays by card, without asking finance: `payment_status`
(`refunded`, `paying` within 400 days, else `lapsed`) and `last_payment_date`, from the processors' charges
(`core.payments`, kind `processor`). Keyed by golden customer, upserted by email (HubSpot's own dedupe key), sent
again only when the status or last payment date changes. Scenario 9 (subscription lifecycle → CRM) is
`subscription_status_to_hubspot`, from the processors' subscriptions.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="payment_status_to_hubspot",
    title="Payment status → HubSpot contacts",
    description="Keeps `payment_status` and `last_payment_date` on each paying customer's HubSpot contact.",
    source_sql="""
        WITH paid AS (
            SELECT golden_customer_id,
                   max(paid_at) AS last_paid_at,
                   bool_or(status = 'refunded') AS any_refund
            FROM core.payments
            WHERE kind = 'processor' AND golden_customer_id IS NOT NULL
            GROUP BY golden_customer_id
        )
        SELECT c.golden_id,
               c.email,
               CASE WHEN p.any_refund THEN 'refunded'
                    WHEN p.last_paid_at >= now() - INTERVAL 400 DAY THEN 'paying'
                    ELSE 'lapsed' END AS payment_status,
               strftime(p.last_paid_at, '%Y-%m-%d') AS last_payment_date
        FROM paid AS p
        JOIN core.customers AS c ON c.golden_id = p.golden_customer_id
        WHERE list_contains(c.systems, 'hubspot') AND c.email IS NOT NULL
    """,
    source_assets=(("core", "payments"), ("core", "customers")),
    key="golden_id",
    target="hubspot",
    mode="upsert",
    create_writer="upsert_contacts",
    update_writer="upsert_contacts",
    payload={
        "idProperty": "email",
        "id": "{email}",
        "properties": {"payment_status": "{payment_status}", "last_payment_date": "{last_payment_date}"},
    },
    manual_minutes_per_record=1.5,
)
