"""Scenario 3: support tickets (Salesforce cases) → support status on the customer's HubSpot contact.

Sales should see, before calling, that the customer has an escalated case open. Per HubSpot contact of a
customer with tickets: `open_tickets` (cases not closed) and `support_status` (`escalated` when any open case
is escalated, `open` when any case is open, else `resolved`). A Salesforce status this mapping does not know
is passed through as it is, so HubSpot's enumeration refuses it and the record shows up in `sync.errors`
rather than being silently mapped to a wrong status.

The contact is found through identity resolution (core.customer_xref: the golden customer's HubSpot contact
ids, every one of them when HubSpot holds duplicates) and updated by its id (`batch/update`): the sync never
creates a contact, so it cannot create a duplicate one, and an update re-sent after a lost answer is harmless.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="ticket_status_to_hubspot",
    title="Support tickets → HubSpot contact support status",
    description="Keeps `open_tickets` and `support_status` on the HubSpot contacts of customers with tickets.",
    source_sql="""
        WITH per_customer AS (
            SELECT golden_customer_id,
                   count(*) FILTER (WHERE status IS DISTINCT FROM 'Closed') AS open_tickets,
                   bool_or(status = 'Escalated') AS escalated,
                   bool_or(status IN ('New', 'Working')) AS open,
                   min(CASE WHEN status NOT IN ('New', 'Working', 'Escalated', 'Closed')
                            THEN lower(replace(status, ' ', '_')) END) AS unmapped
            FROM core.tickets
            WHERE golden_customer_id IS NOT NULL
            GROUP BY golden_customer_id
        )
        SELECT x.source_id AS hubspot_contact_id,
               t.golden_customer_id,
               t.open_tickets,
               CASE WHEN t.unmapped IS NOT NULL THEN t.unmapped
                    WHEN t.escalated THEN 'escalated'
                    WHEN t.open THEN 'open'
                    ELSE 'resolved' END AS support_status
        FROM per_customer AS t
        JOIN core.customer_xref AS x ON x.golden_id = t.golden_customer_id AND x.source_system = 'hubspot'
    """,
    source_assets=(("core", "tickets"), ("core", "customer_xref")),
    key="hubspot_contact_id",
    target="hubspot",
    mode="update",
    update_writer="update_contacts",
    external_id_column="hubspot_contact_id",
    payload={
        "id": "{external_id}",
        "properties": {"open_tickets": "{open_tickets}", "support_status": "{support_status}"},
    },
    manual_minutes_per_record=1.0,
)
