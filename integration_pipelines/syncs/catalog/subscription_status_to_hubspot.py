"""Scenario 9: subscription lifecycle at the payment processors (Stripe, Square) → properties of the CRM contact.

Sales and support see in HubSpot whether a customer's subscription is on trial, paid up, behind on payment or
canceled, which plan it is and when it renews, without opening Stripe or Square. Per HubSpot contact of a golden
customer who has a subscription (`core.subscriptions`, resolved to the contact through `core.customer_xref`, every
contact when HubSpot holds the customer twice):

- `subscription_status`: the status of the customer's most relevant subscription, chosen by the rule active >
  past_due > trialing > canceled (a customer who canceled an old subscription and took out a new one is `active`;
  one whose only subscription failed a renewal is `past_due` even if an older one was canceled), the latest created
  first among equals. The statuses are already one vocabulary in `core.subscriptions` (how Stripe's and Square's own
  words map is said in `warehouse/models/contracts.yaml`); a status the mapping does not know is passed through so
  HubSpot's enumeration refuses it into `sync.errors` instead of it being shown as something it is not.
- `subscription_plan`: that subscription's plan name (Stripe price nickname, Square plan variation name).
- `subscription_renews_on`: the day (UTC, YYYY-MM-DD) its current period or trial ends and it renews; empty when it
  will not renew (canceled, or canceled to end with its period).

Updated by the contact's HubSpot id (`batch/update`): the sync never creates a contact, so a subscriber HubSpot does
not know is not pushed into the CRM, and an update re-sent after a lost answer is harmless. Keyed by contact, sent
again only when one of the three values changes. Start: `changed_at`, the latest change to any of the customer's
subscriptions (the time of the processor's event, or when a read first saw the change): switching the sync on
changes nothing for customers whose subscriptions stood still since before its start
(`IP_SYNC_SUBSCRIPTION_STATUS_TO_HUBSPOT_START`, `IP_SYNC_START`, else its first run); set an earlier start to fill
the properties for every subscriber once.

The rule (which subscription speaks for a customer, when it renews) is `subscription_rule.py`, shared with the
company summary (`subscription_summary_to_hubspot_companies.py`), which writes the same rule rolled up over every
subscribing customer of a HubSpot company onto the company.
"""

from ..spec import SyncSpec
from .subscription_rule import pick_order, renews_on

SYNC = SyncSpec(
    name="subscription_status_to_hubspot",
    title="Subscription status → HubSpot contacts",
    description="Keeps `subscription_status` (trialing, active, past_due, canceled), `subscription_plan` and "
    "`subscription_renews_on` on the HubSpot contacts of customers with a Stripe or Square subscription.",
    source_sql=f"""
        WITH ranked AS (
            SELECT s.*,
                   row_number() OVER (PARTITION BY s.golden_customer_id ORDER BY {pick_order('s')}) AS pick,
                   max(s.updated_at) OVER (PARTITION BY s.golden_customer_id) AS changed_at
            FROM core.subscriptions AS s
            WHERE s.golden_customer_id IS NOT NULL
        )
        SELECT x.source_id AS hubspot_contact_id,
               r.golden_customer_id,
               r.status AS subscription_status,
               r.plan AS subscription_plan,
               {renews_on('r')} AS subscription_renews_on,
               r.changed_at
        FROM ranked AS r
        JOIN core.customer_xref AS x ON x.golden_id = r.golden_customer_id AND x.source_system = 'hubspot'
        WHERE r.pick = 1
    """,
    source_assets=(("core", "subscriptions"), ("core", "customer_xref")),
    key="hubspot_contact_id",
    target="hubspot",
    mode="update",
    update_writer="update_contacts",
    external_id_column="hubspot_contact_id",
    payload={
        "id": "{external_id}",
        "properties": {"subscription_status": "{subscription_status}", "subscription_plan": "{subscription_plan}",
                       "subscription_renews_on": "{subscription_renews_on}"},
    },
    start_column="changed_at",
    manual_minutes_per_record=1.5,
)
