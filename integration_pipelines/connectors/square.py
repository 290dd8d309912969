"""Square (payments and point of sale). Bearer access token, a pinned `Square-Version`, `cursor` in and out.

Facts the spec leans on (Square API reference and the squareup SDK's models):
- Every list and search answers `{"<things>": [...], "cursor": "..."}`; the last page has no `cursor`, and an
  empty result is the empty object `{}` (Square omits empty arrays). There is therefore no key every page is
  guaranteed to carry: `envelope_path="."` requires only that the body is a JSON document, and a missing record
  list is an empty page. A broken or HTML page still fails as malformed, because it is not JSON.
- The cursor goes back where the request carried its parameters: the query of a list GET, the JSON body of a
  search POST (`NextTokenPaginator(location="auto")`), and Square requires the original query with it.
- Changes: customers are listed with `GET /v2/customers` and searched by `query.filter.updated_at`; payments are
  listed per day of `created_at` (`begin_time`/`end_time`, hence daily partitions) and, once a partition has a cursor,
  filtered by `updated_at_begin_time` as well (refunds and fee changes move `updated_at`, not `created_at`); refunds
  are listed per day of `created_at` (`ListPaymentRefunds` filters and sorts by creation only, so each day is read
  whole, and the nightly re-read window brings a later status change of an older refund;
  `refund.created`/`refund.updated` webhooks carry the PaymentRefund in between); orders are searched by
  `date_time_filter.updated_at`, which Square only accepts when the sort field is the same timestamp; the catalog is
  listed, then searched with `begin_time` (exclusive); inventory counts are retrieved with `updated_after` (on
  `calculated_at`); subscription plan variations are catalog objects, listed and searched like the items.
  Subscriptions are searched (`POST /v2/subscriptions/search`), which has no time filter at all (Square filters by
  customer, location and source only, in order of creation), so that stream is read whole every time (a seller holds
  few); its changes reach the warehouse in between as `subscription.created` / `subscription.updated` webhooks, which
  carry the whole subscription. Square's change propagation is "well under 30 seconds, occasionally a minute or
  longer", hence a five-minute lookback on every cursor.
- The location is not configuration: a login step asks `GET /v2/locations/main` once per client, the same
  default location `ListPayments` uses, and orders and inventory read that location.
- Inventory counts are one row per (catalog object, location, state). The engine keys a raw table by one
  path, so the stream asks only for `IN_STOCK` at the main location and keys by `catalog_object_id`, which is
  unique under that filter; nothing is synthesised into Square's record shape.
- Rate limit: Square publishes no fixed number (it answers 429 `RATE_LIMITED` when an application sends too
  much); 10 requests per second is a conservative default budget, raised with SQUARE_REQUESTS_PER_SECOND.
- Writes carry an `idempotency_key` in the JSON body; reusing one with a different body is refused with 400
  `IDEMPOTENCY_KEY_REUSED`, and a replay returns the first answer without applying the change again.
"""

from __future__ import annotations

from typing import Any

from .pagination import NextTokenPaginator
from .spec import BearerAuthSpec, EnvValue, Idempotency, LoginStep, RequestTemplate, Scopes, Stream, System, Writer

SQUARE_VERSION = "2025-10-16"
LOOKBACK_SECONDS = 300
LIST_LIMIT = 100  # customers and payments reject (customers) or ignore (payments) anything above 100
_RECORDS_ARE_OPTIONAL = "."  # the body itself: Square answers `{}` when a page holds nothing


def _stream(name: str, description: str, records: str, request: RequestTemplate, **options: Any) -> Stream:
    """Everything Square streams share: cursor paging in query or body, optional record lists, a lookback."""
    return Stream(
        name=name,
        description=description,
        request=request,
        records_path=records,
        envelope_path=_RECORDS_ARE_OPTIONAL,
        paginator=NextTokenPaginator(token_path="cursor", token_param="cursor", location="auto"),
        lookback_seconds=LOOKBACK_SECONDS,
        cursor_format="iso",
        **options,
    )


_ORDERS_SEARCH = RequestTemplate(
    method="POST",
    path="/v2/orders/search",
    body={
        "location_ids": ["{location_id}"],
        "query": {
            "filter": {"date_time_filter": {"updated_at": {"start_at": "{cursor_iso}"}}},
            "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"},
        },
        "limit": "{page_size}",
        "return_entries": False,
    },
)

_SUBSCRIPTIONS_SEARCH = RequestTemplate(
    method="POST",
    path="/v2/subscriptions/search",
    body={"query": {"filter": {"location_ids": ["{location_id}"]}}, "limit": "{page_size}"},
)


def _catalog_reads(object_type: str) -> dict[str, RequestTemplate]:
    """A catalog object type's full read (`ListCatalog`) and its incremental one (`SearchCatalogObjects` from the
    cursor, deleted objects included, so a deletion is seen)."""
    return {
        "request": RequestTemplate(path="/v2/catalog/list", params={"types": object_type}),
        "incremental_request": RequestTemplate(
            method="POST",
            path="/v2/catalog/search",
            body={
                "object_types": [object_type],
                "begin_time": "{cursor_iso}",
                "include_deleted_objects": True,
                "limit": "{page_size}",
            },
        ),
    }


_INVENTORY_RETRIEVE = RequestTemplate(
    method="POST",
    path="/v2/inventory/counts/batch-retrieve",
    body={
        "location_ids": ["{location_id}"],
        "states": ["IN_STOCK"],
        "updated_after": "{cursor_iso}",
        "limit": "{page_size}",
    },
)

SYSTEM = System(
    name="square",
    title="Square",
    category="payments",
    base_url="https://connect.squareup.com",
    docs_url="https://developer.squareup.com/reference/square",
    values={
        "access_token": EnvValue(
            env="SQUARE_ACCESS_TOKEN",
            sandbox="FAKE-sandbox-square-access-token-integration-pipelines",
            description="a production access token (Developer Console → your application → Credentials) "
            "with CUSTOMERS_READ/WRITE, PAYMENTS_READ, ORDERS_READ, ITEMS_READ, INVENTORY_READ/WRITE, "
            "SUBSCRIPTIONS_READ and MERCHANT_PROFILE_READ",
        )
    },
    auth=BearerAuthSpec(token="access_token"),
    headers={"Square-Version": SQUARE_VERSION},
    requests_per_second=10.0,
    burst=10,
    error_message_paths=("errors.0.detail", "errors.0.code"),
    login=LoginStep(
        request=RequestTemplate(path="/v2/locations/main"),
        variables={"location_id": "location.id"},
    ),
    scopes=Scopes(
        read=("CUSTOMERS_READ", "PAYMENTS_READ", "ORDERS_READ", "ITEMS_READ", "INVENTORY_READ",
              "SUBSCRIPTIONS_READ", "MERCHANT_PROFILE_READ"),
        write=("CUSTOMERS_WRITE", "INVENTORY_WRITE", "MERCHANT_PROFILE_READ"),
        writers={"create_customer": ("CUSTOMERS_WRITE",), "inventory_changes": ("INVENTORY_WRITE",)},
        note="OAuth permissions of the application's access token (a personal access token has all of them).",
    ),
    streams=(
        _stream(
            "customers",
            "Customer profiles (the directory of people who bought from the seller)",
            "customers",
            RequestTemplate(
                path="/v2/customers",
                params={"limit": "{page_size}", "sort_field": "CREATED_AT", "sort_order": "ASC"},
            ),
            incremental_request=RequestTemplate(
                method="POST",
                path="/v2/customers/search",
                body={
                    "query": {
                        "filter": {"updated_at": {"start_at": "{cursor_iso}"}},
                        "sort": {"field": "CREATED_AT", "order": "ASC"},
                    },
                    "limit": "{page_size}",
                },
            ),
            primary_key="id",
            cursor_field="updated_at",
            page_size=LIST_LIMIT,
        ),
        _stream(
            "payments",
            "Card and cash payments taken through Square, per day of creation",
            "payments",
            RequestTemplate(
                path="/v2/payments",
                params={
                    "begin_time": "{window_start_iso}", "end_time": "{window_end_iso}", "sort_order": "ASC",
                    "limit": "{page_size}",
                },
            ),
            incremental_request=RequestTemplate(
                path="/v2/payments",
                params={
                    "begin_time": "{window_start_iso}", "end_time": "{window_end_iso}",
                    "updated_at_begin_time": "{cursor_iso}", "sort_field": "UPDATED_AT", "sort_order": "ASC",
                    "limit": "{page_size}",
                },
            ),
            primary_key="id",
            cursor_field="updated_at",
            partitioned="daily",
            page_size=LIST_LIMIT,
        ),
        _stream(
            "refunds",
            "Refunds of payments (PaymentRefund: each partial refund with its own amount, status and date), per day "
            "of creation",
            "refunds",
            RequestTemplate(
                path="/v2/refunds",
                params={"begin_time": "{window_start_iso}", "end_time": "{window_end_iso}", "sort_order": "ASC",
                        "limit": "{page_size}"},
            ),
            primary_key="id",
            cursor_field="updated_at",
            partitioned="daily",
            page_size=LIST_LIMIT,
        ),
        _stream(
            "orders",
            "Orders (itemised sales) at the main location, oldest change first",
            "orders",
            _ORDERS_SEARCH,
            incremental_request=_ORDERS_SEARCH,  # the same search; the first read's cursor is the epoch
            primary_key="id",
            cursor_field="updated_at",
            page_size=500,
        ),
        _stream(
            "catalog_items",
            "Catalog items with their variations (the SKU lives on each variation)",
            "objects",
            **_catalog_reads("ITEM"),  # list: page size fixed at 100
            primary_key="id",
            cursor_field="updated_at",
            page_size=LIST_LIMIT,
        ),
        _stream(
            "inventory_counts",
            "Units in stock per item variation at the main location (state IN_STOCK)",
            "counts",
            _INVENTORY_RETRIEVE,
            incremental_request=_INVENTORY_RETRIEVE,
            primary_key="catalog_object_id",
            cursor_field="calculated_at",
            page_size=1000,
        ),
        _stream(
            "subscription_plan_variations",
            "Subscription plan variations (what a subscriber pays, and how often): catalog objects",
            "objects",
            **_catalog_reads("SUBSCRIPTION_PLAN_VARIATION"),
            primary_key="id",
            cursor_field="updated_at",
            page_size=LIST_LIMIT,
        ),
        _stream(
            "subscriptions",
            "Subscriptions at the main location, in every status (PENDING, ACTIVE, DEACTIVATED, PAUSED, CANCELED); "
            "read whole each time (Square's search has no change filter), changed in between by webhooks",
            "subscriptions",
            _SUBSCRIPTIONS_SEARCH,
            primary_key="id",
            page_size=LIST_LIMIT,
        ),
    ),
    writers=(
        Writer(
            name="create_customer",
            description="Create one customer profile; a retried request with the same idempotency_key returns "
            "the first customer instead of creating a second.",
            path="/v2/customers",
            id_path="customer.id",
            idempotency=Idempotency(location="body", name="idempotency_key", max_length=45),
        ),
        Writer(
            name="inventory_changes",
            description="Apply physical counts and adjustments ({'type': 'PHYSICAL_COUNT', 'physical_count': "
            "{...}}); a replayed batch returns the first answer and is not applied twice.",
            path="/v2/inventory/changes/batch-create",
            batch_envelope="changes",
            batch_size=100,
            results_path="counts",
            id_path="catalog_object_id",
            idempotency=Idempotency(location="body", name="idempotency_key", max_length=128),
        ),
    ),
)
