"""Scenario 13's routing: which ERP receives an approved procurement-portal purchase request (no sync here).

Purchase orders go to the ERP that holds the vendor: a request for a vendor the group buys from through NetSuite
becomes a NetSuite purchase order, one for a vendor kept in SAP an SAP one, and so on. The route is configuration,
read when each sync plans:

- `IP_PURCHASE_ORDERS_ROUTES`: `supplier=erp` pairs separated by `;`, the supplier as the procurement portal names
  it (case does not matter), e.g. `Northwind Supplies=netsuite;Fabrikam Parts=sap;Contoso Components=legacy_erp`;
- `IP_PURCHASE_ORDERS_TARGET`: the ERP for every supplier not listed (default `odoo`, as before routing existed).

An ERP name that is none of `odoo`, `netsuite`, `sap`, `legacy_erp` (or a supplier listed twice) stops the sync's
plan with an error naming the variable. Each ERP has its own sync (`purchase_requests_to_<erp>`), whose source is
`routed_requests(<erp>)`: the approved requests routed to that ERP, so one request goes to exactly one of them.
A request another `purchase_requests_to_*` sync has already acted on (any ledger row but an operator's skip) stays
with that ERP even if the route changes later: it is left out of the others, never ordered twice in two ERPs.
"""

from __future__ import annotations

from ..spec import SyncSetting

ERPS = ("odoo", "netsuite", "sap", "legacy_erp")
ROUTES_ENV = "IP_PURCHASE_ORDERS_ROUTES"
TARGET_ENV = "IP_PURCHASE_ORDERS_TARGET"

ROUTE_SETTINGS = {
    "purchase_orders_routes": SyncSetting(
        env=ROUTES_ENV, description="`supplier=erp` pairs separated by `;` (supplier as the procurement portal "
        f"names it; erp one of {', '.join(ERPS)})"),
    "purchase_orders_target": SyncSetting(
        env=TARGET_ENV, default="odoo", description="the ERP for suppliers IP_PURCHASE_ORDERS_ROUTES does not list"),
}

_ERP_LIST = ", ".join(f"'{e}'" for e in ERPS)


def routed_requests(erp: str) -> str:
    """SQL CTEs ending in `requests`: the approved portal requests routed to `erp`, one row each (request_id,
    supplier, sku, quantity, needed_by, estimated_total_minor, currency, approved_at)."""
    if erp not in ERPS:
        raise ValueError(f"unknown ERP {erp!r}; one of {ERPS}")
    return f"""
        route_entries AS (
            SELECT trim(entry) AS entry
            FROM (SELECT unnest(string_split(coalesce(
                      (SELECT value FROM _sync_settings WHERE name = 'purchase_orders_routes'), ''), ';')) AS entry)
            WHERE trim(entry) <> ''
        ),
        named_routes AS (
            SELECT lower(trim(split_part(entry, '=', 1))) AS supplier_key,
                   CASE WHEN lower(trim(split_part(entry, '=', 2))) IN ({_ERP_LIST})
                        THEN lower(trim(split_part(entry, '=', 2)))
                        ELSE error('{ROUTES_ENV}: ' || entry || ' does not name an ERP as supplier=erp; ERPs: '
                                   || '{", ".join(ERPS)}') END AS erp
            FROM route_entries
        ),
        routes AS (
            SELECT supplier_key,
                   CASE WHEN count(*) OVER (PARTITION BY supplier_key) = 1 THEN erp
                        ELSE error('{ROUTES_ENV} lists the supplier ' || supplier_key || ' more than once') END AS erp
            FROM named_routes
        ),
        default_route AS (
            SELECT CASE WHEN lower(trim(value)) IN ({_ERP_LIST}) THEN lower(trim(value))
                        ELSE error('{TARGET_ENV}=' || value || ' is not an ERP; one of {", ".join(ERPS)}') END AS erp
            FROM _sync_settings WHERE name = 'purchase_orders_target'
        ),
        approved AS (
            SELECT _pk AS request_id, _raw->>'$.supplier' AS supplier, _raw->>'$.sku' AS sku,
                   (_raw->>'$.quantity')::DOUBLE AS quantity, _raw->>'$.needed_by' AS needed_by,
                   (_raw->>'$.estimated_total_minor')::DOUBLE AS estimated_total_minor,
                   coalesce(_raw->>'$.currency', 'USD') AS currency,
                   strftime((_raw->>'$.updated_at')::TIMESTAMPTZ AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S')
                       AS approved_at
            FROM raw_procurement_portal.purchase_requests
            WHERE _raw->>'$.status' = 'approved'
        ),
        requests AS (
            SELECT a.*
            FROM approved AS a
            LEFT JOIN routes AS r ON r.supplier_key = lower(trim(a.supplier))
            WHERE coalesce(r.erp, (SELECT erp FROM default_route), 'odoo') = '{erp}'
              AND NOT EXISTS (SELECT 1 FROM sync.ledger AS l
                              WHERE l.sync_name LIKE 'purchase\\_requests\\_to\\_%' ESCAPE '\\'
                                AND l.sync_name <> 'purchase_requests_to_{erp}'
                                AND l.record_key = a.request_id AND l.status <> 'skipped')
        )"""
