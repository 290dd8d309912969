"""Scenario 12: ERP stock levels → the storefronts' stock (Shopify and Square), mapped by SKU.

Today someone copies the ERP's on-hand numbers into each shop after every delivery, or the shops oversell. Each
storefront gets the absolute number, so replaying a write is harmless: Shopify `inventory_levels/set` (no
idempotency key, but absolute), Square `PHYSICAL_COUNT` changes in batches with an `idempotency_key`. Keyed by
storefront and SKU; only SKUs whose quantity changed since the last push are sent (the ledger's row hash), and a
SKU the storefront does not sell is skipped by the join.

Which ERP's count: one ERP of record per SKU, configured, never a sum or a guess across ERPs. A group often runs
several ERPs that all know a SKU (here Odoo, SAP, NetSuite and the legacy ERP each hold every product, with their
own counts), so "the ERP's stock" means nothing until someone says which ERP keeps the physical stock a shop sells
from:

- `IP_STOCK_ERP` (default `odoo`): the ERP of record for every SKU that no route names;
- `IP_STOCK_ROUTES`: `SKU=erp` entries separated by `;` for the SKUs kept elsewhere, e.g.
  `CABLE=legacy_erp;GADGET=netsuite`.

Either value may name the locations that count, `erp:location+location` (Odoo `WH/Stock`, SAP
`plant/storage location` such as `1010/101A`, the legacy ERP's warehouses `MAIN`, `EAST`, `WEST`; NetSuite reports
one total per item and has no location to name); without them every location of that ERP counts, added up (the
shop sells from all of them). `none` instead of an ERP sends nothing for the SKU (the shop keeps its own count).
The SKU is matched exactly (case matters, as in Shopify and Square).

What is refused instead of guessed, per SKU (the row waits, `waiting_reason` says why, nothing is sent):
- the ERP of record holds no stock record for the SKU (at the named locations), although another ERP may: the
  storefront keeps its count until the route is fixed; before, SAP's count was taken silently whenever Odoo
  lacked a SKU, so a SKU's stock could jump from one ERP's count to another's when an Odoo product was archived,
  renamed or simply not read yet;
- the ERP of record holds the SKU in more than one record at one location (two Odoo products with one internal
  reference, say): which one is right is not known, so they are not added up (before, Odoo's were summed);
- the ERP of record reports no quantity for it.
A route that names no ERP this sync knows, or a SKU routed twice, stops the sync with an error naming the variable.

For the shipped world the result is what it was (Odoo holds every physical SKU, so Odoo's count is sent); what
changed is that NetSuite and the legacy ERP can be the ERP of record, that SAP needs a route like the others, and
that ambiguous SKUs wait instead of being summed.
"""

from ..spec import SyncSetting, SyncSpec

ERPS = ("odoo", "sap", "netsuite", "legacy_erp")
ERP_ENV = "IP_STOCK_ERP"
ROUTES_ENV = "IP_STOCK_ROUTES"

SETTINGS = {
    "stock_erp": SyncSetting(
        env=ERP_ENV, default="odoo",
        description=f"the ERP of record for stock of every SKU IP_STOCK_ROUTES does not name: one of "
        f"{', '.join(ERPS)}, optionally with the locations that count (`legacy_erp:MAIN+EAST`), or `none`"),
    "stock_routes": SyncSetting(
        env=ROUTES_ENV, description="`SKU=erp[:location+location]` entries separated by `;`: the SKUs whose stock "
        "an ERP other than IP_STOCK_ERP keeps (`none`: not synced)"),
}

_KNOWN = ", ".join(f"'{e}'" for e in (*ERPS, "none"))

#: One row per SKU some ERP holds or a route names: its ERP of record, that ERP's on-hand quantity (null when the
#: SKU must wait) and `waiting_reason`.
ERP_STOCK = f"""
    WITH route_entries AS (
        SELECT trim(entry) AS entry
        FROM (SELECT unnest(string_split(coalesce(
                  (SELECT value FROM _sync_settings WHERE name = 'stock_routes'), ''), ';')) AS entry)
        WHERE trim(entry) <> ''
    ),
    sources AS (  -- the default (sku NULL) and each route: which ERP and locations, and where that was said
        SELECT NULL::VARCHAR AS sku, trim(value) AS source, '{ERP_ENV}=' || value AS said
        FROM _sync_settings WHERE name = 'stock_erp'
        UNION ALL
        SELECT CASE WHEN strpos(entry, '=') > 1 THEN trim(split_part(entry, '=', 1))
                    ELSE error('{ROUTES_ENV}: "' || entry || '" is not SKU=erp') END,
               trim(substr(entry, strpos(entry, '=') + 1)), '{ROUTES_ENV}: ' || entry
        FROM route_entries
    ),
    parsed AS (
        SELECT sku, said,
               lower(trim(CASE WHEN strpos(source, ':') > 0 THEN substr(source, 1, strpos(source, ':') - 1)
                               ELSE source END)) AS erp,
               CASE WHEN strpos(source, ':') > 0
                    THEN list_transform(string_split(substr(source, strpos(source, ':') + 1), '+'), lambda x: trim(x))
               END AS locations
        FROM sources
    ),
    checked AS (
        SELECT sku,
               CASE WHEN erp IN ({_KNOWN}) THEN erp
                    ELSE error(said || ': "' || erp || '" is not an ERP of record; one of '
                               || '{", ".join((*ERPS, "none"))}') END AS erp,
               CASE WHEN locations IS NULL OR NOT list_contains(locations, '') THEN locations
                    ELSE error(said || ': a location is empty (locations are separated by +)') END AS locations,
               CASE WHEN sku IS NULL OR count(*) OVER (PARTITION BY sku) = 1 THEN true
                    ELSE error('{ROUTES_ENV} routes the SKU ' || sku || ' more than once') END AS once
        FROM parsed
    ),
    erp_rows AS (
        SELECT * FROM core.inventory WHERE source_category = 'erp' AND sku IS NOT NULL
    ),
    skus AS (
        SELECT sku FROM erp_rows UNION SELECT sku FROM checked WHERE sku IS NOT NULL
    ),
    choice AS (
        SELECT s.sku, coalesce(r.erp, d.erp) AS erp,
               CASE WHEN r.sku IS NOT NULL THEN r.locations ELSE d.locations END AS locations
        FROM skus AS s
        LEFT JOIN checked AS r ON r.sku = s.sku AND r.once
        CROSS JOIN (SELECT erp, locations FROM checked WHERE sku IS NULL) AS d
    ),
    held AS (  -- the ERP of record's records of the SKU, per location it counts
        SELECT c.sku, i.location, count(*) AS records, count(i.quantity) AS known, sum(i.quantity) AS quantity,
               max(i.updated_at) AS updated_at
        FROM choice AS c
        JOIN erp_rows AS i ON i.source_system = c.erp AND i.sku = c.sku
                          AND (c.locations IS NULL OR list_contains(c.locations, i.location))
        GROUP BY c.sku, i.location
    ),
    per_sku AS (
        SELECT sku, sum(quantity) AS quantity, bool_and(known = records) AS all_known, max(updated_at) AS updated_at,
               string_agg(coalesce(location, 'its item total') || ' (' || records || ' records)', ', '
                          ORDER BY location) FILTER (WHERE records > 1) AS duplicated
        FROM held GROUP BY sku
    ),
    holders AS (
        SELECT sku, string_agg(DISTINCT source_system, ', ' ORDER BY source_system) AS erps FROM erp_rows GROUP BY sku
    )
    SELECT c.sku, c.erp AS erp_of_record,
           CASE WHEN p.duplicated IS NULL AND p.all_known THEN CAST(round(p.quantity) AS BIGINT) END AS quantity,
           p.updated_at,
           CASE WHEN p.sku IS NULL
                THEN c.erp || ' (the ERP of record) holds no stock record for ' || c.sku
                     || coalesce(' at ' || array_to_string(c.locations, '+'), '')
                     || coalesce(' (held by ' || h.erps || ')', '')
                     || ': set its ERP in {ROUTES_ENV} (' || c.sku || '=erp, or ' || c.sku || '=none)'
                WHEN p.duplicated IS NOT NULL
                THEN c.erp || ' holds ' || c.sku || ' more than once at ' || p.duplicated
                     || ': which count is right is not known, so none is sent (merge the duplicates in '
                     || c.erp || ', or name the location that counts in {ROUTES_ENV})'
                WHEN NOT p.all_known
                THEN c.erp || ' reports no quantity for ' || c.sku
           END AS waiting_reason
    FROM choice AS c
    LEFT JOIN per_sku AS p ON p.sku = c.sku
    LEFT JOIN holders AS h ON h.sku = c.sku
    WHERE c.erp <> 'none'
"""

SYNCS = [
    SyncSpec(
        name="inventory_to_shopify",
        title="ERP stock → Shopify inventory levels",
        description="Sets each Shopify variant's available quantity to its ERP of record's on-hand stock, by SKU "
                    "(IP_STOCK_ERP, IP_STOCK_ROUTES); an ambiguous SKU waits (waiting_reason).",
        source_sql=f"""
            WITH erp_stock AS ({ERP_STOCK})
            SELECT 'shopify:' || s.sku AS stock_key,
                   s.sku,
                   CAST(regexp_extract(s.source_id, 'inventory_item_id=([0-9]+)', 1) AS BIGINT) AS inventory_item_id,
                   CAST(s.location AS BIGINT) AS location_id,
                   e.quantity, e.erp_of_record, e.waiting_reason
            FROM core.inventory AS s
            JOIN erp_stock AS e ON e.sku = s.sku
            WHERE s.source_system = 'shopify' AND s.sku IS NOT NULL
        """,
        source_assets=(("core", "inventory"),),
        key="stock_key",
        target="shopify",
        mode="upsert",
        create_writer="set_inventory_levels",
        update_writer="set_inventory_levels",
        required_columns=("inventory_item_id", "location_id", "quantity"),
        payload={"location_id": "{location_id}", "inventory_item_id": "{inventory_item_id}",
                 "available": "{quantity}"},
        settings=SETTINGS,
        manual_minutes_per_record=1.0,
    ),
    SyncSpec(
        name="inventory_to_square",
        title="ERP stock → Square inventory counts",
        description="Records each SKU's ERP of record's on-hand stock as a Square PHYSICAL_COUNT per item variation "
                    "(IP_STOCK_ERP, IP_STOCK_ROUTES); an ambiguous SKU waits (waiting_reason).",
        source_sql=f"""
            WITH erp_stock AS ({ERP_STOCK})
            SELECT 'square:' || s.sku AS stock_key,
                   s.sku,
                   s.source_id AS catalog_object_id,
                   s.location AS location_id,
                   CAST(e.quantity AS VARCHAR) AS quantity,
                   strftime(coalesce(e.updated_at, date_trunc('day', now())) AT TIME ZONE 'UTC',
                            '%Y-%m-%dT%H:%M:%SZ') AS occurred_at,
                   e.erp_of_record, e.waiting_reason
            FROM core.inventory AS s
            JOIN erp_stock AS e ON e.sku = s.sku
            WHERE s.source_system = 'square' AND s.sku IS NOT NULL
        """,
        source_assets=(("core", "inventory"),),
        key="stock_key",
        target="square",
        mode="upsert",
        create_writer="inventory_changes",
        update_writer="inventory_changes",
        required_columns=("catalog_object_id", "location_id", "quantity"),
        payload={
            "type": "PHYSICAL_COUNT",
            "physical_count": {"catalog_object_id": "{catalog_object_id}", "location_id": "{location_id}",
                               "state": "IN_STOCK", "quantity": "{quantity}", "occurred_at": "{occurred_at}"},
        },
        settings=SETTINGS,
        manual_minutes_per_record=1.0,
    ),
]
