"""Shopify (ecommerce), Admin REST API 2025-10: `X-Shopify-Access-Token`, one host per shop
(`https://{shop}.myshopify.com`), and cursor pagination through the `Link` header.

Facts the spec leans on:
- Pagination is `Link: <…?limit=N&page_info=…>; rel="next"` with an opaque `page_info`. A request carrying
  `page_info` may carry nothing else but `limit` and `fields` (Shopify answers 400 `page_info: Invalid value.`
  otherwise), because the filters of the first request are sealed inside the token. That is why
  `LinkHeaderPaginator` replaces the whole URL instead of adding a parameter to the stream's own request.
- `limit` is 1..250 (default 50); the spec asks for the maximum so a read spends as few calls as possible.
- Every list filters by `updated_at_min` (inclusive): once a stream has a cursor, later reads ask only for what
  changed since, minus a lookback for clock skew and for writes committed while the last read was running.
  Timestamps come back in the shop's own time zone with an offset (`2026-03-08T05:12:33-05:00`); the engine
  parses the offset, and the cursor is sent back as UTC with an explicit `+00:00`.
- Orders are daily-partitioned on `created_at_min`/`created_at_max` (the order's sale day, which is how
  accounting reconciles them), and within a partition the change filter finds refunds, fulfilments and edits.
  A change to an order is seen when its sale day's partition runs again; a nightly job that re-runs a trailing
  window of sale days (or a `full_refresh`) catches late changes to older orders. `status=any` is required:
  without it Shopify lists only *open* orders and silently skips closed (fulfilled) and cancelled ones.
- Customers, products and inventory levels are master data: unpartitioned, one cursor per stream, so a change
  to any record is found whatever day it was created.
- Inventory levels must be asked for by location (`location_ids`) or item. The spec reads the shop's primary
  location once per client from `GET /shop.json` (`shop.primary_location_id`), so no location id has to be
  configured. A level's identity is the pair (inventory item, location); the engine keys on one field, and
  Shopify's own `admin_graphql_api_id` is exactly that pair
  (`gid://shopify/InventoryLevel/<location_id>?inventory_item_id=<item_id>`), so it is the primary key: stable,
  unique across locations, and the id GraphQL and webhooks use for the same level.
- Rate limit (standard plans): a leaky bucket of 40 calls per app and shop, leaking 2 per second, reported in
  `X-Shopify-Shop-Api-Call-Limit: n/40`; an overflow is 429 with `Retry-After: 2.0`. Shopify Plus shops get
  ten times that: raise SHOPIFY_REQUESTS_PER_SECOND to 20 there.
- Errors are `{"errors": "text"}` or `{"errors": {"field": ["message", …]}}`; a bad token is 401
  `[API] Invalid API key or access token (unrecognized login or wrong password)`.
- Writes: the REST API has no idempotency key. `inventory_levels/set.json` is absolute (sets `available` to a
  number), so a replayed request leaves the same level. Customer creation is protected by Shopify's unique
  email (and phone): a retried create that had in fact succeeded answers 422 `email: has already been taken`,
  which the sync ledger must treat as "exists, look it up by email", never as a reason to create again.
  (Shopify's GraphQL API makes an `@idempotent(key:)` directive mandatory for inventory mutations from
  2026-04; the REST endpoint used here has no such key.)
"""

from __future__ import annotations

from .pagination import LinkHeaderPaginator
from .spec import EnvValue, HeaderAuthSpec, Idempotency, LoginStep, RequestTemplate, Scopes, Stream, System, Writer

API_VERSION = "2025-10"
API_ROOT = f"/admin/api/{API_VERSION}"
MAX_PAGE_SIZE = 250
LOOKBACK_SECONDS = 300


def _stream(
    name: str,
    resource: str,
    description: str,
    *,
    params: dict[str, str] | None = None,
    primary_key: str = "id",
    partitioned: bool = False,
) -> Stream:
    """One Link-paginated list: `request` reads everything (of a partition), `incremental_request` adds the
    change filter once a cursor is stored; both name the same fields so an unchanged record compares equal."""
    base: dict[str, str] = {"limit": "{page_size}", **(params or {})}
    if partitioned:
        base |= {"created_at_min": "{window_start_iso_offset}", "created_at_max": "{window_end_iso_offset}"}
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(path=f"{API_ROOT}/{resource}.json", params=base),
        incremental_request=RequestTemplate(
            path=f"{API_ROOT}/{resource}.json", params={**base, "updated_at_min": "{cursor_iso_offset}"}
        ),
        records_path=resource,
        envelope_path=resource,
        primary_key=primary_key,
        cursor_field="updated_at",
        cursor_format="iso",
        lookback_seconds=LOOKBACK_SECONDS,
        partitioned="daily" if partitioned else None,
        paginator=LinkHeaderPaginator(rel="next"),
        page_size=MAX_PAGE_SIZE,
    )


SYSTEM = System(
    name="shopify",
    title="Shopify",
    category="ecommerce",
    base_url="https://{shop}.myshopify.com",
    docs_url="https://shopify.dev/docs/api/admin-rest",
    values={
        "shop": EnvValue(
            env="SHOPIFY_SHOP",
            sandbox="acme-demo",
            secret=False,
            description="the shop's myshopify subdomain: `acme-demo` for acme-demo.myshopify.com",
        ),
        "access_token": EnvValue(
            env="SHOPIFY_ACCESS_TOKEN",
            sandbox="shpat_FAKE_sandbox_token_integration_pipelines",
            description="an Admin API access token of a custom app (Settings → Apps and sales channels → "
            "Develop apps), with read_customers, read_orders, read_all_orders, read_products, "
            "read_inventory, read_locations, write_customers and write_inventory scopes",
        ),
    },
    auth=HeaderAuthSpec(header="X-Shopify-Access-Token", value="access_token"),
    headers={"Accept": "application/json"},
    requests_per_second=2.0,
    burst=40,
    error_message_paths=("errors",),
    login=LoginStep(
        request=RequestTemplate(path=f"{API_ROOT}/shop.json", params={"fields": "id,primary_location_id"}),
        variables={"location_id": "shop.primary_location_id"},
    ),
    scopes=Scopes(
        read=("read_customers", "read_orders", "read_products", "read_inventory", "read_locations"),
        write=("write_inventory", "write_customers", "read_locations"),
        writers={"set_inventory_levels": ("write_inventory",), "create_customers": ("write_customers",)},
        note="Admin API access scopes of the custom app (Settings → Apps → Develop apps); one app per credential set.",
    ),
    streams=(
        _stream("customers", "customers", "Shop customers (accounts and guest buyers with an email)"),
        _stream(
            "orders",
            "orders",
            "Orders of the online store, with line items by SKU (all statuses: open, closed, cancelled)",
            params={"status": "any"},
            partitioned=True,
        ),
        _stream("products", "products", "Products, with their variants' SKUs and inventory item ids"),
        _stream(
            "inventory_levels",
            "inventory_levels",
            "Available stock per inventory item at the shop's primary location",
            params={"location_ids": "{location_id}"},
            primary_key="admin_graphql_api_id",
        ),
    ),
    writers=(
        Writer(
            name="set_inventory_levels",
            description="Set the available quantity of one item at one location "
            "({'location_id', 'inventory_item_id', 'available'}). Absolute, hence safe to replay.",
            path=f"{API_ROOT}/inventory_levels/set.json",
            id_path="inventory_level.admin_graphql_api_id",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="create_customers",
            description="Create a customer ({'customer': {...}}). No idempotency key: Shopify's unique email "
            "makes a retried create a 422 `has already been taken`, never a duplicate.",
            path=f"{API_ROOT}/customers.json",
            id_path="customer.id",
            idempotency=Idempotency(location="none"),
        ),
    ),
)
