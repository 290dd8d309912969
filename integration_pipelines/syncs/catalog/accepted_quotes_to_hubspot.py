"""Scenario 2: accepted quotes → HubSpot deals, exactly once per quote.

When a customer accepts a quotation in Odoo it becomes a sale order (state `sale`, or `done` once locked), and
sales wants it in the CRM pipeline as a won deal. Keyed by the quote (the Odoo order reference, e.g. S00042).

HubSpot has no idempotency key, and a batch create that fails half-way (or whose answer is lost) would create
the same deals again when re-sent. So the deals carry `quote_id`, a custom property with unique values, and
are written with `batch/upsert` by that property: a re-sent batch finds the deal it created and updates it.
The mode is `insert`: a deal is made once; later edits to the deal belong to the sales rep, not to this sync.
"""

from ..spec import SyncSpec

SYNC = SyncSpec(
    name="accepted_quotes_to_hubspot",
    title="Accepted quotes → HubSpot deals",
    description="Creates one closed-won HubSpot deal per accepted Odoo quotation (sale order), keyed by quote.",
    source_sql="""
        SELECT o.order_number AS quote_id,
               o.source_id AS odoo_order_id,
               coalesce(c.company_name, c.full_name, 'Customer') || ' - ' || o.order_number AS dealname,
               CAST(o.total_minor AS DECIMAL(18, 2)) / CASE WHEN cur.minor_exponent = 0 THEN 1 ELSE 100 END
                   AS amount,
               o.currency,
               strftime(o.ordered_at, '%Y-%m-%dT%H:%M:%SZ') AS closedate,
               o.ordered_at
        FROM core.orders AS o
        LEFT JOIN core.customers AS c ON c.golden_id = o.golden_customer_id
        LEFT JOIN ref.currencies AS cur ON cur.currency = o.currency
        WHERE o.source_system = 'odoo' AND o.status IN ('sale', 'done') AND o.order_number IS NOT NULL
    """,
    source_assets=(("core", "orders"), ("core", "customers")),
    key="quote_id",
    start_column="ordered_at",  # quotes accepted before the switch-on were keyed into HubSpot by hand
    target="hubspot",
    mode="insert",
    create_writer="upsert_deals",
    payload={
        "idProperty": "quote_id",
        "id": "{quote_id}",
        "properties": {"quote_id": "{quote_id}", "dealname": "{dealname}", "amount": "{amount}",
                       "deal_currency_code": "{currency}", "dealstage": "closedwon", "pipeline": "default",
                       "closedate": "{closedate}"},
    },
    manual_minutes_per_record=4.0,
)
