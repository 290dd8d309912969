"""Square's API as the squareup SDK sees it: `/v2` JSON lists and searches with `cursor` in and out, `{}` for an
empty result, `{"errors": [{"category", "code", "detail", "field"}]}` for every failure, Bearer access tokens,
a `Square-Version` header, and `idempotency_key` body fields that replay the first answer.

What the seller holds, derived from the shared world: the customers who pay through Square (the people the
world sends to the "square" processor), their payments and one order per payment (the invoice lines as line
items), the product catalog as items with one variation carrying the SKU, and the stock of every variation at
the one location `L1SANDBOX`.

Subscriptions (Subscriptions API: `POST /v2/subscriptions`, `POST /v2/subscriptions/search`, `GET
/v2/subscriptions/{id}`, `POST /v2/subscriptions/{id}/cancel`) on the world's plans, each a catalog
`SUBSCRIPTION_PLAN` with one `SUBSCRIPTION_PLAN_VARIATION` (STATIC price in the seller's USD, `MONTHLY` or `ANNUAL`
cadence; `GET /v2/catalog/list?types=SUBSCRIPTION_PLAN_VARIATION` and the catalog search list them). Statuses
`PENDING` (its `start_date` is still ahead), `ACTIVE`, `CANCELED`, `DEACTIVATED` (Square stopped billing it) and
`PAUSED`; `charged_through_date` is the last day billed. A cancel of an ACTIVE subscription sets `canceled_date` to
the end of the billed period and leaves it ACTIVE until then, as Square documents; the sandbox does not move time on
by itself, so the switch to CANCELED, like a deactivation or a pause, is the sandbox side `set_subscription_status`
(control API `POST /_sandbox/square/subscriptions/simulate`). Search has no time filter (Square's has none) and
answers in order of creation. No invoice or payment is made for a subscription.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Emulator, SandboxState, bearer_token, fingerprint
from .ids import token
from .world import Payment, Subscription, World, add_interval

#: The seller's (fake) access token the sandbox accepts; the connector's sandbox mode sends the same string.
SANDBOX_ACCESS_TOKEN = "FAKE-sandbox-square-access-token-integration-pipelines"
LOCATION_ID = "L1SANDBOX"
#: What CreateCustomer and UpdateCustomer take besides `idempotency_key` / `version` (Square's Customer fields a
#: seller may set).
CUSTOMER_FIELDS = frozenset({"given_name", "family_name", "company_name", "nickname", "email_address", "address",
                             "phone_number", "reference_id", "note", "birthday", "tax_ids"})
MERCHANT_ID = "MLSANDBOX0000"
CATALOG_PAGE_SIZE = 100  # ListCatalog's page size is fixed by Square ("currently set to be 100")
#: Square's SubscriptionStatus values (COMPLETED, a plan that ran its course, is not emulated).
SUBSCRIPTION_STATUSES = ("PENDING", "ACTIVE", "CANCELED", "DEACTIVATED", "PAUSED")
#: What CreateSubscription takes besides `idempotency_key` (squareup 46's `subscriptions.create`).
_SUBSCRIPTION_CREATE_FIELDS = frozenset({"location_id", "plan_variation_id", "customer_id", "start_date",
                                         "canceled_date", "tax_percentage", "price_override_money", "card_id",
                                         "timezone", "source", "monthly_billing_anchor_date", "phases"})
#: A billing interval as a subscription phase's `cadence`.
_CADENCE = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "ANNUAL"}
_VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")
_STATUS_CODES = {500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE",
                 504: "GATEWAY_TIMEOUT", 404: "NOT_FOUND", 400: "BAD_REQUEST", 401: "UNAUTHORIZED",
                 403: "FORBIDDEN", 429: "RATE_LIMITED"}
_STATUS_CATEGORY = {401: "AUTHENTICATION_ERROR", 403: "AUTHENTICATION_ERROR", 429: "RATE_LIMIT_ERROR"}
_MISSING_AUTH = (
    "Your request did not include an `Authorization` http header with an access token. The header value is "
    'expected to be of the format "Bearer TOKEN" (without quotation marks), where TOKEN is to be replaced with '
    'your access token (e.g. "Bearer ABC123def456GHI789jkl0"). For more information, see '
    "https://developer.squareup.com/docs/build-basics/access-tokens."
)


class SquareError(Exception):
    """A request Square refuses: carries the status and the one error object of its answer."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None,
                 category: str = "INVALID_REQUEST_ERROR") -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field, self.category = status, code, detail, field, category


# -- value helpers ----------------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    """Square's timestamps: RFC 3339 in UTC with milliseconds (`2026-03-07T10:04:05.123Z`)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 timestamp from a request, or Square's 400 INVALID_TIME naming the field."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SquareError(400, "INVALID_TIME", f"Invalid timestamp `{value}`: expected an RFC 3339 time.",
                          field) from None
    if parsed.tzinfo is None:
        raise SquareError(400, "INVALID_TIME", f"Timestamp `{value}` has no time zone offset.", field)
    return parsed.astimezone(UTC)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _uuid(*parts: object) -> str:
    """Square's subscription and action ids are UUIDs (`8151fc89-da15-4eb9-a685-1a70883cebfc`); deterministic."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def _square_id(*parts: object, length: int = 26) -> str:
    """Square-looking ids (`JDKYHBWT1D4F8MFH63DBMEN8Y4`): upper-case letters and digits, deterministic."""
    return token("square", *parts, length=length).upper()


def _in_range(moment: datetime, time_range: Any, field: str) -> bool:
    """A TimeRange `{start_at, end_at}` filter: start inclusive, end exclusive."""
    if time_range is None:
        return True
    if not isinstance(time_range, dict):
        raise SquareError(400, "EXPECTED_OBJECT", f"Expected `{field}` to be an object.", field)
    start, end = time_range.get("start_at"), time_range.get("end_at")
    if start is not None and moment < parse_time(start, f"{field}.start_at"):
        return False
    return not (end is not None and moment >= parse_time(end, f"{field}.end_at"))


def _created_window(params: Any) -> tuple[datetime, datetime]:
    """`begin_time`/`end_time` of ListPayments and ListPaymentRefunds (on `created_at`): the last year by default,
    and a window that ends before it begins is refused."""
    now = _now()
    begin = parse_time(params["begin_time"], "begin_time") if "begin_time" in params else now - timedelta(days=365)
    end = parse_time(params["end_time"], "end_time") if "end_time" in params else now
    if begin > end:
        raise SquareError(400, "INVALID_TIME_RANGE", "The begin_time must be before the end_time.", "begin_time")
    return begin, end


def _limit(value: Any, *, field: str, default: int, maximum: int, strict: bool) -> int:
    """Page sizes. `strict` endpoints refuse out-of-range values (customers); others silently use the default
    (ListPayments: "if the provided value is greater than 100, it is ignored")."""
    if value is None:
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise SquareError(400, "EXPECTED_INTEGER", f"Expected an integer value for `{field}`.", field) from None
    if 1 <= limit <= maximum:
        return limit
    if not strict:
        return default
    if limit < 1:
        raise SquareError(400, "VALUE_TOO_LOW", f"`{field}` must be greater than or equal to 1.", field)
    raise SquareError(400, "VALUE_TOO_HIGH", f"`{field}` must be less than or equal to {maximum}.", field)


class SquareEmulator(Emulator):
    name = "square"
    prefixes = ("/v2/",)
    streams = ("customers", "payments", "refunds", "orders", "catalog_items", "inventory_counts", "subscriptions",
               "subscription_plan_variations")

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.access_token = SANDBOX_ACCESS_TOKEN
        self.catalog_page_size = CATALOG_PAGE_SIZE  # a sandbox knob, so tests can see the list paginate
        self.rng = world.rng("square")
        self.location = self._build_location()
        self.customers: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, dict[str, Any]] = {}  # by variation id (one location, state IN_STOCK)
        self.inventory_changes: list[dict[str, Any]] = []
        self.searches: deque[tuple[str, dict[str, Any]]] = deque(maxlen=1000)
        self.customer_ids: dict[int, str] = {}  # world person key → Square customer id
        self.variation_ids: dict[int, str] = {}  # world product key → Square item variation id
        self.plans: dict[str, dict[str, Any]] = {}  # catalog SUBSCRIPTION_PLAN objects, variations nested
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}  # PaymentRefund objects by id
        self._build_catalog()
        self._build_customers()
        self._build_sales()
        self._build_subscriptions()

    # -- the seller's data, from the world ----------------------------------------------------------
    def _build_location(self) -> dict[str, Any]:
        created = self.world.start - timedelta(days=400)
        return {
            "id": LOCATION_ID, "name": "Acme Trading (Main)", "merchant_id": MERCHANT_ID,
            "address": {"address_line_1": "1 Market Street", "locality": "Springfield",
                        "administrative_district_level_1": "IL", "postal_code": "62701", "country": "US"},
            "timezone": "UTC", "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
            "status": "ACTIVE", "created_at": iso(created), "country": "US", "language_code": "en-US",
            "currency": "USD", "business_name": "Acme Trading", "type": "PHYSICAL",
            "business_email": "sales@acme-trading.example.com", "mcc": "5999",
        }

    def _build_catalog(self) -> None:
        for product in self.world.products:
            item_id = _square_id("item", self.world.seed, product.key, length=24)
            variation_id = _square_id("variation", self.world.seed, product.key, length=24)
            created = self.world.start - timedelta(days=90 + product.key)
            updated = self.world.start - timedelta(days=30 - product.key, seconds=self.rng.randrange(86_400))
            version = int(updated.timestamp() * 1000)
            common = {"updated_at": iso(updated), "created_at": iso(created), "version": version,
                      "is_deleted": False, "present_at_all_locations": True}
            variation = {
                "type": "ITEM_VARIATION", "id": variation_id, **common,
                "item_variation_data": {
                    "item_id": item_id, "name": "Regular", "sku": product.sku, "ordinal": 0,
                    "pricing_type": "FIXED_PRICING", "price_money": _money(product.unit_price, product.currency),
                    "location_overrides": [{"location_id": LOCATION_ID, "track_inventory": True}],
                    "track_inventory": True, "sellable": True, "stockable": True,
                },
            }
            self.items[item_id] = {
                "type": "ITEM", "id": item_id, **common,
                "item_data": {
                    "name": product.name, "description": product.name, "is_taxable": True,
                    "visibility": "PRIVATE", "variations": [variation], "product_type": "REGULAR",
                    "skip_modifier_screen": False, "ecom_visibility": "UNINDEXED",
                    "description_plaintext": product.name,
                },
            }
            self.variation_ids[product.key] = variation_id
            counted = self.world.start + timedelta(seconds=self.rng.randrange(self.world.days * 86_400))
            self.counts[variation_id] = {
                "catalog_object_id": variation_id, "catalog_object_type": "ITEM_VARIATION", "state": "IN_STOCK",
                "location_id": LOCATION_ID, "quantity": str(product.stock), "calculated_at": iso(counted),
                "is_estimated": False,
            }

    def _build_customers(self) -> None:
        payers = {p.person.key for p in self.world.payments if p.processor == "square"}
        for person in self.world.people:
            if person.in_stripe and person.key not in payers:
                continue  # Square holds the people who pay through Square
            cid = _square_id("customer", self.world.seed, person.key)
            self.customer_ids[person.key] = cid
            self.customers[cid] = {
                "id": cid, "created_at": iso(person.created_at), "updated_at": iso(person.updated_at),
                "given_name": person.first_name, "family_name": person.last_name,
                "company_name": person.company.name, "email_address": person.email,
                "address": {"address_line_1": person.street, "locality": person.city,
                            "postal_code": person.postal_code, "country": person.country},
                "phone_number": person.phone, "preferences": {"email_unsubscribed": False},
                "creation_source": "THIRD_PARTY", "version": self.rng.randrange(0, 4),
            }

    def _build_sales(self) -> None:
        seed = self.world.seed
        for payment in self.world.payments:
            if payment.processor != "square":
                continue
            pid = token("square-payment", seed, payment.key, length=29)
            oid = token("square-order", seed, payment.key, length=27)
            currency = payment.currency
            created = payment.created_at
            completed = created + timedelta(seconds=2, milliseconds=self.rng.randrange(1000))
            customer_id = self.customer_ids[payment.person.key]
            card = {"card_brand": self.rng.choice(["VISA", "MASTERCARD", "AMERICAN_EXPRESS"]),
                    "last_4": f"{self.rng.randrange(10_000):04d}", "exp_month": self.rng.randint(1, 12),
                    "exp_year": 2028 + self.rng.randrange(4), "card_type": "CREDIT", "prepaid_type": "NOT_PREPAID",
                    "fingerprint": f"sq-1-{token('fp', seed, payment.person.key, length=40)}"}
            card_details = {"status": "CAPTURED", "card": card, "entry_method": "KEYED", "cvv_status": "CVV_ACCEPTED",
                            "avs_status": "AVS_ACCEPTED", "statement_description": "SQ *ACME TRADING",
                            "card_payment_timeline": {"authorized_at": iso(created), "captured_at": iso(completed)}}
            invoice = payment.invoice
            record: dict[str, Any] = {
                "id": pid, "created_at": iso(created), "updated_at": iso(completed),
                "amount_money": _money(payment.amount, currency), "total_money": _money(payment.amount, currency),
                "approved_money": _money(payment.amount, currency),
                "processing_fee": [{"effective_at": iso(completed), "type": "INITIAL",
                                    "amount_money": _money(payment.fee, currency)}],
                "status": "COMPLETED", "delay_duration": "PT168H", "source_type": "CARD",
                "card_details": card_details, "location_id": LOCATION_ID, "order_id": oid,
                "customer_id": customer_id, "buyer_email_address": payment.person.email,
                "receipt_number": pid[:4], "receipt_url": f"https://squareup.com/receipt/preview/{pid}",
                "application_details": {"square_product": "ECOMMERCE_API", "application_id": "sq0idp-SANDBOX"},
                "capabilities": ["EDIT_AMOUNT_UP", "EDIT_AMOUNT_DOWN", "EDIT_TIP_AMOUNT_UP",
                                 "EDIT_TIP_AMOUNT_DOWN"],
                "version_token": token("vt", pid, 0, length=43),
            }
            if invoice is not None:
                record["reference_id"] = invoice.number
                record["note"] = f"Payment for {invoice.number}"
            self.payments[pid] = record
            self.orders[oid] = self._order(oid, pid, payment, customer_id, created, completed, card_details)

    def _order(self, oid: str, pid: str, payment: Payment, customer_id: str, created: datetime, closed: datetime,
               card_details: dict[str, Any]) -> dict[str, Any]:
        currency = payment.currency
        lines = payment.invoice.lines if payment.invoice is not None else []
        line_items = []
        for n, line in enumerate(lines):
            amount = line.product.unit_price * line.quantity
            line_items.append({
                "uid": token("uid", oid, n, length=22), "name": line.product.name, "quantity": str(line.quantity),
                "catalog_object_id": self.variation_ids[line.product.key], "catalog_version": 1,
                "variation_name": "Regular", "item_type": "ITEM",
                "base_price_money": _money(line.product.unit_price, currency),
                "variation_total_price_money": _money(amount, currency),
                "gross_sales_money": _money(amount, currency), "total_tax_money": _money(0, currency),
                "total_discount_money": _money(0, currency), "total_money": _money(amount, currency),
            })
        total = payment.amount
        zero = _money(0, currency)
        order: dict[str, Any] = {
            "id": oid, "location_id": LOCATION_ID, "source": {"name": "Acme Online Store"},
            "customer_id": customer_id, "line_items": line_items,
            "net_amounts": {"total_money": _money(total, currency), "tax_money": zero, "discount_money": zero,
                            "tip_money": zero, "service_charge_money": zero},
            "tenders": [{"id": pid, "location_id": LOCATION_ID, "transaction_id": oid, "created_at": iso(created),
                         "amount_money": _money(total, currency), "type": "CARD", "card_details": card_details,
                         "payment_id": pid}],
            "created_at": iso(created - timedelta(seconds=30)), "updated_at": iso(closed), "closed_at": iso(closed),
            "state": "COMPLETED", "version": 4, "total_money": _money(total, currency),
            "total_tax_money": zero, "total_discount_money": zero, "total_tip_money": zero,
            "total_service_charge_money": zero, "net_amount_due_money": zero,
        }
        if payment.invoice is not None:
            order["reference_id"] = payment.invoice.number
        return order

    # -- protocol -------------------------------------------------------------------------------------
    def error_response(self, status: int, message: str, code: str | None = None, field: str | None = None,
                       category: str | None = None) -> Response:
        error: dict[str, Any] = {
            "category": category or _STATUS_CATEGORY.get(status, "API_ERROR" if status >= 500 else
                                                          "INVALID_REQUEST_ERROR"),
            "code": code or _STATUS_CODES.get(status, "BAD_REQUEST"), "detail": message,
        }
        if field:
            error["field"] = field
        return JSONResponse({"errors": [error]}, status_code=status)

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """Square answers a path it does not serve, or a method a path does not take, with one 404."""
        return self.error_response(404, f"API endpoint for URL path `{request.url.path}` and HTTP method "
                                   f"`{request.method}` is not found.", "NOT_FOUND")

    def rate_limit_response(self, retry_after: float) -> Response:
        """Square's 429 carries its error body and no documented Retry-After: clients back off on their own."""
        return self.error_response(429, "Rate limit exceeded. Please retry later.", "RATE_LIMITED",
                                   category="RATE_LIMIT_ERROR")

    def _fail(self, error: SquareError) -> Response:
        return self.error_response(error.status, error.detail, error.code, error.field, error.category)

    def _authorize(self, request: Request) -> None:
        presented = bearer_token(request)
        if presented is None:
            raise SquareError(401, "UNAUTHORIZED", _MISSING_AUTH, category="AUTHENTICATION_ERROR")
        if presented != self.access_token:
            raise SquareError(401, "UNAUTHORIZED", "This request could not be authorized.",
                              category="AUTHENTICATION_ERROR")
        version = request.headers.get("square-version")
        if version is not None and not _VERSION_FORMAT.fullmatch(version):
            raise SquareError(400, "INVALID_SQUARE_VERSION_FORMAT",
                              f"Invalid Square-Version format: `{version}`. Expected YYYY-MM-DD.")

    def _endpoint(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Authorize, run, and turn a SquareError into Square's error body."""
        async def endpoint(request: Request) -> Response:
            try:
                self._authorize(request)
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
                status, body = result
                return JSONResponse(body, status_code=status)
            except SquareError as error:
                return self._fail(error)
        return endpoint

    def routes(self) -> list[Route]:
        e = self._endpoint
        return [
            Route("/v2/locations", e(self._list_locations), methods=["GET"]),
            Route("/v2/locations/{location_id}", e(self._retrieve_location), methods=["GET"]),
            Route("/v2/customers", e(self._customers), methods=["GET", "POST"]),
            Route("/v2/customers/search", e(self._search_customers), methods=["POST"]),
            Route("/v2/customers/{customer_id}", e(self._customer), methods=["GET", "PUT", "DELETE"]),
            Route("/v2/payments", e(self._list_payments), methods=["GET"]),
            Route("/v2/payments/{payment_id}", e(self._retrieve_payment), methods=["GET"]),
            Route("/v2/refunds", e(self._refunds), methods=["GET", "POST"]),
            Route("/v2/refunds/{refund_id}", e(self._retrieve_refund), methods=["GET"]),
            Route("/v2/orders/search", e(self._search_orders), methods=["POST"]),
            Route("/v2/catalog/list", e(self._list_catalog), methods=["GET"]),
            Route("/v2/catalog/search", e(self._search_catalog), methods=["POST"]),
            Route("/v2/inventory/counts/batch-retrieve", e(self._retrieve_counts), methods=["POST"]),
            Route("/v2/inventory/changes/batch-create", e(self._create_changes), methods=["POST"]),
            Route("/v2/subscriptions", e(self._create_subscription), methods=["POST"]),
            Route("/v2/subscriptions/search", e(self._search_subscriptions), methods=["POST"]),
            Route("/v2/subscriptions/{subscription_id}", e(self._retrieve_subscription), methods=["GET"]),
            Route("/v2/subscriptions/{subscription_id}/cancel", e(self._cancel_subscription), methods=["POST"]),
        ]

    # -- request helpers ----------------------------------------------------------------------------------
    async def _json(self, request: Request) -> dict[str, Any]:
        """The JSON body of a POST; searches are kept in `self.searches` so tests can see the filters sent."""
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise SquareError(400, "EXPECTED_JSON_BODY", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise SquareError(400, "EXPECTED_OBJECT", "The request body must be a JSON object.")
        if request.url.path.endswith(("/search", "/batch-retrieve")):
            self.searches.append((request.url.path, body))
        return body

    @staticmethod
    def _page(rows: Sequence[dict[str, Any]], cursor: Any, limit: int, query: Any, key: str,
              extra: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """One page of `rows`. The cursor is opaque to clients; it holds the offset and a digest of the query,
        because Square requires the original query with a cursor. An empty result is `{}`."""
        digest = fingerprint(query)[:16]
        offset = 0
        if cursor not in (None, ""):
            try:
                state = json.loads(base64.urlsafe_b64decode(str(cursor).encode()))
                offset, seen = int(state["o"]), state["q"]
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise SquareError(400, "INVALID_CURSOR", "The pagination cursor is invalid.", "cursor") from None
            if seen != digest:
                raise SquareError(400, "INVALID_CURSOR", "The pagination cursor does not match the original "
                                  "query; send the same query with a cursor.", "cursor")
        page = list(rows[offset:offset + limit])
        body: dict[str, Any] = dict(extra or {})
        if page:
            body[key] = page
        if offset + limit < len(rows):
            body["cursor"] = base64.urlsafe_b64encode(json.dumps({"o": offset + limit, "q": digest}).encode()).decode()
        return 200, body

    def _location_ids(self, body: dict[str, Any], *, required: bool) -> list[str]:
        ids = body.get("location_ids")
        if ids is None:
            if required:
                raise SquareError(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `location_ids`.",
                                  "location_ids")
            return [LOCATION_ID]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise SquareError(400, "EXPECTED_ARRAY", "Expected `location_ids` to be an array of strings.",
                              "location_ids")
        if len(ids) > 10:
            raise SquareError(400, "ARRAY_LENGTH_TOO_LONG", "`location_ids` must contain at most 10 elements.",
                              "location_ids")
        for location_id in ids:
            if location_id != LOCATION_ID:
                raise SquareError(400, "NOT_FOUND", f"Location `{location_id}` not found.", "location_ids")
        return ids

    # -- locations --------------------------------------------------------------------------------------
    def _list_locations(self, request: Request) -> tuple[int, Any]:
        return 200, {"locations": [self.location]}

    def _retrieve_location(self, request: Request) -> tuple[int, Any]:
        wanted = request.path_params["location_id"]
        if wanted not in ("main", LOCATION_ID):
            raise SquareError(404, "NOT_FOUND", f"Location `{wanted}` not found.")
        return 200, {"location": self.location}

    # -- customers --------------------------------------------------------------------------------------
    @staticmethod
    def _customer_order(sort_field: Any, sort_order: Any, where: str) -> tuple[Callable[[dict], Any], bool]:
        field = sort_field or "DEFAULT"
        order = sort_order or "ASC"
        if field not in ("DEFAULT", "CREATED_AT"):
            raise SquareError(400, "INVALID_ENUM_VALUE", f"`{field}` is not a valid value for {where}.field.",
                              f"{where}.field")
        if order not in ("ASC", "DESC"):
            raise SquareError(400, "INVALID_SORT_ORDER", f"`{order}` is not a valid sort order.", f"{where}.order")
        if field == "CREATED_AT":
            return (lambda c: (c["created_at"], c["id"])), order == "DESC"
        return (lambda c: (c.get("given_name", ""), c.get("family_name", ""), c["id"])), order == "DESC"

    async def _customers(self, request: Request) -> tuple[int, Any]:
        if request.method == "POST":
            return await self._create_customer(request)
        params = request.query_params
        limit = _limit(params.get("limit"), field="limit", default=100, maximum=100, strict=True)
        key, reverse = self._customer_order(params.get("sort_field"), params.get("sort_order"), "sort")
        rows = sorted(self.customers.values(), key=key, reverse=reverse)
        query = {k: v for k, v in params.items() if k not in ("cursor", "limit")}
        return self._page(rows, params.get("cursor"), limit, query, "customers")

    async def _search_customers(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        limit = _limit(body.get("limit"), field="limit", default=100, maximum=100, strict=True)
        query = body.get("query") or {}
        filters = query.get("filter") or {}
        sort = query.get("sort") or {}
        rows = list(self.customers.values())
        for field in ("created_at", "updated_at"):
            if field in filters:
                rows = [c for c in rows if _in_range(_at(c[field]), filters[field], f"query.filter.{field}")]
        for field in ("email_address", "phone_number", "reference_id"):
            text = filters.get(field)
            if text is None:
                continue
            if not isinstance(text, dict):
                raise SquareError(400, "EXPECTED_OBJECT", f"Expected `query.filter.{field}` to be an object.",
                                  f"query.filter.{field}")
            exact, fuzzy = text.get("exact"), text.get("fuzzy")
            if exact is not None:
                rows = [c for c in rows if (c.get(field) or "").lower() == str(exact).lower()]
            if fuzzy is not None:
                rows = [c for c in rows if str(fuzzy).lower() in (c.get(field) or "").lower()]
        if query.get("sort") is None:  # no sort: alphabetical by given and family name, as Square does
            key, reverse = self._customer_order("DEFAULT", "ASC", "query.sort")
        else:
            key, reverse = self._customer_order(sort.get("field"), sort.get("order"), "query.sort")
        rows.sort(key=key, reverse=reverse)
        extra = {"count": len(rows)} if body.get("count") is True else None  # `count: true` adds the total
        return self._page(rows, body.get("cursor"), limit, {"query": query}, "customers", extra)

    async def _customer(self, request: Request) -> tuple[int, Any]:
        """RetrieveCustomer (GET), UpdateCustomer (PUT, a sparse update: fields left out keep their values) and
        DeleteCustomer (DELETE → `{}`). A `version` (body for PUT, query for DELETE) is Square's optimistic
        concurrency: it must be the customer's current version, else the write is refused and nothing changes;
        without one the latest version is assumed. Each successful update adds one to the version."""
        customer_id = request.path_params["customer_id"]
        if request.method == "PUT":
            body = await self._json(request)
        with self.sandbox.lock:
            customer = self.customers.get(customer_id)
            if customer is None:
                raise SquareError(404, "NOT_FOUND", f"Customer with ID `{customer_id}` not found.")
            if request.method == "GET":
                return 200, {"customer": customer}
            if request.method == "DELETE":
                self._check_version(customer, request.query_params.get("version"), "version")
                del self.customers[customer_id]
                return 200, {}
            version = body.get("version")
            fields = {k: v for k, v in body.items() if k != "version"}
            self._check_customer_fields(fields, creating=False)
            self._check_version(customer, version, "version")
            clear_null = request.headers.get("x-clear-null", "").lower() == "true"
            for name, value in fields.items():
                if value is None and not clear_null:
                    continue  # Square ignores nulls unless the request says `X-Clear-Null: true`
                if value is None:
                    customer.pop(name, None)
                else:
                    customer[name] = value
            customer["version"] += 1
            customer["updated_at"] = iso(max(_now(), _at(customer["updated_at"]) + timedelta(milliseconds=1)))
            return 200, {"customer": customer}

    @staticmethod
    def _check_version(customer: dict[str, Any], given: Any, field: str) -> None:
        if given is None:
            return
        try:
            version = int(given)
        except (TypeError, ValueError):
            raise SquareError(400, "EXPECTED_INTEGER", f"Expected an integer value for `{field}`.", field) from None
        if version != customer["version"]:
            raise SquareError(409, "CONFLICT", f"Version mismatch: customer `{customer['id']}` is at version "
                              f"{customer['version']}, the request named version {version}.", field)

    @staticmethod
    def _check_customer_fields(fields: dict[str, Any], *, creating: bool) -> None:
        unknown = sorted(set(fields) - CUSTOMER_FIELDS)
        if unknown:
            raise SquareError(400, "UNKNOWN_BODY_PARAMETER", f"Unknown body parameter `{unknown[0]}`.", unknown[0])
        if creating and not any(fields.get(k) for k in ("given_name", "family_name", "company_name",
                                                         "email_address", "phone_number")):
            raise SquareError(400, "BAD_REQUEST", "At least one of the following fields must be set: given_name, "
                              "family_name, company_name, email_address, phone_number.")
        email = fields.get("email_address")
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(email)):
            raise SquareError(400, "INVALID_EMAIL_ADDRESS", "Expected `email_address` to be a valid email address.",
                              "email_address")

    async def _create_customer(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        key = body.get("idempotency_key")
        fields = {k: v for k, v in body.items() if k != "idempotency_key"}
        self._check_customer_fields(fields, creating=True)

        def produce() -> tuple[int, Any]:
            now = iso(_now())
            cid = _square_id("customer", "new", time.time_ns())
            customer = {"id": cid, "created_at": now, "updated_at": now, **fields,
                        "preferences": {"email_unsubscribed": False}, "creation_source": "THIRD_PARTY",
                        "version": 0}
            with self.sandbox.lock:
                self.customers[cid] = customer
            return 200, {"customer": customer}

        return self._idempotent(key, {"path": "/v2/customers", "body": fields}, produce)

    def _idempotent(self, key: Any, payload: Any, produce: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        status, answer, _replayed = self.replay_or_store(key, payload, produce)
        if status == -1:
            raise SquareError(400, "IDEMPOTENCY_KEY_REUSED", "The idempotency key can only be retried with the "
                              "same request data.", "idempotency_key")
        return status, answer

    # -- payments ---------------------------------------------------------------------------------------
    def _list_payments(self, request: Request) -> tuple[int, Any]:
        params = request.query_params
        begin, end = _created_window(params)
        limit = _limit(params.get("limit"), field="limit", default=100, maximum=100, strict=False)
        sort_field = params.get("sort_field", "CREATED_AT")
        if sort_field not in ("CREATED_AT", "UPDATED_AT", "OFFLINE_CREATED_AT"):
            raise SquareError(400, "INVALID_ENUM_VALUE", f"`{sort_field}` is not a valid value for sort_field.",
                              "sort_field")
        sort_order = params.get("sort_order", "DESC")
        if sort_order not in ("ASC", "DESC"):
            raise SquareError(400, "INVALID_SORT_ORDER", f"`{sort_order}` is not a valid sort order.", "sort_order")
        location = params.get("location_id", LOCATION_ID)
        rows = [p for p in self.payments.values()
                if p["location_id"] == location and begin <= _at(p["created_at"]) < end]
        if "updated_at_begin_time" in params or "updated_at_end_time" in params:
            rows = [p for p in rows if _in_range(_at(p["updated_at"]), {
                "start_at": params.get("updated_at_begin_time"), "end_at": params.get("updated_at_end_time")},
                "updated_at_begin_time")]
        field = "updated_at" if sort_field == "UPDATED_AT" else "created_at"
        rows.sort(key=lambda p: (p[field], p["id"]), reverse=sort_order == "DESC")
        query = {k: v for k, v in params.items() if k not in ("cursor", "limit")}
        return self._page(rows, params.get("cursor"), limit, query, "payments")

    def _retrieve_payment(self, request: Request) -> tuple[int, Any]:
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            raise SquareError(404, "NOT_FOUND", f"Could not find payment with id: {request.path_params['payment_id']}")
        return 200, {"payment": payment}

    # -- refunds ----------------------------------------------------------------------------------------
    def _record_refund(self, payment: dict[str, Any], amount: int, reason: str | None, when: datetime
                       ) -> dict[str, Any]:
        """A PaymentRefund of `amount` on `payment`, and the payment's own record of it (`refunded_money`,
        `refund_ids`, a new `updated_at` and `version_token`), as Square keeps both. The sandbox completes a refund at
        once (Square answers PENDING first and completes card refunds within moments)."""
        refund_id = f"{payment['id']}_{token('refund', payment['id'], time.time_ns(), length=20)}"
        currency = payment["amount_money"]["currency"]
        refund = {"id": refund_id, "status": "COMPLETED", "location_id": payment["location_id"], "unlinked": False,
                  "destination_type": "CARD", "amount_money": _money(amount, currency), "payment_id": payment["id"],
                  "order_id": payment.get("order_id"), "reason": reason, "created_at": iso(when),
                  "updated_at": iso(when)}
        self.refunds[refund_id] = refund
        refunded = payment.get("refunded_money", {"amount": 0})["amount"] + amount
        payment["refunded_money"] = _money(refunded, currency)
        payment["refund_ids"] = [*payment.get("refund_ids", []), refund_id]
        payment["version_token"] = token("vt", payment["id"], time.time_ns(), length=43)
        payment["updated_at"] = iso(max(when, _at(payment["updated_at"]) + timedelta(milliseconds=1)))
        return refund

    async def _refunds(self, request: Request) -> tuple[int, Any]:
        if request.method == "POST":
            return await self._refund_payment(request)
        return self._list_refunds(request)

    async def _refund_payment(self, request: Request) -> tuple[int, Any]:
        """RefundPayment: `idempotency_key`, `payment_id`, `amount_money` (at most what is left to refund, in the
        payment's currency), optional `reason`."""
        body = await self._json(request)
        key = body.get("idempotency_key")
        for field in ("idempotency_key", "payment_id", "amount_money"):
            if body.get(field) in (None, ""):
                raise SquareError(400, "MISSING_REQUIRED_PARAMETER", f"Missing required parameter `{field}`.", field)
        money = body["amount_money"]
        if not isinstance(money, dict) or not isinstance(money.get("amount"), int) or money["amount"] < 1:
            raise SquareError(400, "INVALID_VALUE", "`amount_money.amount` must be a positive integer.",
                              "amount_money.amount")
        fields = {k: v for k, v in body.items() if k != "idempotency_key"}

        def produce() -> tuple[int, Any]:
            with self.sandbox.lock:
                payment = self.payments.get(str(body["payment_id"]))
                if payment is None:
                    raise SquareError(404, "NOT_FOUND", f"Could not find payment with id: {body['payment_id']}",
                                       "payment_id")
                if money.get("currency") != payment["amount_money"]["currency"]:
                    raise SquareError(400, "CURRENCY_MISMATCH", "The refund currency must be the payment's "
                                       f"({payment['amount_money']['currency']}).", "amount_money.currency")
                left = payment["amount_money"]["amount"] - payment.get("refunded_money", {"amount": 0})["amount"]
                if money["amount"] > left:
                    raise SquareError(400, "REFUND_AMOUNT_INVALID", "The requested refund amount exceeds the "
                                       f"amount available to refund ({left}).", "amount_money.amount")
                return 200, {"refund": self._record_refund(payment, money["amount"], body.get("reason"), _now())}

        return self._idempotent(key, {"path": "/v2/refunds", "body": fields}, produce)

    def _list_refunds(self, request: Request) -> tuple[int, Any]:
        """ListPaymentRefunds: `begin_time`/`end_time` on `created_at` (default: the last year), `sort_order` by
        `created_at` (DESC by default), `location_id`, `status`, at most 100 a page."""
        params = request.query_params
        begin, end = _created_window(params)
        limit = _limit(params.get("limit"), field="limit", default=100, maximum=100, strict=False)
        sort_order = params.get("sort_order", "DESC")
        if sort_order not in ("ASC", "DESC"):
            raise SquareError(400, "INVALID_SORT_ORDER", f"`{sort_order}` is not a valid sort order.", "sort_order")
        with self.sandbox.lock:
            rows = [r for r in self.refunds.values() if begin <= _at(r["created_at"]) <= end
                    and r["location_id"] == params.get("location_id", r["location_id"])
                    and r["status"] == params.get("status", r["status"])]
        rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=sort_order == "DESC")
        query = {k: v for k, v in params.items() if k not in ("cursor", "limit")}
        return self._page(rows, params.get("cursor"), limit, query, "refunds")

    def _retrieve_refund(self, request: Request) -> tuple[int, Any]:
        refund = self.refunds.get(request.path_params["refund_id"])
        if refund is None:
            raise SquareError(404, "NOT_FOUND", f"Could not find refund with id: {request.path_params['refund_id']}")
        return 200, {"refund": refund}

    # -- orders -----------------------------------------------------------------------------------------
    async def _search_orders(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        locations = self._location_ids(body, required=True)
        limit = _limit(body.get("limit"), field="limit", default=500, maximum=1000, strict=True)
        query = body.get("query") or {}
        filters = query.get("filter") or {}
        sort = query.get("sort") or {}
        sort_field = sort.get("sort_field", "CREATED_AT")
        if sort_field not in ("CREATED_AT", "UPDATED_AT", "CLOSED_AT"):
            raise SquareError(400, "INVALID_ENUM_VALUE", f"`{sort_field}` is not a valid value for "
                              "query.sort.sort_field.", "query.sort.sort_field")
        sort_order = sort.get("sort_order", "DESC")
        if sort_order not in ("ASC", "DESC"):
            raise SquareError(400, "INVALID_SORT_ORDER", f"`{sort_order}` is not a valid sort order.",
                              "query.sort.sort_order")
        rows = [o for o in self.orders.values() if o["location_id"] in locations]
        date_filter = filters.get("date_time_filter") or {}
        if len(date_filter) > 1:
            raise SquareError(400, "BAD_REQUEST", "Only one of created_at, updated_at or closed_at can be set in "
                              "query.filter.date_time_filter.", "query.filter.date_time_filter")
        for field, time_range in date_filter.items():
            if field not in ("created_at", "updated_at", "closed_at"):
                raise SquareError(400, "UNKNOWN_BODY_PARAMETER", f"Unknown field `{field}`.",
                                  f"query.filter.date_time_filter.{field}")
            if sort_field != field.upper():
                raise SquareError(400, "BAD_REQUEST", f"The sort_field must be {field.upper()} when filtering by "
                                  f"date_time_filter.{field}.", "query.sort.sort_field")
            rows = [o for o in rows if o.get(field) and _in_range(_at(o[field]), time_range,
                                                                      f"query.filter.date_time_filter.{field}")]
        states = (filters.get("state_filter") or {}).get("states")
        if states:
            rows = [o for o in rows if o["state"] in states]
        customers = (filters.get("customer_filter") or {}).get("customer_ids")
        if customers:
            rows = [o for o in rows if o.get("customer_id") in customers]
        field = sort_field.lower()
        rows.sort(key=lambda o: (o.get(field) or "", o["id"]), reverse=sort_order == "DESC")
        if body.get("return_entries"):
            entries = [{"order_id": o["id"], "version": o["version"], "location_id": o["location_id"]} for o in rows]
            return self._page(entries, body.get("cursor"), limit, {"l": locations, "q": query}, "order_entries")
        return self._page(rows, body.get("cursor"), limit, {"l": locations, "q": query}, "orders")

    # -- catalog ----------------------------------------------------------------------------------------
    def _catalog_objects(self, types: Sequence[str], include_deleted: bool) -> list[dict[str, Any]]:
        wanted = {t.strip().upper() for t in types if t.strip()} or {"ITEM"}
        rows: list[dict[str, Any]] = []
        for item in sorted(self.items.values(), key=lambda i: i["id"]):
            if item["is_deleted"] and not include_deleted:
                continue
            if "ITEM" in wanted:
                rows.append(item)
            if "ITEM_VARIATION" in wanted:
                rows.extend(item["item_data"]["variations"])
        for plan in sorted(self.plans.values(), key=lambda p: p["id"]):
            if "SUBSCRIPTION_PLAN" in wanted:
                rows.append(plan)
            if "SUBSCRIPTION_PLAN_VARIATION" in wanted:
                rows.extend(plan["subscription_plan_data"]["subscription_plan_variations"])
        return rows

    def _list_catalog(self, request: Request) -> tuple[int, Any]:
        params = request.query_params
        rows = self._catalog_objects(params.get("types", "").split(","), include_deleted=False)
        query = {"types": params.get("types", "")}
        return self._page(rows, params.get("cursor"), self.catalog_page_size, query, "objects")

    async def _search_catalog(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        limit = _limit(body.get("limit"), field="limit", default=100, maximum=1000, strict=False)
        types = body.get("object_types") or ["ITEM"]
        rows = self._catalog_objects(types, include_deleted=bool(body.get("include_deleted_objects")))
        if body.get("begin_time") is not None:
            begin = parse_time(body["begin_time"], "begin_time")
            rows = [o for o in rows if _at(o["updated_at"]) > begin]  # exclusive, as Square documents
        latest = max((o["updated_at"] for o in self.items.values()), default=iso(_now()))
        query = {k: v for k, v in body.items() if k not in ("cursor", "limit")}
        return self._page(rows, body.get("cursor"), limit, query, "objects", extra={"latest_time": latest})

    # -- inventory --------------------------------------------------------------------------------------
    async def _retrieve_counts(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        locations = self._location_ids(body, required=False)
        limit = _limit(body.get("limit"), field="limit", default=1000, maximum=1000, strict=True)
        rows = [c for c in self.counts.values() if c["location_id"] in locations]
        if body.get("catalog_object_ids"):
            rows = [c for c in rows if c["catalog_object_id"] in body["catalog_object_ids"]]
        if body.get("states"):
            rows = [c for c in rows if c["state"] in body["states"]]
        if body.get("updated_after") is not None:
            after = parse_time(body["updated_after"], "updated_after")
            rows = [c for c in rows if _at(c["calculated_at"]) > after]
        rows.sort(key=lambda c: (c["calculated_at"], c["catalog_object_id"]), reverse=True)  # newest first
        query = {k: v for k, v in body.items() if k not in ("cursor", "limit")}
        return self._page(rows, body.get("cursor"), limit, query, "counts")

    async def _create_changes(self, request: Request) -> tuple[int, Any]:
        body = await self._json(request)
        key = body.get("idempotency_key")
        if not key:
            raise SquareError(400, "MISSING_REQUIRED_PARAMETER", "Missing required parameter `idempotency_key`.",
                              "idempotency_key")
        if len(str(key)) > 128:
            raise SquareError(400, "VALUE_TOO_LONG", "`idempotency_key` must be at most 128 characters.",
                              "idempotency_key")
        changes = body.get("changes") or []
        if not isinstance(changes, list) or not changes:
            raise SquareError(400, "ARRAY_EMPTY", "`changes` must contain at least one change.", "changes")
        if len(changes) > 100:
            raise SquareError(400, "ARRAY_LENGTH_TOO_LONG", "`changes` must contain at most 100 elements.",
                              "changes")
        parsed = [self._validate_change(n, change) for n, change in enumerate(changes)]
        ignore_unchanged = body.get("ignore_unchanged_counts", True)
        payload = {k: v for k, v in body.items() if k != "idempotency_key"}
        return self._idempotent(key, {"path": "/v2/inventory/changes/batch-create", "body": payload},
                                lambda: self._apply_changes(parsed, bool(ignore_unchanged)))

    def _validate_change(self, n: int, change: Any) -> tuple[str, dict[str, Any], Decimal]:
        where = f"changes[{n}]"
        if not isinstance(change, dict):
            raise SquareError(400, "EXPECTED_OBJECT", f"Expected `{where}` to be an object.", where)
        kind = change.get("type")
        if kind not in ("PHYSICAL_COUNT", "ADJUSTMENT"):
            raise SquareError(400, "INVALID_ENUM_VALUE", f"`{kind}` is not a valid value for {where}.type.",
                              f"{where}.type")
        part = "physical_count" if kind == "PHYSICAL_COUNT" else "adjustment"
        detail = change.get(part)
        if not isinstance(detail, dict):
            raise SquareError(400, "MISSING_REQUIRED_PARAMETER", f"Missing required parameter `{where}.{part}`.",
                              f"{where}.{part}")
        required = ["catalog_object_id", "quantity", "occurred_at"]
        required += ["state", "location_id"] if part == "physical_count" else ["from_state", "to_state",
                                                                               "location_id"]
        for name in required:
            if detail.get(name) in (None, ""):
                raise SquareError(400, "MISSING_REQUIRED_PARAMETER",
                                  f"Missing required parameter `{where}.{part}.{name}`.", f"{where}.{part}.{name}")
        if detail["catalog_object_id"] not in self.counts:
            raise SquareError(400, "INVALID_VALUE", f"Catalog object `{detail['catalog_object_id']}` is not a "
                              "tracked item variation.", f"{where}.{part}.catalog_object_id")
        if detail["location_id"] != LOCATION_ID:
            raise SquareError(400, "INVALID_VALUE", f"Location `{detail['location_id']}` not found.",
                              f"{where}.{part}.location_id")
        try:
            quantity = Decimal(str(detail["quantity"]))
        except InvalidOperation:
            raise SquareError(400, "INVALID_VALUE", f"`{detail['quantity']}` is not a decimal quantity.",
                              f"{where}.{part}.quantity") from None
        if not isinstance(detail["quantity"], str) or quantity < 0:
            raise SquareError(400, "INVALID_VALUE", "Expected `quantity` to be a non-negative decimal string.",
                              f"{where}.{part}.quantity")
        parse_time(detail["occurred_at"], f"{where}.{part}.occurred_at")
        return part, detail, quantity

    def _apply_changes(self, parsed: list[tuple[str, dict[str, Any], Decimal]],
                       ignore_unchanged: bool) -> tuple[int, Any]:
        now = iso(_now())
        created, touched = [], []
        with self.sandbox.lock:
            for part, detail, quantity in parsed:
                count = self.counts[detail["catalog_object_id"]]
                current = Decimal(count["quantity"])
                if part == "physical_count":
                    target = quantity if detail["state"] == "IN_STOCK" else current
                    if ignore_unchanged and target == current:
                        touched.append(count)
                        continue
                else:
                    target = current
                    if detail["to_state"] == "IN_STOCK":
                        target += quantity
                    if detail["from_state"] == "IN_STOCK":
                        target -= quantity
                if target != current:
                    count["quantity"] = _decimal_text(target)
                    count["calculated_at"] = now
                record = {**detail, "id": _square_id("change", time.time_ns(), len(self.inventory_changes)),
                          "catalog_object_type": "ITEM_VARIATION", "created_at": now}
                self.inventory_changes.append({"type": part.upper(), part: record})
                created.append({"type": "PHYSICAL_COUNT" if part == "physical_count" else "ADJUSTMENT",
                                part: record})
                touched.append(count)
        unique = list({c["catalog_object_id"]: dict(c) for c in touched}.values())
        answer: dict[str, Any] = {"counts": unique}
        if created:
            answer["changes"] = created
        return 200, answer

    # -- subscriptions ----------------------------------------------------------------------------------
    def _build_subscriptions(self) -> None:
        """The world's plans as catalog subscription plans, and its Square subscriptions as they stand."""
        seed = self.world.seed
        created = self.world.start - timedelta(days=100)
        for plan in self.world.subscription_plans:
            plan_id = _square_id("plan", seed, plan.code, length=24)
            variation_id = _square_id("plan-variation", seed, plan.code, length=24)
            common = {"updated_at": iso(created), "created_at": iso(created),
                      "version": int(created.timestamp() * 1000), "is_deleted": False,
                      "present_at_all_locations": True}
            variation = {
                "type": "SUBSCRIPTION_PLAN_VARIATION", "id": variation_id, **common,
                "subscription_plan_variation_data": {
                    "name": plan.name, "subscription_plan_id": plan_id, "can_prorate": False,
                    "phases": [{"uid": _square_id("phase", seed, plan.code, length=26), "ordinal": 0,
                                "cadence": _CADENCE[plan.interval],
                                "pricing": {"type": "STATIC", "price_money": _money(plan.unit_amount, "USD")}}],
                },
            }
            self.plans[plan_id] = {
                "type": "SUBSCRIPTION_PLAN", "id": plan_id, **common,
                "subscription_plan_data": {"name": plan.name.split()[0], "all_items": False,
                                           "subscription_plan_variations": [variation]},
            }
        for fact in self.world.subscriptions:
            if fact.processor == "square" and fact.person.key in self.customer_ids:
                self._build_subscription(fact)

    def _variation(self, variation_id: Any) -> dict[str, Any] | None:
        return next((v for p in self.plans.values() for v in p["subscription_plan_data"]["subscription_plan_variations"]
                     if v["id"] == variation_id), None)

    def _variation_of_plan(self, code: str) -> dict[str, Any]:
        found = self._variation(_square_id("plan-variation", self.world.seed, code, length=24))
        assert found is not None, code
        return found

    @staticmethod
    def _interval(variation: dict[str, Any]) -> str:
        cadence = variation["subscription_plan_variation_data"]["phases"][-1]["cadence"]
        return {v: k for k, v in _CADENCE.items()}.get(cadence, "month")

    def _subscription(self, sub_id: str, variation: dict[str, Any], customer_id: str, created: datetime,
                      start: date, *, card_id: str | None = None) -> dict[str, Any]:
        phase = variation["subscription_plan_variation_data"]["phases"][0]
        return {
            "id": sub_id, "location_id": LOCATION_ID, "plan_variation_id": variation["id"],
            "customer_id": customer_id, "start_date": start.isoformat(), "status": "PENDING", "invoice_ids": [],
            "version": 1, "created_at": iso(created), "card_id": card_id, "timezone": "UTC",
            "source": {"name": "Acme Online Store"}, "monthly_billing_anchor_date": start.day,
            "phases": [{"uid": _square_id("sub-phase", sub_id, length=26), "ordinal": 0,
                        "plan_phase_uid": phase["uid"]}],
        }

    def _bill(self, record: dict[str, Any], first_day: date) -> None:
        """The period from `first_day` is billed: ACTIVE, charged through the day before the next period."""
        interval = self._interval(self._variation(record["plan_variation_id"]) or {})
        following = add_interval(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC), interval)
        record["charged_through_date"] = (following.date() - timedelta(days=1)).isoformat()
        record["status"] = "ACTIVE"

    def _build_subscription(self, fact: Subscription) -> None:
        sub_id = _uuid("subscription", self.world.seed, fact.key)
        record = self._subscription(sub_id, self._variation_of_plan(fact.plan.code), self.customer_ids[fact.person.key],
                                    fact.created_at, fact.period_start.date(),
                                    card_id=f"ccof:{_square_id('card', self.world.seed, fact.key, length=16)}")
        if fact.status != "PENDING":
            self._bill(record, fact.period_start.date())
        if fact.status in ("DEACTIVATED", "PAUSED"):
            record["status"] = fact.status
            record["version"] += 1
        elif fact.status == "CANCELED":
            record.update(status="CANCELED", canceled_date=(fact.canceled_at or fact.created_at).date().isoformat())
            record["version"] += 1
        self.subscriptions[sub_id] = record

    async def _create_subscription(self, request: Request) -> tuple[int, Any]:
        """CreateSubscription: `location_id`, `customer_id` and `plan_variation_id` are required here (the sandbox
        has no itemised subscriptions); a `start_date` ahead of today makes it PENDING, else the first period is
        billed at once (ACTIVE, `charged_through_date` its last day)."""
        body = await self._json(request)
        key = body.get("idempotency_key")
        fields = {k: v for k, v in body.items() if k != "idempotency_key"}
        unknown = sorted(set(fields) - _SUBSCRIPTION_CREATE_FIELDS)
        if unknown:
            raise SquareError(400, "UNKNOWN_BODY_PARAMETER", f"Unknown body parameter `{unknown[0]}`.", unknown[0])
        for name in ("location_id", "customer_id", "plan_variation_id"):
            if not fields.get(name):
                raise SquareError(400, "MISSING_REQUIRED_PARAMETER", f"Missing required parameter `{name}`.", name)
        self._location_ids({"location_ids": [fields["location_id"]]}, required=True)
        if fields["customer_id"] not in self.customers:
            raise SquareError(400, "NOT_FOUND", f"Customer with ID `{fields['customer_id']}` not found.",
                              "customer_id")
        variation = self._variation(fields["plan_variation_id"])
        if variation is None:
            raise SquareError(400, "NOT_FOUND", f"Subscription plan variation `{fields['plan_variation_id']}` not "
                              "found.", "plan_variation_id")
        today = _now().date()
        try:
            start = date.fromisoformat(str(fields.get("start_date") or today.isoformat()))
        except ValueError:
            raise SquareError(400, "INVALID_DATE", f"Invalid date `{fields.get('start_date')}`: expected "
                              "YYYY-MM-DD.", "start_date") from None
        money = fields.get("price_override_money")
        if money is not None and not (isinstance(money, dict) and isinstance(money.get("amount"), int)
                                      and money.get("currency") == "USD"):
            raise SquareError(400, "INVALID_VALUE", "`price_override_money` must be an amount in the location's "
                              "currency (USD).", "price_override_money")

        def produce() -> tuple[int, Any]:
            sub_id = _uuid("subscription", "new", time.time_ns())
            record = self._subscription(sub_id, variation, fields["customer_id"], _now(), start,
                                        card_id=fields.get("card_id"))
            if money is not None:
                record["price_override_money"] = dict(money)
            if fields.get("timezone"):
                record["timezone"] = fields["timezone"]
            if isinstance(fields.get("source"), dict):
                record["source"] = {"name": fields["source"].get("name")}
            if start <= today:
                self._bill(record, start)
            with self.sandbox.lock:
                self.subscriptions[sub_id] = record
            return 200, {"subscription": record}

        return self._idempotent(key, {"path": "/v2/subscriptions", "body": fields}, produce)

    async def _search_subscriptions(self, request: Request) -> tuple[int, Any]:
        """SearchSubscriptions: `query.filter` by `customer_ids`, `location_ids`, `source_names`; in order of
        creation (by customer first when customers are named), `limit` 1..200 (default 200)."""
        body = await self._json(request)
        limit = _limit(body.get("limit"), field="limit", default=200, maximum=200, strict=True)
        query = body.get("query") or {}
        if not isinstance(query, dict):
            raise SquareError(400, "EXPECTED_OBJECT", "Expected `query` to be an object.", "query")
        filters = query.get("filter") or {}
        with self.sandbox.lock:
            rows = sorted(self.subscriptions.values(), key=lambda s: (s["created_at"], s["id"]))
        for field, value in (("customer_ids", "customer_id"), ("location_ids", "location_id")):
            wanted = filters.get(field)
            if wanted is None:
                continue
            if not isinstance(wanted, list):
                raise SquareError(400, "EXPECTED_ARRAY", f"Expected `query.filter.{field}` to be an array.",
                                  f"query.filter.{field}")
            rows = [s for s in rows if s[value] in wanted]
        if filters.get("source_names") is not None:
            rows = [s for s in rows if (s.get("source") or {}).get("name") in filters["source_names"]]
        if filters.get("customer_ids"):
            rows.sort(key=lambda s: (s["location_id"], s["customer_id"], s["created_at"], s["id"]))
        return self._page(rows, body.get("cursor"), limit, {"query": query}, "subscriptions")

    def _retrieve_subscription(self, request: Request) -> tuple[int, Any]:
        found = self.subscriptions.get(request.path_params["subscription_id"])
        if found is None:
            raise SquareError(404, "NOT_FOUND", f"Subscription `{request.path_params['subscription_id']}` not found.")
        return 200, {"subscription": found}

    def _cancel_subscription(self, request: Request) -> tuple[int, Any]:
        """CancelSubscription: an ACTIVE subscription gets `canceled_date` = the day after the billed period and a
        scheduled CANCEL action, and stays ACTIVE until then; a PENDING, DEACTIVATED or PAUSED one is CANCELED at
        once; a CANCELED one is refused."""
        sub_id = request.path_params["subscription_id"]
        with self.sandbox.lock:
            record = self.subscriptions.get(sub_id)
            if record is None:
                raise SquareError(404, "NOT_FOUND", f"Subscription `{sub_id}` not found.")
            if record["status"] == "CANCELED" or (record["status"] == "ACTIVE" and record.get("canceled_date")):
                raise SquareError(400, "BAD_REQUEST", f"Subscription `{sub_id}` is already canceled.")
            if record["status"] == "ACTIVE":
                ends = date.fromisoformat(record["charged_through_date"]) + timedelta(days=1)
                record["canceled_date"] = ends.isoformat()
                record["version"] += 1
                action = {"id": _uuid("action", sub_id, "cancel"), "type": "CANCEL",
                          "effective_date": ends.isoformat()}
                return 200, {"subscription": record, "actions": [action]}
            record.update(status="CANCELED", canceled_date=_now().date().isoformat())
            record["version"] += 1
            return 200, {"subscription": record}

    def set_subscription_status(self, sub_id: str, status: str) -> dict[str, Any]:
        """What Square does to a subscription by itself, as of today: a PENDING one starts (ACTIVE, first period
        billed), a scheduled cancel takes effect or the seller's cancel is immediate (CANCELED, `canceled_date`),
        Square stops billing it (DEACTIVATED), it is paused (PAUSED) or resumed (ACTIVE). Raises ValueError for an
        unknown status or a CANCELED subscription."""
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {status!r}; Square's are {', '.join(SUBSCRIPTION_STATUSES)}")
        with self.sandbox.lock:
            record = self.subscriptions.get(sub_id)
            if record is None:
                raise ValueError(f"no Square subscription {sub_id}")
            if record["status"] == "CANCELED":
                raise ValueError(f"subscription {sub_id} is CANCELED; its status cannot change")
            today = _now().date()
            if status == "ACTIVE" and record["status"] == "PENDING":
                self._bill(record, today)
            elif status == "CANCELED":
                record["canceled_date"] = today.isoformat()
            record["status"] = status
            record["version"] += 1
            return record

    # -- ground truth ---------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        with self.sandbox.lock:
            if stream == "customers":
                return sorted(self.customers.values(), key=lambda c: (c["created_at"], c["id"]))
            if stream == "payments":
                return sorted(self.payments.values(), key=lambda p: (p["created_at"], p["id"]))
            if stream == "refunds":
                return sorted(self.refunds.values(), key=lambda r: (r["created_at"], r["id"]))
            if stream == "orders":
                return sorted(self.orders.values(), key=lambda o: (o["created_at"], o["id"]))
            if stream == "catalog_items":
                return sorted((i for i in self.items.values() if not i["is_deleted"]), key=lambda i: i["id"])
            if stream == "inventory_counts":
                return sorted(self.counts.values(), key=lambda c: c["catalog_object_id"])
            if stream == "subscriptions":
                return sorted(self.subscriptions.values(), key=lambda s: (s["created_at"], s["id"]))
            if stream == "subscription_plan_variations":
                return self._catalog_objects(["SUBSCRIPTION_PLAN_VARIATION"], include_deleted=False)
        raise KeyError(f"square has no stream {stream!r}")

    def simulate(self, stream: str, request: dict[str, Any]) -> dict[str, Any]:
        """`subscriptions`: a subscription changes status without an API call (`subscription`, `status`), as
        `set_subscription_status` says → the subscription. `refunds`: the seller refunds part of a payment in the
        Dashboard (`payment`, `amount` in minor units, optional `reason`, optional `at`, an RFC 3339 time, default
        now) → the PaymentRefund."""
        if stream == "refunds":
            when = parse_time(request["at"], "at") if request.get("at") else _now()
            with self.sandbox.lock:
                payment = self.payments[str(request["payment"])]
                left = payment["amount_money"]["amount"] - payment.get("refunded_money", {"amount": 0})["amount"]
                if not 0 < int(request["amount"]) <= left:
                    raise ValueError(f"payment {payment['id']} has {left} left to refund, not {request['amount']}")
                return self._record_refund(payment, int(request["amount"]), request.get("reason"), when)
        if stream != "subscriptions":
            raise NotImplementedError(f"square cannot simulate {stream}")
        return self.set_subscription_status(str(request["subscription"]), str(request["status"]))

    def touch(self, stream: str, count: int) -> list[str]:
        """Change `count` records as the seller would in the Dashboard; their change timestamp becomes now."""
        touched: list[str] = []
        with self.sandbox.lock:
            now = _now()
            for record in self.dump(stream)[:count]:
                if stream == "customers":
                    record["note"] = f"Called back {time.time_ns()}"
                    record["version"] += 1
                    record["updated_at"] = iso(now)
                elif stream == "payments":  # a partial refund of one unit of currency, while any is left
                    left = record["amount_money"]["amount"] - record.get("refunded_money", {"amount": 0})["amount"]
                    if left > 0:
                        self._record_refund(self.payments[record["id"]], min(100, left), "Partial refund", now)
                elif stream == "orders":
                    record["metadata"] = {"touched": str(time.time_ns())}
                    record["version"] += 1
                    record["updated_at"] = iso(now)
                elif stream == "catalog_items":
                    variation = record["item_data"]["variations"][0]
                    price = variation["item_variation_data"]["price_money"]
                    variation["item_variation_data"]["price_money"] = {**price, "amount": price["amount"] + 100}
                    version = max(int(now.timestamp() * 1000), record["version"] + 1)
                    for obj in (record, variation):
                        obj["version"], obj["updated_at"] = version, iso(now)
                elif stream == "inventory_counts":  # one unit sold
                    quantity = Decimal(record["quantity"])
                    record["quantity"] = _decimal_text(quantity - 1 if quantity > 0 else Decimal(5))  # or restocked
                    record["calculated_at"] = iso(now)
                elif stream == "subscriptions":  # the subscriber's card on file replaced
                    record["card_id"] = f"ccof:{_square_id('card', time.time_ns(), length=16)}"
                    record["version"] += 1
                elif stream == "subscription_plan_variations":  # the plan's price raised by one unit
                    price = record["subscription_plan_variation_data"]["phases"][-1]["pricing"]["price_money"]
                    price["amount"] += 100
                    record["version"] = max(int(now.timestamp() * 1000), record["version"] + 1)
                    record["updated_at"] = iso(now)
                touched.append(record["catalog_object_id"] if stream == "inventory_counts" else record["id"])
        return touched


def _decimal_text(value: Decimal) -> str:
    """Square sends quantities as decimal strings without trailing zeros (`"12"`, `"2.5"`)."""
    return format(value.normalize(), "f")


EMULATOR = SquareEmulator
