"""Shopify's Admin REST API (2025-10) for one shop, as an integration sees it.

What this emulator holds to, because clients depend on it:
- auth by `X-Shopify-Access-Token`; a missing or wrong token is 401
  `{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}`;
- access scopes per app: the sandbox token holds them all; the tokens in `SCOPED_TOKENS` (a read-only app, a
  read-write app, an inventory-only app) hold fewer, and a call needing a scope the app lacks is 403
  `{"errors": "[API] This action requires merchant approval for write_inventory scope."}` (a GET needs
  `read_<resource>`, anything else `write_<resource>`; `write_` includes `read_`; `shop.json` needs none);
- lists `GET /admin/api/2025-10/{customers,orders,products,inventory_levels}.json` → `{"<resource>": [...]}`,
  ascending ids, `limit` 1..250 (default 50, anything else a 400), filters `ids`, `since_id`,
  `created_at_min/max`, `updated_at_min/max` (inclusive; naive times are in the shop's zone), orders'
  `status` (default `open`: closed and cancelled orders are left out unless `status=any`), inventory levels'
  required `location_ids`/`inventory_item_ids`, and `fields`;
- cursor pagination: `Link: <…?limit=N&page_info=…>; rel="previous", <…>; rel="next"` with an opaque
  `page_info` that seals the first request's filters. A page_info request may carry only `limit` and `fields`;
  anything else, or a forged token, is 400 `{"errors": {"page_info": "Invalid value."}}`. Link URLs point at
  the host the request came to, as Shopify's point at the shop's own domain;
- timestamps in the shop's time zone with an offset (America/New_York), ids as large integers growing with
  creation time, money as decimal strings (`"15.00"`);
- the leaky bucket: 40 calls, leaking 2 per second, reported on every answer in
  `X-Shopify-Shop-Api-Call-Limit: n/40`; an overflow is 429 `Exceeded 2 calls per second for api client…`
  with `Retry-After: 2.0`;
- single records: `GET/PUT/DELETE customers/{id}.json` and `products/{id}.json`, `GET orders/{id}.json`
  (`{"customer": {...}}`; a PUT changes only the fields it names; a DELETE answers 200 `{}`; a missing id is 404
  `{"errors": "Not Found"}`), `GET customers/search.json?query=field:value …`, `GET <resource>/count.json`;
- writes: `POST customers.json` `{"customer": {...}}` → 201, email and phone unique (422
  `{"errors": {"email": ["has already been taken"]}}`); `POST products.json` → 201 (a title is required);
  `POST inventory_levels/set.json` → 200
  `{"inventory_level": {...}}`, absolute, and reflected in the variant's `inventory_quantity`. Shopify's REST
  API has no idempotency key, so `replay_or_store` is not used: uniqueness and absolute writes are the
  vendor's own protection against a retried request.

The shop sells the world's products. Every paid invoice made only of goods (no consulting hours or support
plans, which the business bills through its accounting system) is a web-store order, placed and paid at
checkout when the sale was made (the invoice's issue time), for the same lines and SKUs; its buyer is a shop
customer. Some people hold a shop account without ever ordering. Everything derives from
`world.rng("shopify")`, so the shop is the same on every run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import Emulator, SandboxState
from .ids import token
from .world import Invoice, Person, Product, World

#: The Admin API version the shop serves, and where (Shopify's own facts, kept here, not borrowed from a connector).
API_VERSION = "2025-10"
API_ROOT = f"/admin/api/{API_VERSION}"
MAX_PAGE_SIZE = 250
#: The shop's (fake) Admin API access token; the connector's sandbox mode sends the same string. It holds every
#: access scope.
SANDBOX_ACCESS_TOKEN = "shpat_FAKE_sandbox_token_integration_pipelines"
#: Access tokens of custom apps installed with fewer access scopes (the emulator's own fake tokens; the connectors
#: know none of them). A call needing a scope the app was not granted gets Shopify's 403 (`scope_error`).
#: A `write_` scope includes its `read_` scope, as Shopify grants it.
_READ_SCOPES = ("read_customers", "read_orders", "read_products", "read_inventory", "read_locations")
_WRITE_SCOPES = ("write_customers", "write_products", "write_inventory", "write_orders")
SCOPED_TOKENS: dict[str, frozenset[str]] = {
    "shpat_FAKE_sandbox_read_only_0000": frozenset(_READ_SCOPES),
    "shpat_FAKE_sandbox_read_write_0000": frozenset(_READ_SCOPES + _WRITE_SCOPES),
    "shpat_FAKE_sandbox_inventory_only_0000": frozenset({"read_inventory", "write_inventory", "read_locations"}),
}
RESOURCES = ("customers", "orders", "products", "inventory_levels")
#: Fields a `PUT customers/{id}.json` / `products/{id}.json` may change; Shopify ignores read-only ones.
CUSTOMER_WRITABLE = frozenset({"email", "first_name", "last_name", "phone", "note", "tags", "tax_exempt",
                               "verified_email", "multipass_identifier", "email_marketing_consent", "currency"})
PRODUCT_WRITABLE = frozenset({"title", "body_html", "vendor", "product_type", "tags", "status", "handle",
                              "template_suffix", "published_scope"})
#: Fields `customers/search.json` understands as `field:value`; bare words match name and email.
SEARCH_FIELDS = {"email": ("email",), "first_name": ("first_name",), "last_name": ("last_name",),
                 "phone": ("phone",), "tag": ("tags",), "state": ("state",),
                 "country": ("default_address.country", "default_address.country_code")}
CUSTOMER_HAS_ORDERS = "Error deleting customer: customer has orders"
DEFAULT_LIMIT = 50
BUCKET_SIZE = 40
LEAK_PER_SECOND = 2.0
RATE_LIMIT_RETRY_AFTER = 2.0
SERVICE_SKUS = frozenset({"SERVICE-HR", "SUPPORT-Y"})
PRODUCT_TYPES = {"WIDGET-S": "Widgets", "WIDGET-L": "Widgets", "GADGET": "Gadgets", "CABLE": "Accessories",
                 "SERVICE-HR": "Services", "SUPPORT-Y": "Services"}
GRAMS = {"WIDGET-S": 250, "WIDGET-L": 900, "GADGET": 1200, "CABLE": 150, "SERVICE-HR": 0, "SUPPORT-Y": 0}
COUNTRY_NAMES = {"US": "United States", "GB": "United Kingdom", "DE": "Germany"}
VENDOR = "Acme Trading"
SHOP_ID = 60_112_233_445
PRIMARY_LOCATION_ID = 65_143_849_123
SHOP_TIMEZONE = "America/New_York"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
#: Resource (first path segment after the API root) → the access scope's subject; `shop.json` needs none.
SCOPE_OF_RESOURCE = {"customers": "customers", "orders": "orders", "products": "products",
                     "inventory_levels": "inventory", "locations": "locations"}
RATE_LIMIT_MESSAGE = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
#: Query parameters a `page_info` request may carry besides `page_info` itself.
PAGE_INFO_COMPANIONS = frozenset({"limit", "fields", "page_info"})
#: Filters each list understands; any other parameter is ignored, as Shopify ignores unknown ones.
COMMON_FILTERS = ("ids", "since_id", "created_at_min", "created_at_max", "updated_at_min", "updated_at_max")
FILTERS: dict[str, tuple[str, ...]] = {
    "customers": COMMON_FILTERS,
    "orders": (*COMMON_FILTERS, "status", "financial_status", "fulfillment_status"),
    "products": (*COMMON_FILTERS, "product_type", "vendor", "status"),
    "inventory_levels": ("location_ids", "inventory_item_ids", "updated_at_min"),
}
ORDER_STATUSES = ("open", "closed", "cancelled", "any")


def scope_error(scope: str) -> str:
    """Shopify's `errors` text for a call that needs an access scope the app was not granted (403)."""
    return f"[API] This action requires merchant approval for {scope} scope."


def _shop_zone() -> tzinfo:
    try:
        return ZoneInfo(SHOP_TIMEZONE)
    except ZoneInfoNotFoundError:  # a machine without tz data: Eastern standard time, without DST
        return timezone(timedelta(hours=-5))


def _money(minor_units: int) -> str:
    """Shopify's REST money: a decimal string with two places."""
    sign = "-" if minor_units < 0 else ""
    return f"{sign}{abs(minor_units) // 100}.{abs(minor_units) % 100:02d}"


def _number(*parts: object, spread: int = 1000) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big") % spread


class ShopifyError(Exception):
    """An answer in Shopify's error shape, raised from deep inside a handler."""

    def __init__(self, status: int, errors: Any) -> None:
        super().__init__(str(errors))
        self.status = status
        self.errors = errors


class ShopifyEmulator(Emulator):
    name = "shopify"
    prefixes = ("/admin/api/",)
    streams = RESOURCES

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.access_token = SANDBOX_ACCESS_TOKEN
        #: access token → the access scopes its app was granted (the sandbox token has them all)
        self.scoped_tokens: dict[str, frozenset[str]] = dict(SCOPED_TOKENS)
        self.zone = _shop_zone()
        self.rng = world.rng("shopify")
        self.records: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self.bucket_size = BUCKET_SIZE
        self.leak_per_second = LEAK_PER_SECOND
        self._bucket_level = 0.0
        self._bucket_at = time.monotonic()
        self.location = self._location()
        self.variant_by_sku: dict[str, dict[str, Any]] = {}
        self.product_by_sku: dict[str, dict[str, Any]] = {}
        for product in world.products:
            self._add_product(product)
        # A web order is paid at checkout: it is placed when the sale is made (the invoice's issue time);
        # the world's later payment time is when accounting matched the money, not when the buyer paid.
        web_sales = sorted((inv for inv in world.invoices if self._is_web_sale(inv)),
                           key=lambda inv: (inv.issued_at, inv.key))
        buyers = {inv.person.key for inv in web_sales}
        self.customer_ids: dict[int, int] = {}
        for person in sorted(world.people, key=lambda p: (p.created_at, p.key)):
            has_account = self.rng.random() < 0.25  # drawn for everyone, so the stream of choices is stable
            if person.key in buyers or has_account:
                self._add_customer(person)
        for number, invoice in enumerate(web_sales, start=1001):
            self._add_order(invoice, invoice.issued_at, number)

    # -- the seeded shop -----------------------------------------------------------------------------
    def _ts(self, moment: datetime) -> str:
        return moment.astimezone(self.zone).isoformat(timespec="seconds")

    def _parse_ts(self, text: str) -> datetime:
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)

    def _new_id(self, resource: str, base: int, moment: datetime, *salt: object) -> int:
        """Ids grow with creation time, as Shopify's do, and are unique within their resource."""
        candidate = base + int(moment.timestamp()) * 1000 + _number(self.world.seed, resource, *salt)
        taken = self.records.get(resource, {})
        while candidate in taken:
            candidate += 1
        return candidate

    @staticmethod
    def _is_web_sale(invoice: Invoice) -> bool:
        return invoice.paid and all(line.product.sku not in SERVICE_SKUS for line in invoice.lines)

    def _location(self) -> dict[str, Any]:
        opened = self.world.start - timedelta(days=400)
        return {
            "id": PRIMARY_LOCATION_ID, "name": "Main warehouse", "address1": "1 Station Street",
            "address2": None, "city": "Springfield", "zip": "10001", "province": "New York", "country": "US",
            "phone": "+15550100100", "created_at": self._ts(opened), "updated_at": self._ts(opened),
            "country_code": "US", "country_name": "United States", "province_code": "NY", "legacy": False,
            "active": True, "admin_graphql_api_id": f"gid://shopify/Location/{PRIMARY_LOCATION_ID}",
            "localized_country_name": "United States", "localized_province_name": "New York",
        }

    def shop(self) -> dict[str, Any]:
        return {
            "id": SHOP_ID, "name": "Acme Demo", "email": "shop@acme-demo.example.com",
            "domain": "shop.acme-demo.example.com", "myshopify_domain": "acme-demo.myshopify.com",
            "country_code": "US", "currency": "USD", "enabled_presentment_currencies": ["USD", "GBP", "EUR"],
            "iana_timezone": SHOP_TIMEZONE, "timezone": "(GMT-05:00) America/New_York",
            "primary_location_id": PRIMARY_LOCATION_ID, "plan_name": "basic", "plan_display_name": "Basic",
            "money_format": "${{amount}}", "weight_unit": "kg", "taxes_included": False,
            "created_at": self.location["created_at"], "updated_at": self.location["updated_at"],
        }

    def _add_product(self, product: Product) -> None:
        created = self.world.start - timedelta(days=30 + self.rng.randrange(300), seconds=self.rng.randrange(86400))
        updated = created + timedelta(days=self.rng.randrange(20), seconds=self.rng.randrange(86400))
        stocked = self.world.start + timedelta(seconds=self.rng.randrange(int(self.world.days * 86400)))
        pid = self._new_id("products", 8_000_000_000_000, created, product.key)
        vid = 44_000_000_000_000 + int(created.timestamp()) * 1000 + _number("variant", product.key)
        iid = 46_000_000_000_000 + int(created.timestamp()) * 1000 + _number("item", product.key)
        last_change = max(updated, stocked)
        variant = {
            "id": vid, "product_id": pid, "title": "Default Title", "price": _money(product.unit_price),
            "position": 1, "inventory_policy": "deny", "compare_at_price": None, "option1": "Default Title",
            "option2": None, "option3": None, "created_at": self._ts(created), "updated_at": self._ts(last_change),
            "taxable": product.sku not in SERVICE_SKUS, "barcode": None, "sku": product.sku,
            "inventory_item_id": iid, "inventory_quantity": product.stock, "old_inventory_quantity": product.stock,
            "image_id": None, "admin_graphql_api_id": f"gid://shopify/ProductVariant/{vid}",
        }
        record = {
            "id": pid, "title": product.name, "body_html": f"<p>{product.name} by {VENDOR}.</p>",
            "vendor": VENDOR, "product_type": PRODUCT_TYPES.get(product.sku, "Other"),
            "created_at": self._ts(created), "handle": product.name.lower().replace(" ", "-"),
            "updated_at": self._ts(last_change), "published_at": self._ts(created), "template_suffix": None,
            "published_scope": "global", "tags": "", "status": "active",
            "admin_graphql_api_id": f"gid://shopify/Product/{pid}", "variants": [variant],
            "options": [{"id": pid + 1, "product_id": pid, "name": "Title", "position": 1,
                         "values": ["Default Title"]}],
            "images": [], "image": None,
        }
        self.records["products"][pid] = record
        self.variant_by_sku[product.sku] = variant
        self.product_by_sku[product.sku] = record
        self.records["inventory_levels"][iid] = {
            "inventory_item_id": iid, "location_id": PRIMARY_LOCATION_ID, "available": product.stock,
            "updated_at": self._ts(stocked),
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{PRIMARY_LOCATION_ID}?inventory_item_id={iid}",
        }

    def _address(self, customer_id: int, person: Person) -> dict[str, Any]:
        return {
            "id": customer_id + 7, "customer_id": customer_id, "first_name": person.first_name,
            "last_name": person.last_name, "company": person.company.name, "address1": person.street,
            "address2": None, "city": person.city, "province": None, "country": COUNTRY_NAMES[person.country],
            "zip": person.postal_code, "phone": person.phone, "name": person.name, "province_code": None,
            "country_code": person.country, "country_name": COUNTRY_NAMES[person.country], "default": True,
        }

    def _add_customer(self, person: Person) -> None:
        cid = self._new_id("customers", 7_000_000_000_000, person.created_at, person.key)
        self.customer_ids[person.key] = cid
        address = self._address(cid, person)
        subscribed = self.rng.random() < 0.5
        self.records["customers"][cid] = {
            "id": cid, "email": person.email, "created_at": self._ts(person.created_at),
            "updated_at": self._ts(person.updated_at), "first_name": person.first_name,
            "last_name": person.last_name, "orders_count": 0, "state": "enabled", "total_spent": "0.00",
            "last_order_id": None, "note": None, "verified_email": True, "multipass_identifier": None,
            "tax_exempt": False, "tags": "", "last_order_name": None, "currency": person.currency,
            "phone": person.phone, "addresses": [address], "tax_exemptions": [],
            "email_marketing_consent": {
                "state": "subscribed" if subscribed else "not_subscribed", "opt_in_level": "single_opt_in",
                "consent_updated_at": self._ts(person.created_at) if subscribed else None,
            },
            "sms_marketing_consent": None, "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
            "default_address": address,
        }

    def _add_order(self, invoice: Invoice, placed_at: datetime, number: int) -> None:
        person = invoice.person
        customer = self.records["customers"][self.customer_ids[person.key]]
        oid = self._new_id("orders", 5_000_000_000_000, placed_at, invoice.key)
        fulfilled = self.rng.random() < 0.7
        settled = placed_at + timedelta(minutes=self.rng.randint(1, 24 * 60))
        updated = min(self.world.anchor - timedelta(seconds=1), settled) if fulfilled else placed_at
        lines = []
        for n, line in enumerate(invoice.lines):
            variant, product = self.variant_by_sku[line.product.sku], self.product_by_sku[line.product.sku]
            lid = 15_000_000_000_000 + int(placed_at.timestamp()) * 1000 + _number("line", invoice.key, n)
            lines.append({
                "id": lid, "admin_graphql_api_id": f"gid://shopify/LineItem/{lid}",
                "fulfillable_quantity": 0 if fulfilled else line.quantity,
                "fulfillment_service": "manual", "fulfillment_status": "fulfilled" if fulfilled else None,
                "gift_card": False, "grams": GRAMS.get(line.product.sku, 0), "name": product["title"],
                "price": _money(line.product.unit_price), "product_exists": True, "product_id": product["id"],
                "quantity": line.quantity, "requires_shipping": True, "sku": line.product.sku, "taxable": True,
                "title": product["title"], "total_discount": "0.00", "variant_id": variant["id"],
                "variant_title": None, "vendor": VENDOR, "tax_lines": [], "discount_allocations": [],
            })
        address = {k: v for k, v in customer["default_address"].items()
                   if k not in {"id", "customer_id", "default", "country_name"}}
        total = _money(invoice.amount)
        self.records["orders"][oid] = {
            "id": oid, "admin_graphql_api_id": f"gid://shopify/Order/{oid}", "app_id": 580111,
            "buyer_accepts_marketing": customer["email_marketing_consent"]["state"] == "subscribed",
            "cancel_reason": None, "cancelled_at": None, "closed_at": self._ts(updated) if fulfilled else None,
            "confirmation_number": token(self.world.seed, "confirmation", invoice.key, length=9).upper(),
            "confirmed": True, "contact_email": person.email, "created_at": self._ts(placed_at),
            "currency": invoice.currency, "current_subtotal_price": total, "current_total_price": total,
            "current_total_tax": "0.00", "email": person.email, "financial_status": "paid",
            "fulfillment_status": "fulfilled" if fulfilled else None, "name": f"#{number}", "note": None,
            "note_attributes": [{"name": "invoice_number", "value": invoice.number}], "number": number - 1000,
            "order_number": number, "payment_gateway_names": ["shopify_payments"],
            "presentment_currency": invoice.currency, "processed_at": self._ts(placed_at), "source_name": "web",
            "subtotal_price": total, "tags": "", "taxes_included": False, "test": False,
            "total_discounts": "0.00", "total_line_items_price": total, "total_price": total, "total_tax": "0.00",
            "total_weight": sum(GRAMS.get(li["sku"], 0) * li["quantity"] for li in lines),
            "updated_at": self._ts(updated), "billing_address": address, "shipping_address": address,
            "customer": {k: customer[k] for k in ("id", "email", "first_name", "last_name", "phone", "currency",
                                                  "admin_graphql_api_id")},
            "line_items": lines,
        }
        orders_count = customer["orders_count"] + 1
        spent = round(float(customer["total_spent"]) * 100) + invoice.amount
        customer.update(orders_count=orders_count, total_spent=_money(spent), last_order_id=oid,
                        last_order_name=f"#{number}")
        if self._parse_ts(customer["updated_at"]) < placed_at:
            customer["updated_at"] = self._ts(placed_at)

    # -- protocol ------------------------------------------------------------------------------------
    def _headers(self, level: float | None = None) -> dict[str, str]:
        used = self._bucket_level if level is None else level
        return {
            "X-Shopify-Shop-Api-Call-Limit": f"{min(self.bucket_size, math.ceil(used))}/{self.bucket_size}",
            "X-Shopify-API-Version": API_VERSION,
            "X-Request-Id": token("req", time.time_ns(), length=36).lower(),
        }

    def _json(self, body: Any, status: int = 200, extra: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={**self._headers(), **(extra or {})})

    def error_response(self, status: int, message: Any) -> Response:
        return self._json({"errors": message}, status)

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """Shopify answers a path it does not serve, and a method a path does not take, with 404 Not Found."""
        return self.error_response(404, "Not Found")

    def rate_limit_response(self, retry_after: float) -> Response:
        return JSONResponse({"errors": RATE_LIMIT_MESSAGE}, status_code=429, headers={
            **self._headers(level=self.bucket_size), "Retry-After": f"{retry_after:.1f}"})

    def set_call_limit(self, bucket_size: int, leak_per_second: float) -> None:
        """Change the shop's plan limits (Shopify Plus: 400 calls leaking 20 per second)."""
        with self.sandbox.lock:
            self.bucket_size, self.leak_per_second = bucket_size, leak_per_second
            self._bucket_level = min(self._bucket_level, float(bucket_size))

    def fill_bucket(self, level: float) -> None:
        """Pretend other apps' calls have filled the bucket to `level` (for tests of the 429 path)."""
        with self.sandbox.lock:
            self._bucket_level, self._bucket_at = float(level), time.monotonic()

    def _take_call(self) -> bool:
        """Leak, then add this call; False when the bucket would overflow."""
        with self.sandbox.lock:
            now = time.monotonic()
            self._bucket_level = max(0.0, self._bucket_level - (now - self._bucket_at) * self.leak_per_second)
            self._bucket_at = now
            if self._bucket_level + 1 > self.bucket_size:
                return False
            self._bucket_level += 1
            return True

    def _api(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Auth, then the call limit, then the handler; Shopify's error shape for whatever goes wrong."""

        async def endpoint(request: Request) -> Response:
            supplied = request.headers.get("x-shopify-access-token")
            granted = self.scoped_tokens.get(supplied or "")
            if supplied != self.access_token and granted is None:
                return self.error_response(401, INVALID_TOKEN)
            missing = None if granted is None else self._missing_scope(request, granted)
            if missing is not None:
                return self.error_response(403, scope_error(missing))
            if not self._take_call():
                return self.rate_limit_response(RATE_LIMIT_RETRY_AFTER)
            try:
                return await handler(request)
            except ShopifyError as error:
                return self.error_response(error.status, error.errors)

        return endpoint

    @staticmethod
    def _missing_scope(request: Request, granted: frozenset[str]) -> str | None:
        """The access scope this call needs and the app lacks: `read_<subject>` for a GET, `write_<subject>` for
        anything else (a `write_` scope also reads). None when the call needs nothing more."""
        rest = request.url.path.removeprefix(API_ROOT + "/")
        subject = SCOPE_OF_RESOURCE.get(rest.split("/", 1)[0].removesuffix(".json"))
        if subject is None:
            return None
        if request.method == "GET":
            return None if {f"read_{subject}", f"write_{subject}"} & granted else f"read_{subject}"
        return None if f"write_{subject}" in granted else f"write_{subject}"

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(f"{API_ROOT}/shop.json", self._api(self._shop), methods=["GET"]),
            Route(f"{API_ROOT}/locations.json", self._api(self._locations), methods=["GET"]),
            Route(f"{API_ROOT}/customers.json", self._api(self._customers), methods=["GET", "POST"]),
            Route(f"{API_ROOT}/customers/search.json", self._api(self._search_customers), methods=["GET"]),
            Route(f"{API_ROOT}/products.json", self._api(self._products), methods=["GET", "POST"]),
            Route(f"{API_ROOT}/inventory_levels/set.json", self._api(self._set_level), methods=["POST"]),
        ]
        for resource in ("customers", "orders", "products"):
            routes.append(Route(f"{API_ROOT}/{resource}/count.json", self._api(self._counter(resource)),
                                methods=["GET"]))
            methods = ["GET"] if resource == "orders" else ["GET", "PUT", "DELETE"]
            routes.append(Route(f"{API_ROOT}/{resource}/{{record_id:int}}.json", self._api(self._single(resource)),
                                methods=methods))
        for resource in ("orders", "inventory_levels"):
            routes.append(Route(f"{API_ROOT}/{resource}.json", self._api(self._lister(resource)), methods=["GET"]))
        routes.append(Route("/admin/api/{rest:path}", self._not_found))
        return routes

    async def _not_found(self, request: Request) -> Response:
        return self.error_response(404, "Not Found")

    async def _shop(self, request: Request) -> Response:
        return self._json({"shop": self._fields(self.shop(), request.query_params.get("fields"))})

    async def _locations(self, request: Request) -> Response:
        return self._json({"locations": [self.location]})

    # -- lists -----------------------------------------------------------------------------------------
    def _lister(self, resource: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return self._list(resource, request)
        return handler

    async def _customers(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create_customer(request)
        return self._list("customers", request)

    async def _products(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create_product(request)
        return self._list("products", request)

    def _counter(self, resource: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            filters = {k: request.query_params[k] for k in FILTERS[resource] if request.query_params.get(k)}
            with self.sandbox.lock:
                return self._json({"count": len(self._filtered(resource, filters))})
        return handler

    def _single(self, resource: str) -> Callable[[Request], Awaitable[Response]]:
        envelope = resource[:-1]

        async def handler(request: Request) -> Response:
            record_id = int(request.path_params["record_id"])
            given = await self._body(request, envelope) if request.method == "PUT" else {}
            with self.sandbox.lock:
                record = self.records[resource].get(record_id)
                if record is None:
                    raise ShopifyError(404, "Not Found")
                if request.method == "DELETE":
                    self._delete(resource, record)
                    return self._json({})
                if request.method == "PUT":
                    self._update(resource, record, given)
                snapshot = json.loads(json.dumps(record))
            return self._json({envelope: self._fields(snapshot, request.query_params.get("fields"))})
        return handler

    def _update(self, resource: str, record: dict[str, Any], given: dict[str, Any]) -> None:
        """A PUT: only the named writable fields change (others, read-only or unknown, are ignored)."""
        if "id" in given and str(given["id"]) != str(record["id"]):
            raise ShopifyError(400, {resource[:-1]: "Required parameter missing or invalid"})
        writable = CUSTOMER_WRITABLE if resource == "customers" else PRODUCT_WRITABLE
        changes = {k: v for k, v in given.items() if k in writable}
        if resource == "customers":
            errors = self._customer_errors(changes, own_id=record["id"])
            if errors:
                raise ShopifyError(422, errors)
        elif "title" in changes and not str(changes["title"] or "").strip():
            raise ShopifyError(422, {"title": ["can't be blank"]})
        if not changes:
            return
        record.update(changes)
        record["updated_at"] = self._ts(max(datetime.now(UTC).replace(microsecond=0),
                                            self._parse_ts(record["updated_at"])))

    def _customer_errors(self, given: dict[str, Any], own_id: int | None) -> dict[str, list[str]]:
        """Shopify's validation of a customer's email and phone: well-formed, and unique in the shop."""
        errors: dict[str, list[str]] = {}
        email = (given.get("email") or "").strip() or None
        phone = (given.get("phone") or "").strip() or None
        if email and ("@" not in email or email.startswith("@") or email.endswith("@")):
            errors["email"] = ["is invalid"]
        others = [c for c in self.records["customers"].values() if c["id"] != own_id]
        if email and any((c["email"] or "").lower() == email.lower() for c in others):
            errors.setdefault("email", []).append("has already been taken")
        if phone and any(c["phone"] == phone for c in others):
            errors.setdefault("phone", []).append("has already been taken")
        return errors

    def _delete(self, resource: str, record: dict[str, Any]) -> None:
        """A DELETE: a customer who has ordered cannot be deleted (422); a product takes its inventory with it."""
        if resource == "customers" and any(o["customer"]["id"] == record["id"]
                                           for o in self.records["orders"].values()):
            raise ShopifyError(422, {"base": [CUSTOMER_HAS_ORDERS]})
        del self.records[resource][record["id"]]
        if resource == "products":
            for variant in record["variants"]:
                self.records["inventory_levels"].pop(variant["inventory_item_id"], None)
                if self.variant_by_sku.get(variant["sku"]) is variant:
                    del self.variant_by_sku[variant["sku"]]
                    self.product_by_sku.pop(variant["sku"], None)

    async def _search_customers(self, request: Request) -> Response:
        """`customers/search.json?query=…`: `field:value` terms (email, first_name, last_name, phone, tag, state,
        country) and bare words (matching name or email), all ANDed, case-insensitive; `limit`, `fields`."""
        params = request.query_params
        limit = self._limit(params.get("limit"))
        terms = (params.get("query") or "").split()
        with self.sandbox.lock:
            rows = sorted(self.records["customers"].values(), key=self._key("customers"))
            for term in terms:
                name, colon, value = term.partition(":")
                value = value.strip("'\"").lower() if colon else term.strip("'\"").lower()
                if colon and name in SEARCH_FIELDS:
                    rows = [r for r in rows if any(self._dotted(r, f).lower() == value or
                                                   (name == "tag" and value in [t.strip().lower() for t in
                                                                                 self._dotted(r, f).split(",")])
                                                   for f in SEARCH_FIELDS[name])]
                else:
                    rows = [r for r in rows if any(value in self._dotted(r, f).lower()
                                                   for f in ("first_name", "last_name", "email"))]
            page = json.loads(json.dumps(rows[:limit]))
        return self._json({"customers": [self._fields(r, params.get("fields")) for r in page]})

    @staticmethod
    def _dotted(record: dict[str, Any], path: str) -> str:
        value: Any = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else str(value)

    @staticmethod
    def _fields(record: dict[str, Any], fields: str | None) -> dict[str, Any]:
        if not fields:
            return record
        wanted = {f.strip() for f in fields.split(",") if f.strip()}
        return {k: v for k, v in record.items() if k in wanted}

    @staticmethod
    def _encode_page_info(payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_page_info(value: str) -> dict[str, Any]:
        try:
            payload = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise ShopifyError(400, {"page_info": "Invalid value."}) from exc
        if (not isinstance(payload, dict) or payload.get("direction") not in ("next", "prev")
                or not isinstance(payload.get("last_id"), int) or not isinstance(payload.get("filters"), dict)):
            raise ShopifyError(400, {"page_info": "Invalid value."})
        return payload

    def _limit(self, value: str | None) -> int:
        if value is None:
            return DEFAULT_LIMIT
        try:
            limit = int(value)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ShopifyError(400, {"limit": f"Invalid value. Must be between 1 and {MAX_PAGE_SIZE}."})
        return limit

    def _moment(self, name: str, value: str) -> datetime:
        try:
            return self._parse_ts(value.strip().replace(" ", "+"))
        except ValueError as exc:
            raise ShopifyError(400, {name: "Invalid value."}) from exc

    def _ids(self, name: str, value: str) -> set[int]:
        try:
            return {int(v) for v in value.split(",") if v.strip()}
        except ValueError as exc:
            raise ShopifyError(400, {name: "Invalid value."}) from exc

    def _filtered(self, resource: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        rows = list(self.records[resource].values())
        if resource == "inventory_levels":
            if not filters.get("location_ids") and not filters.get("inventory_item_ids"):
                raise ShopifyError(422, {"base": ["location_ids or inventory_item_ids must be specified"]})
            if filters.get("location_ids"):
                locations = self._ids("location_ids", filters["location_ids"])
                rows = [r for r in rows if r["location_id"] in locations]
            if filters.get("inventory_item_ids"):
                items = self._ids("inventory_item_ids", filters["inventory_item_ids"])
                rows = [r for r in rows if r["inventory_item_id"] in items]
        if filters.get("ids"):
            wanted = self._ids("ids", filters["ids"])
            rows = [r for r in rows if r["id"] in wanted]
        if filters.get("since_id"):
            since = max(self._ids("since_id", filters["since_id"]) or {0})
            rows = [r for r in rows if r["id"] > since]
        for name, op in (("created_at_min", "ge"), ("created_at_max", "le"), ("updated_at_min", "ge"),
                         ("updated_at_max", "le")):
            if filters.get(name):
                bound, field = self._moment(name, filters[name]), name.rsplit("_", 1)[0]
                if op == "ge":
                    rows = [r for r in rows if self._parse_ts(r[field]) >= bound]
                else:
                    rows = [r for r in rows if self._parse_ts(r[field]) <= bound]
        if resource == "orders":
            status = filters.get("status") or "open"
            if status not in ORDER_STATUSES:
                raise ShopifyError(400, {"status": "Invalid value."})
            if status == "open":
                rows = [r for r in rows if r["closed_at"] is None and r["cancelled_at"] is None]
            elif status == "closed":
                rows = [r for r in rows if r["closed_at"] is not None]
            elif status == "cancelled":
                rows = [r for r in rows if r["cancelled_at"] is not None]
            for name in ("financial_status", "fulfillment_status"):
                wanted_status = filters.get(name)
                if wanted_status and wanted_status != "any":
                    rows = [r for r in rows if (r[name] or "unfulfilled") == wanted_status]
        if resource == "products":
            for name in ("product_type", "vendor", "status"):
                if filters.get(name):
                    rows = [r for r in rows if r[name] == filters[name]]
        return sorted(rows, key=self._key(resource))

    @staticmethod
    def _key(resource: str) -> Callable[[dict[str, Any]], int]:
        field = "inventory_item_id" if resource == "inventory_levels" else "id"
        return lambda record: int(record[field])

    def _list(self, resource: str, request: Request) -> Response:
        params = request.query_params
        limit = self._limit(params.get("limit"))
        fields = params.get("fields")
        page_info = params.get("page_info")
        if page_info is not None:
            if set(params.keys()) - PAGE_INFO_COMPANIONS:
                raise ShopifyError(400, {"page_info": "Invalid value."})
            cursor = self._decode_page_info(page_info)
            filters = {k: str(v) for k, v in cursor["filters"].items() if k in FILTERS[resource]}
        else:
            cursor = None
            filters = {k: params[k] for k in FILTERS[resource] if params.get(k)}
        with self.sandbox.lock:
            rows = self._filtered(resource, filters)
        key = self._key(resource)
        if cursor is None:
            page = rows[:limit]
        elif cursor["direction"] == "next":
            page = [r for r in rows if key(r) > cursor["last_id"]][:limit]
        else:
            page = [r for r in rows if key(r) < cursor["last_id"]][-limit:]
        links = []
        if page and key(page[0]) > key(rows[0]):
            links.append((self._page_url(request, limit, fields, filters, key(page[0]), "prev"), "previous"))
        if page and key(page[-1]) < key(rows[-1]):
            links.append((self._page_url(request, limit, fields, filters, key(page[-1]), "next"), "next"))
        extra = {"Link": ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)} if links else {}
        return self._json({resource: [self._fields(r, fields) for r in page]}, extra=extra)

    def _page_url(self, request: Request, limit: int, fields: str | None, filters: dict[str, str], last_id: int,
                  direction: str) -> str:
        """A Link URL on the host the request came to, carrying only limit, fields and the sealed cursor."""
        query: dict[str, str] = {}
        if request.query_params.get("limit") is not None:
            query["limit"] = str(limit)
        if fields:
            query["fields"] = fields
        query["page_info"] = self._encode_page_info(
            {"filters": filters, "last_id": last_id, "direction": direction})
        return f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(query)}"

    # -- writes ----------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: Request, envelope: str | None) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise ShopifyError(400, {envelope or "base": "Required parameter missing or invalid"}) from exc
        if not isinstance(body, dict):
            raise ShopifyError(400, {envelope or "base": "Required parameter missing or invalid"})
        if envelope is None:
            return body
        inner = body.get(envelope)
        if not isinstance(inner, dict):
            raise ShopifyError(400, {envelope: "Required parameter missing or invalid"})
        return inner

    async def _create_customer(self, request: Request) -> Response:
        given = await self._body(request, "customer")
        email = (given.get("email") or "").strip() or None
        phone = (given.get("phone") or "").strip() or None
        errors: dict[str, list[str]] = {}
        if not (email or phone or given.get("first_name") or given.get("last_name")):
            errors["customer"] = ["must have a name, phone number or email address"]
        with self.sandbox.lock:
            errors.update(self._customer_errors(given, own_id=None))
            if errors:
                raise ShopifyError(422, errors)
            now = datetime.now(UTC).replace(microsecond=0)
            cid = self._new_id("customers", 7_000_000_000_000, now, "new", time.time_ns())
            addresses = []
            for n, address in enumerate(given.get("addresses") or []):
                addresses.append({
                    "id": cid + 7 + n, "customer_id": cid, "first_name": given.get("first_name"),
                    "last_name": given.get("last_name"), "company": None, "address1": None, "address2": None,
                    "city": None, "province": None, "country": None, "zip": None, "phone": None, "name": None,
                    "province_code": None, "country_code": None, "country_name": None, **address,
                    "default": n == 0,
                })
            consent = given.get("email_marketing_consent") or {}
            record = {
                "id": cid, "email": email, "created_at": self._ts(now), "updated_at": self._ts(now),
                "first_name": given.get("first_name"), "last_name": given.get("last_name"), "orders_count": 0,
                "state": "disabled", "total_spent": "0.00", "last_order_id": None, "note": given.get("note"),
                "verified_email": bool(given.get("verified_email", True)), "multipass_identifier": None,
                "tax_exempt": bool(given.get("tax_exempt", False)), "tags": given.get("tags") or "",
                "last_order_name": None, "currency": given.get("currency") or "USD", "phone": phone,
                "addresses": addresses, "tax_exemptions": [],
                "email_marketing_consent": {
                    "state": consent.get("state", "not_subscribed"),
                    "opt_in_level": consent.get("opt_in_level", "single_opt_in"),
                    "consent_updated_at": self._ts(now) if consent else None,
                } if email else None,
                "sms_marketing_consent": None, "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
                "default_address": addresses[0] if addresses else None,
            }
            self.records["customers"][cid] = record
        return self._json({"customer": record}, 201)

    async def _create_product(self, request: Request) -> Response:
        """`POST products.json` `{"product": {...}}` → 201. Variants given (or one default) get ids and an
        inventory item whose stock is not tracked (`inventory_management: null`, no inventory level)."""
        given = await self._body(request, "product")
        title = str(given.get("title") or "").strip()
        if not title:
            raise ShopifyError(422, {"title": ["can't be blank"]})
        with self.sandbox.lock:
            now = datetime.now(UTC).replace(microsecond=0)
            pid = self._new_id("products", 8_000_000_000_000, now, "new", time.time_ns())
            stamp = self._ts(now)
            variants = []
            for n, raw in enumerate(given.get("variants") or [{}]):
                vid = 44_000_000_000_000 + int(now.timestamp()) * 1000 + _number("variant", pid, n)
                iid = 46_000_000_000_000 + int(now.timestamp()) * 1000 + _number("item", pid, n)
                option = raw.get("option1") or "Default Title"
                variants.append({
                    "id": vid, "product_id": pid, "title": option, "price": str(raw.get("price") or "0.00"),
                    "position": n + 1, "inventory_policy": "deny", "compare_at_price": raw.get("compare_at_price"),
                    "option1": option, "option2": None, "option3": None, "created_at": stamp, "updated_at": stamp,
                    "taxable": bool(raw.get("taxable", True)), "barcode": raw.get("barcode"), "sku": raw.get("sku"),
                    "inventory_item_id": iid, "inventory_management": None, "inventory_quantity": 0,
                    "old_inventory_quantity": 0, "image_id": None,
                    "admin_graphql_api_id": f"gid://shopify/ProductVariant/{vid}",
                })
            status = given.get("status") or "active"
            record = {
                "id": pid, "title": title, "body_html": given.get("body_html"), "vendor": given.get("vendor") or
                self.shop()["name"], "product_type": given.get("product_type") or "", "created_at": stamp,
                "handle": given.get("handle") or "-".join(title.lower().split()), "updated_at": stamp,
                "published_at": stamp if status == "active" else None, "template_suffix": None,
                "published_scope": "global", "tags": given.get("tags") or "", "status": status,
                "admin_graphql_api_id": f"gid://shopify/Product/{pid}", "variants": variants,
                "options": [{"id": pid + 1, "product_id": pid, "name": "Title", "position": 1,
                             "values": [v["option1"] for v in variants]}],
                "images": [], "image": None,
            }
            self.records["products"][pid] = record
            snapshot = json.loads(json.dumps(record))
        return self._json({"product": snapshot}, 201)

    async def _set_level(self, request: Request) -> Response:
        given = await self._body(request, None)
        values: dict[str, int] = {}
        for name in ("location_id", "inventory_item_id", "available"):
            value = given.get(name)
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ShopifyError(400, {name: "Required parameter missing or invalid"})
            values[name] = value
        with self.sandbox.lock:
            if values["location_id"] != PRIMARY_LOCATION_ID:
                raise ShopifyError(404, "Not Found")
            level = self.records["inventory_levels"].get(values["inventory_item_id"])
            if level is None:
                raise ShopifyError(422, ["Inventory item does not exist"])
            self._set_available(level, values["available"], datetime.now(UTC).replace(microsecond=0))
        return self._json({"inventory_level": level})

    def _set_available(self, level: dict[str, Any], available: int, now: datetime) -> None:
        """A stock change moves the level, and the variant (and so its product) that reports it."""
        level["available"] = available
        level["updated_at"] = self._ts(now)
        for product in self.records["products"].values():
            for variant in product["variants"]:
                if variant["inventory_item_id"] == level["inventory_item_id"]:
                    variant["old_inventory_quantity"] = variant["inventory_quantity"]
                    variant["inventory_quantity"] = available
                    variant["updated_at"] = product["updated_at"] = self._ts(now)

    # -- ground truth ------------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        with self.sandbox.lock:
            return [json.loads(json.dumps(r)) for r in sorted(self.records[stream].values(), key=self._key(stream))]

    def touch(self, stream: str, count: int) -> list[str]:
        """What a merchant does in the admin: tag customers and orders, edit products, count stock."""
        touched: list[str] = []
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = self._ts(now)
        with self.sandbox.lock:
            rows = sorted(self.records[stream].values(), key=self._key(stream))[:count]
            for record in rows:
                if stream == "inventory_levels":
                    available = record["available"] - 1 if record["available"] > 0 else record["available"] + 5
                    self._set_available(record, available, now)
                    touched.append(record["admin_graphql_api_id"])
                    continue
                if stream == "customers":
                    record["note"] = f"Called back on {stamp}"
                    record["tags"] = ", ".join(t for t in (record["tags"], "followed-up") if t)
                elif stream == "orders":
                    record["note"] = f"Gift wrap requested ({stamp})"
                    record["tags"] = ", ".join(t for t in (record["tags"], "gift") if t)
                else:
                    record["body_html"] = f"<p>{record['title']} by {VENDOR}. Updated {stamp}.</p>"
                record["updated_at"] = stamp
                touched.append(str(record["id"]))
        return touched


EMULATOR = ShopifyEmulator
