"""Scenario 9, the company side: a summary of the subscriptions of a HubSpot company's people, on the company.

Account managers work from the HubSpot company (the account), not from each person in it: they want to see there
whether the account pays, how many subscriptions it holds and when the next one renews. Per HubSpot company with
at least one associated contact of a golden customer who has a subscription (`core.subscriptions` → the customer's
HubSpot contacts through `core.customer_xref` → the companies those contacts are associated with, read by the
`hubspot/contact_companies` stream):

- `subscription_status`: the contact sync's rule (`subscription_rule.py`: active > past_due > trialing > canceled,
  an unknown status passed through so HubSpot refuses it) applied across every subscription of every subscribing
  customer of the company: one paying person makes the account `active` even if a colleague's renewal failed.
- `active_subscriptions`: how many of those subscriptions are `active` or `past_due`: the ones the processor still
  bills and renews (a failed renewal is being retried, it is not lost yet; `subscription_status` already says when
  one is behind). Trials (not paying yet) and canceled ones are not counted; one canceled to end with its period is,
  until it ends. Each subscription counts once, however many of its customer's contacts sit in the company.
- `subscription_renews_on`: the earliest of the renewal days the contact sync shows for those subscriptions (UTC,
  YYYY-MM-DD); empty when none will renew. Not compared with today's date: a period end the processor has not
  rolled forward yet is still the renewal it knows of, and the value changes only when the data does.

The link is the association, never the contact's free-text `company` property or its email domain: a contact
associated with no company changes no company, and a customer whose contacts sit in two companies counts in both.
Updated by the company's HubSpot id (`update_companies`, `batch/update`): the sync never creates a company, and an
update re-sent after a lost answer is harmless. Keyed by company, sent again only when one of the three values
changes. Start: `changed_at`, the latest change to any of the company's subscriptions, as the contact sync's
(`IP_SYNC_SUBSCRIPTION_SUMMARY_TO_HUBSPOT_COMPANIES_START`, `IP_SYNC_START`, else its first run); HubSpot's
association read carries no time, so a contact associated after the start with subscriptions that stood still
since before it fills a company the sync never wrote only with an earlier start (a company already written is kept
up to date). A company that loses its last subscribing contact keeps the values last written (update mode only
writes rows the source has).
"""

from ..spec import SyncSpec
from .subscription_rule import pick_order, renews_on

SYNC = SyncSpec(
    name="subscription_summary_to_hubspot_companies",
    title="Subscription summary → HubSpot companies",
    description="Keeps `subscription_status` (the best of its people's subscriptions), `active_subscriptions` and "
    "`subscription_renews_on` (the earliest renewal) on each HubSpot company whose associated contacts belong to "
    "customers with a Stripe or Square subscription.",
    source_sql=f"""
        WITH contact_company AS (
            -- HubSpot lists a primary association twice (typed and unlabeled): one row per contact and company
            SELECT DISTINCT cc._pk AS hubspot_contact_id, a.company->>'$.id' AS hubspot_company_id
            FROM raw_hubspot.contact_companies AS cc,
                 unnest(json_extract(cc._raw, '$.associations.companies.results[*]')) AS a(company)
        ),
        held AS (
            SELECT DISTINCT c.hubspot_company_id, s.source_system, s.source_id
            FROM core.subscriptions AS s
            JOIN core.customer_xref AS x ON x.golden_id = s.golden_customer_id AND x.source_system = 'hubspot'
            JOIN contact_company AS c ON c.hubspot_contact_id = x.source_id
        ),
        ranked AS (
            SELECT h.hubspot_company_id, s.*,
                   row_number() OVER (PARTITION BY h.hubspot_company_id ORDER BY {pick_order('s')}) AS pick
            FROM held AS h
            JOIN core.subscriptions AS s ON s.source_system = h.source_system AND s.source_id = h.source_id
        )
        SELECT r.hubspot_company_id,
               any_value(r.status) FILTER (WHERE r.pick = 1) AS subscription_status,
               count(*) FILTER (WHERE r.status IN ('active', 'past_due')) AS active_subscriptions,
               min({renews_on('r')}) AS subscription_renews_on,
               max(r.updated_at) AS changed_at
        FROM ranked AS r
        WHERE r.hubspot_company_id IS NOT NULL
        GROUP BY r.hubspot_company_id
    """,
    source_assets=(("core", "subscriptions"), ("core", "customer_xref"), ("hubspot", "contact_companies")),
    key="hubspot_company_id",
    target="hubspot",
    mode="update",
    update_writer="update_companies",
    external_id_column="hubspot_company_id",
    payload={
        "id": "{external_id}",
        "properties": {"subscription_status": "{subscription_status}", "active_subscriptions": "{active_subscriptions}",
                       "subscription_renews_on": "{subscription_renews_on}"},
    },
    start_column="changed_at",
    manual_minutes_per_record=3.0,
)
