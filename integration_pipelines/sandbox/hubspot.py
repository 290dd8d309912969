"""HubSpot's CRM v3 as the official `hubspot-api-client` sees it.

Objects are `{id, properties{...}, createdAt, updatedAt, archived}` with every property value a string (or null
when it was asked for and has none). What this emulator holds to, because clients depend on it:
- lists (`GET /crm/v3/objects/{type}`): ascending ids, `limit` 1..100 (default 10), an opaque `after` token,
  and no `paging` at all on the last page (the SDK's `get_all` loops for ever on a `paging.next` without
  `after`); `properties` (comma list or repeated) chooses the properties, else a per-type default set;
- search (`POST …/search`): `filterGroups` (OR of ANDs) with EQ/NEQ/LT/LTE/GT/GTE/BETWEEN/IN/NOT_IN/
  HAS_PROPERTY/NOT_HAS_PROPERTY/CONTAINS_TOKEN, date values as epoch milliseconds or ISO 8601, string
  comparisons case-insensitive (an email matches whatever its case), `sorts`, `limit` ≤ 200, `after` in the
  body, `{total, results, paging}`, and HubSpot's 10,000-result ceiling (a page reaching past it is a 400);
- writes: single create/update/archive, `batch/read|create|update|upsert` (≤ 100 inputs), contacts unique by
  email case-insensitively (a create of a known email is a 409 naming the existing id; an upsert by email
  updates it), unknown properties refused with HubSpot's `PROPERTY_DOESNT_EXIST`, enumeration values outside
  their options with `INVALID_OPTION`; a unique-value custom property (deals' `quote_id`) is an `idProperty`
  for upsert and read, and a second record with the same value is a 409;
- errors `{"status": "error", "message", "correlationId", "category"}`, 401 `INVALID_AUTHENTICATION` for a
  missing or wrong bearer token, and 429s shaped like HubSpot's ten-secondly policy with its rate-limit headers.

Associations: a list or single read with `associations=<type>` adds `associations: {<type>: {results: [{id,
type}]}}` (only when there are some). Each CRM person's contact is associated with their company as its primary
company, which HubSpot lists twice, once with the primary type (`contact_to_company`) and once unlabeled
(`contact_to_company_unlabeled`); the portal does not create or associate companies automatically from email
domains, so a contact created through the API without `associations` belongs to no company.

The world's planted CRM mess is realised here: the `crm_email_case_differs` person's email is stored in mixed
case, and the `crm_duplicate_contact` person exists twice (the second time with a personal address, the same
name and phone, no company name and no company association). `anomaly_ids` names the HubSpot ids involved, so
tests can find them.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .base import Emulator, SandboxState, bearer_token
from .ids import token
from .world import Company, Deal, Person, World

OBJECT_TYPES = ("contacts", "companies", "deals")
#: The private app's (fake) access token the portal accepts; the connector's sandbox mode sends the same string.
SANDBOX_TOKEN = "pat-FAKE-sandbox-0000-integration-pipelines"

# Private-app tokens with fewer scopes than the sandbox's all-scopes token: a request needing a scope the token was
# not granted gets HubSpot's 403 MISSING_SCOPES. The emulator's own fake tokens; the connectors know none of them.
_READ_SCOPES = ("crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read")
_WRITE_SCOPES = ("crm.objects.contacts.write", "crm.objects.companies.write", "crm.objects.deals.write")
SCOPED_TOKENS: dict[str, frozenset[str]] = {
    "pat-FAKE-sandbox-read-only-0000": frozenset(_READ_SCOPES),
    "pat-FAKE-sandbox-read-write-0000": frozenset(_READ_SCOPES + _WRITE_SCOPES),
    "pat-FAKE-sandbox-contacts-read-0000": frozenset({"crm.objects.contacts.read"}),
}
MISSING_SCOPES_MESSAGE = ("This app hasn't been granted all required scopes to make this call. Read more about "
                          "required scopes here: https://developers.hubspot.com/scopes.")
#: Standard properties every portal defines per object type (HubSpot's default property sets, the part this
#: portal holds); SCHEMA adds the portal's custom ones.
STANDARD_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname", "phone", "company", "jobtitle", "lifecyclestage", "address",
                 "city", "zip", "country", "createdate", "lastmodifieddate", "hs_object_id"),
    "companies": ("name", "domain", "phone", "city", "country", "industry", "numberofemployees", "lifecyclestage",
                  "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": ("dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate", "createdate",
              "hs_lastmodifieddate", "hs_object_id"),
}

#: Every property the emulated portal defines per object type: what the connector lands plus a few it does
#: not ask for, so a test can see that only the requested ones come back.
SCHEMA: dict[str, tuple[str, ...]] = {
    # `payment_status` and `last_payment_date` are custom properties the business defined in its portal (as a
    # real admin would in Settings → Properties) for the payments → CRM sync.
    # `support_status` (an enumeration) and `open_tickets` (a number) serve the tickets → CRM sync; `quote_id` on
    # deals is a custom property with "unique values" set (`hasUniqueValue`), the quote → deal sync's upsert key.
    # `subscription_status` (an enumeration), `subscription_plan` and `subscription_renews_on` (a date, YYYY-MM-DD)
    # serve the subscription status → CRM sync; on companies, `subscription_status`, `active_subscriptions` (a
    # number) and `subscription_renews_on` serve its per-company summary.
    # `hs_merged_object_ids`, `hs_all_contact_vids` and `hs_additional_emails` are HubSpot's own merge trail.
    "contacts": (*STANDARD_PROPERTIES["contacts"], "website", "hs_email_domain", "hs_lead_status", "payment_status",
                 "last_payment_date", "support_status", "open_tickets", "subscription_status", "subscription_plan",
                 "subscription_renews_on", "hs_merged_object_ids", "hs_all_contact_vids", "hs_additional_emails"),
    "companies": (*STANDARD_PROPERTIES["companies"], "website", "description", "subscription_status",
                  "active_subscriptions", "subscription_renews_on"),
    "deals": (*STANDARD_PROPERTIES["deals"], "description", "hs_priority", "quote_id"),
}
#: Properties defined with unique values: `batch/upsert` and `batch/read` accept them as `idProperty`.
UNIQUE_PROPERTIES: dict[str, tuple[str, ...]] = {"contacts": ("email",), "companies": (), "deals": ("quote_id",)}
#: Enumeration properties whose writes are checked against their options (HubSpot's `INVALID_OPTION`).
ENUM_OPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("contacts", "support_status"): ("open", "escalated", "resolved"),
    ("contacts", "subscription_status"): ("trialing", "active", "past_due", "canceled"),
    ("companies", "subscription_status"): ("trialing", "active", "past_due", "canceled"),
    ("deals", "deal_currency_code"): ("USD", "EUR", "GBP", "CAD", "AUD"),  # the portal's enabled currencies
}
#: Returned by a list or search that names no properties (HubSpot's documented defaults).
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email", "createdate", "lastmodifieddate", "hs_object_id"),
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage", "createdate", "hs_lastmodifieddate",
              "hs_object_id"),
}
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate"}
READ_ONLY = {"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_email_domain",
             "hs_merged_object_ids", "hs_all_contact_vids"}
DATE_PROPERTIES = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
NUMBER_PROPERTIES = {"amount", "hs_object_id", "numberofemployees", "open_tickets", "active_subscriptions"}
SEARCH_TEXT_PROPERTIES = {
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
    "companies": ("name", "domain", "phone", "website"),
    "deals": ("dealname",),
}
ASSOCIATION_TYPE = {("deals", "contacts"): "deal_to_contact", ("contacts", "deals"): "contact_to_deal",
                    ("contacts", "companies"): "contact_to_company", ("companies", "contacts"): "company_to_contact",
                    ("deals", "companies"): "deal_to_company", ("companies", "deals"): "company_to_deal"}
#: Pairs with a primary association (a contact's primary company): HubSpot lists the primary one under its type
#: and again as `<type>_unlabeled`, any other one only as `<type>_unlabeled`.
PRIMARY_PAIRS = {("contacts", "companies"), ("companies", "contacts")}
LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
INDUSTRIES = ("COMPUTER_SOFTWARE", "RETAIL", "MANUFACTURING", "CONSUMER_GOODS", "FINANCIAL_SERVICES")
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
             "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}

LIST_MAX_LIMIT = 100
SEARCH_MAX_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
BATCH_MAX_INPUTS = 100
MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
TEN_SECONDLY_MAX = 190
DAILY_MAX = 500_000

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more "
    "details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_CATEGORY = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES", 404: "OBJECT_NOT_FOUND",
             405: "VALIDATION_ERROR", 409: "CONFLICT", 429: "RATE_LIMITS"}

Record = dict[str, Any]


class HubSpotError(Exception):
    """An answer HubSpot would give instead of the requested data; raised deep, rendered at the edge."""

    def __init__(self, status: int, message: str, category: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.category, self.extra = status, message, category, extra


# -- time -------------------------------------------------------------------------------------------------
def iso_ms(moment: datetime) -> str:
    """HubSpot's timestamps: ISO 8601 UTC with milliseconds and a `Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _with_ms(moment: datetime, *salt: object) -> datetime:
    """The world keeps whole seconds; HubSpot stamps milliseconds. Add deterministic ones."""
    millis = int.from_bytes(token(*salt, length=4).encode(), "big") % 1000
    return moment.replace(microsecond=0) + timedelta(milliseconds=millis)


def to_ms(value: Any) -> int | None:
    """A date property or filter value as epoch milliseconds: digits are milliseconds, else ISO 8601."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _money(minor_units: int) -> str:
    """The world counts money in minor units (like Stripe); HubSpot's `amount` is a decimal string."""
    whole, cents = divmod(minor_units, 100)
    return str(whole) if cents == 0 else f"{whole}.{cents:02d}"


def _after_token(next_id: str) -> str:
    return base64.urlsafe_b64encode(next_id.encode()).decode().rstrip("=")


def _after_id(after: str) -> int:
    try:
        text = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
        return int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise HubSpotError(400, f"Invalid input: after '{after}' is not a valid paging token.") from exc


class HubSpotEmulator(Emulator):
    name = "hubspot"
    prefixes = ("/crm/v3/",)
    streams = OBJECT_TYPES

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.token = SANDBOX_TOKEN
        self.objects: dict[str, dict[str, Record]] = {t: {} for t in OBJECT_TYPES}
        self.associations: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.primary: set[tuple[str, str, str, str]] = set()  # (from type, from id, to type, to id), both ways
        self.anomaly_ids: dict[str, list[str]] = {}
        self._recent: deque[float] = deque()
        self._answered = 0
        self._clock_lock = threading.Lock()
        self._last_write_ms = 0
        self.company_ids: dict[int, str] = {}
        self._seed_companies(world)
        contact_ids = self._seed_contacts(world)
        self._seed_deals(world, contact_ids)
        self._next_id = max(int(i) for objs in self.objects.values() for i in objs) + 1

    # -- the seeded portal --------------------------------------------------------------------------
    def _object_id(self, kind: str, key: object) -> str:
        """Deterministic 11-digit numeric ids, like a large portal's."""
        digest = int.from_bytes(token(self.world.seed, "hubspot", kind, key, length=8).encode(), "big")
        return str(10_000_000_000 + digest % 89_999_999_999)

    def _store(self, object_type: str, object_id: str, properties: dict[str, str | None],
               created: datetime, updated: datetime) -> Record:
        if any(object_id in objs for objs in self.objects.values()):
            raise RuntimeError(f"hubspot sandbox: id collision on {object_id}")
        props: dict[str, str | None] = dict.fromkeys(SCHEMA[object_type])
        props.update(properties)
        props.update({"hs_object_id": object_id, "createdate": iso_ms(created), MODIFIED[object_type]: iso_ms(updated)})
        record = {"id": object_id, "properties": props, "createdAt": iso_ms(created), "updatedAt": iso_ms(updated),
                  "archived": False}
        self.objects[object_type][object_id] = record
        return record

    def _seed_companies(self, world: World) -> None:
        rng = world.rng("hubspot:companies")
        for company in world.companies:
            staff = [p for p in world.people if p.company.key == company.key]
            created = min((p.created_at for p in staff), default=world.start) - timedelta(days=rng.randint(1, 90))
            updated = max((p.updated_at for p in staff), default=world.start)
            city, country = (staff[0].city, staff[0].country) if staff else (None, None)
            cid = self._object_id("company", company.key)
            self.company_ids[company.key] = cid
            self._store("companies", cid, self._company_properties(company, rng.choice(INDUSTRIES),
                                                                   rng.randint(5, 500), city, country),
                        _with_ms(created, "company-created", company.key),
                        _with_ms(updated, "company-updated", company.key))

    @staticmethod
    def _company_properties(company: Company, industry: str, employees: int, city: str | None,
                            country: str | None) -> dict[str, str | None]:
        return {"name": company.name, "domain": company.domain, "website": f"https://www.{company.domain}",
                "city": city, "country": country, "industry": industry, "numberofemployees": str(employees),
                "lifecyclestage": "customer"}

    def _seed_contacts(self, world: World) -> dict[int, str]:
        case_key = world.anomalies.get("crm_email_case_differs")
        duplicate_key = world.anomalies.get("crm_duplicate_contact")
        invoiced = {invoice.person.key for invoice in world.invoices}
        in_deals = {deal.person.key for deal in world.deals}
        contact_ids: dict[int, str] = {}
        for person in world.people:
            if not person.in_crm:
                continue
            stage = "customer" if person.key in invoiced else "opportunity" if person.key in in_deals else "lead"
            email = _mixed_case(person) if person.key == case_key else person.email
            cid = self._object_id("contact", person.key)
            contact_ids[person.key] = cid
            self._store("contacts", cid, self._contact_properties(person, email, stage),
                        _with_ms(person.created_at, "contact-created", person.key),
                        _with_ms(person.updated_at, "contact-updated", person.key))
            self._associate("contacts", cid, "companies", self.company_ids[person.company.key], primary=True)
            if person.key == case_key:
                self.anomaly_ids["crm_email_case_differs"] = [cid]
            if person.key == duplicate_key:
                # signed up again for the newsletter with a personal address: same name and phone
                created = min(person.created_at + timedelta(days=1, hours=3), world.anchor - timedelta(minutes=5))
                updated = min(created + timedelta(hours=2), world.anchor - timedelta(seconds=1))
                dup_id = self._object_id("contact-duplicate", person.key)
                personal = f"{person.first_name}.{person.last_name.replace('-', '')}".lower() + "@personal.example.net"
                props = self._contact_properties(person, personal, "subscriber")
                props.update(company=None, jobtitle=None, address=None, zip=None)
                self._store("contacts", dup_id, props, _with_ms(created, "dup-created", person.key),
                            _with_ms(updated, "dup-updated", person.key))
                self.anomaly_ids["crm_duplicate_contact"] = [cid, dup_id]
        return contact_ids

    @staticmethod
    def _contact_properties(person: Person, email: str, stage: str) -> dict[str, str | None]:
        return {"email": email, "firstname": person.first_name, "lastname": person.last_name,
                "phone": person.phone, "company": person.company.name, "jobtitle": None,
                "lifecyclestage": stage, "address": person.street, "city": person.city, "zip": person.postal_code,
                "country": person.country, "hs_email_domain": email.rsplit("@", 1)[-1].lower()}

    def _seed_deals(self, world: World, contact_ids: dict[int, str]) -> None:
        for deal in world.deals:
            did = self._object_id("deal", deal.key)
            self._store("deals", did, self._deal_properties(deal),
                        _with_ms(deal.created_at, "deal-created", deal.key),
                        _with_ms(deal.updated_at, "deal-updated", deal.key))
            if deal.person.key in contact_ids:
                self._associate("deals", did, "contacts", contact_ids[deal.person.key])

    @staticmethod
    def _deal_properties(deal: Deal) -> dict[str, str | None]:
        return {"dealname": deal.name, "amount": _money(deal.amount), "deal_currency_code": deal.currency,
                "dealstage": deal.stage, "pipeline": "default", "closedate": iso_ms(deal.close_date)}

    def _associate(self, from_type: str, from_id: str, to_type: str, to_id: str, *, primary: bool = False) -> None:
        self.associations.setdefault((from_type, from_id), {}).setdefault(to_type, []).append(to_id)
        self.associations.setdefault((to_type, to_id), {}).setdefault(from_type, []).append(from_id)
        if primary:
            self.primary |= {(from_type, from_id, to_type, to_id), (to_type, to_id, from_type, from_id)}

    # -- protocol -----------------------------------------------------------------------------------
    def error_response(self, status: int, message: str, category: str | None = None, **extra: Any) -> Response:
        body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                "category": category or _CATEGORY.get(status, "INTERNAL_ERROR"), **extra}
        return JSONResponse(body, status_code=status, headers=self._headers(body["correlationId"]))

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """HubSpot's error body for a path it does not serve (404) or a method a path does not take (405)."""
        if status == 405:
            return self.error_response(405, f"HTTP {request.method} is not supported by this endpoint. Supported "
                                       f"methods: {', '.join(sorted(allowed))}.", "VALIDATION_ERROR")
        return self.error_response(404, f"Unable to route {request.method} {request.url.path}: no such endpoint.",
                                   "OBJECT_NOT_FOUND")

    def rate_limit_response(self, retry_after: float) -> Response:
        correlation = str(uuid.uuid4())
        body = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "correlationId": correlation, "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": str(uuid.uuid4())}
        headers = self._headers(correlation, exhausted=True)
        headers["Retry-After"] = f"{retry_after:g}"
        return JSONResponse(body, status_code=429, headers=headers)

    def _headers(self, correlation: str | None = None, *, exhausted: bool = False) -> dict[str, str]:
        """HubSpot's usage headers, counted over a rolling ten seconds of this emulator's answers."""
        now = time.monotonic()
        with self._clock_lock:
            self._recent.append(now)
            while self._recent and now - self._recent[0] > 10:
                self._recent.popleft()
            used = len(self._recent)
            self._answered += 1
            answered = self._answered
        remaining = 0 if exhausted else max(0, TEN_SECONDLY_MAX - used)
        return {
            "X-HubSpot-Correlation-Id": correlation or str(uuid.uuid4()),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(TEN_SECONDLY_MAX),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Daily": str(DAILY_MAX),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, DAILY_MAX - answered)),
        }

    def _json(self, body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=self._headers())

    def _authorize(self, request: Request) -> None:
        supplied = bearer_token(request)
        if supplied is not None and supplied in SCOPED_TOKENS:
            self._check_scope(request, SCOPED_TOKENS[supplied])
            return
        if supplied is None or supplied != self.token:
            raise HubSpotError(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION")

    @staticmethod
    def _check_scope(request: Request, granted: frozenset[str]) -> None:
        """`crm.objects.<type>.read` for reads (a search is a POST that reads), `.write` for everything else."""
        object_type = request.path_params.get("object_type", "")
        reads = request.method == "GET" or request.url.path.endswith("/search") or (
            request.url.path.endswith("/batch/read"))
        needed = f"crm.objects.{object_type}.{'read' if reads else 'write'}"
        if needed not in granted:
            raise HubSpotError(403, MISSING_SCOPES_MESSAGE, "MISSING_SCOPES", errors=[{
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [needed]}}], links={"scopes": "https://developers.hubspot.com/scopes"})

    def routes(self) -> list[BaseRoute]:
        base = "/crm/v3/objects/{object_type}"
        return [
            Route(base, self._handler(self._collection), methods=["GET", "POST"]),
            Route(base + "/search", self._handler(self._search), methods=["POST"]),
            Route(base + "/batch/{action}", self._handler(self._batch), methods=["POST"]),
            Route(base + "/merge", self._handler(self._merge), methods=["POST"]),
            Route(base + "/{object_id}", self._handler(self._single), methods=["GET", "PATCH", "DELETE"]),
        ]

    def _handler(self, action: Callable[[Request, str], Any]) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            try:
                self._authorize(request)
                object_type = request.path_params["object_type"]
                if object_type not in OBJECT_TYPES:
                    raise HubSpotError(400, f"Unable to infer object type from: {object_type}")
                return await action(request, object_type)
            except HubSpotError as error:
                return self.error_response(error.status, error.message, error.category, **error.extra)
        return handler

    # -- reading ------------------------------------------------------------------------------------
    @staticmethod
    def _names(values: Iterable[Any]) -> list[str]:
        """`properties=a,b&properties=c` (the SDK repeats the parameter) or a JSON list: in order, once each."""
        names: list[str] = []
        for value in values:
            for name in str(value).split(","):
                name = name.strip()
                if name and name not in names:
                    names.append(name)
        return names

    def _requested(self, values: Iterable[Any], object_type: str) -> list[str]:
        """The properties to return: the defaults when none are named; unknown names are ignored."""
        names = self._names(values)
        if not names:
            return list(DEFAULT_PROPERTIES[object_type])
        return [n for n in names if n in SCHEMA[object_type]]

    def _association_types(self, values: Iterable[Any]) -> list[str]:
        return [n for n in self._names(values) if n in OBJECT_TYPES]

    def _shape(self, object_type: str, record: Record, properties: list[str],
               associations: list[str] | None = None) -> Record:
        shaped = {"id": record["id"], "properties": {p: record["properties"].get(p) for p in properties},
                  "createdAt": record["createdAt"], "updatedAt": record["updatedAt"], "archived": record["archived"]}
        if record["archived"]:
            shaped["archivedAt"] = record.get("archivedAt")
        for other in associations or []:
            linked = self.associations.get((object_type, record["id"]), {}).get(other)
            if linked:
                kind = ASSOCIATION_TYPE.get((object_type, other), f"{object_type[:-1]}_to_{other[:-1]}")
                shaped.setdefault("associations", {})[other] = {
                    "results": [entry for i in linked for entry in self._association_entries(
                        object_type, record["id"], other, i, kind)]}
        return shaped

    def _association_entries(self, from_type: str, from_id: str, to_type: str, to_id: str,
                             kind: str) -> list[dict[str, str]]:
        """One association as HubSpot's v3 read lists it: a contact ↔ company one under its unlabeled type, and
        under its primary type as well when it is the contact's primary company; other pairs under their type."""
        if (from_type, to_type) not in PRIMARY_PAIRS:
            return [{"id": to_id, "type": kind}]
        entries = [{"id": to_id, "type": kind}] if (from_type, from_id, to_type, to_id) in self.primary else []
        return [*entries, {"id": to_id, "type": f"{kind}_unlabeled"}]

    @staticmethod
    def _limit(raw: Any, default: int, maximum: int) -> int:
        if raw in (None, ""):
            return default
        try:
            limit = int(raw)
        except (TypeError, ValueError) as exc:
            raise HubSpotError(400, f"Invalid input JSON on line 1: limit '{raw}' is not a number.") from exc
        if not 1 <= limit <= maximum:
            raise HubSpotError(400, f"limit must be between 1 and {maximum}; got {limit}.",
                               errors=[{"message": f"limit must be <= {maximum}", "in": "limit"}])
        return limit

    def _sorted(self, object_type: str, archived: bool = False) -> list[Record]:
        rows = [r for r in self.objects[object_type].values() if r["archived"] == archived]
        return sorted(rows, key=lambda r: int(r["id"]))

    async def _collection(self, request: Request, object_type: str) -> Response:
        if request.method == "POST":
            return await self._create_one(request, object_type)
        params = request.query_params
        limit = self._limit(params.get("limit"), 10, LIST_MAX_LIMIT)
        properties = self._requested(params.getlist("properties"), object_type)
        associations = self._association_types(params.getlist("associations"))
        archived = params.get("archived", "false").lower() == "true"
        rows = self._sorted(object_type, archived)
        after = params.get("after")
        if after:
            start_id = _after_id(after)
            rows = [r for r in rows if int(r["id"]) >= start_id]
        page = rows[:limit]
        body: dict[str, Any] = {"results": [self._shape(object_type, r, properties, associations) for r in page]}
        if len(rows) > limit:
            next_after = _after_token(rows[limit]["id"])
            link = str(request.url.replace(query=f"after={next_after}"))
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return self._json(body)

    async def _single(self, request: Request, object_type: str) -> Response:
        object_id = request.path_params["object_id"]
        params = request.query_params
        record = self._find(object_type, object_id, params.get("idProperty"))
        if request.method == "DELETE":
            with self.sandbox.lock:
                record["archived"] = True
                record["archivedAt"] = iso_ms(self._now())
            return Response(status_code=204, headers=self._headers())
        if request.method == "PATCH":
            body = await self._body(request)
            with self.sandbox.lock:
                self._write(object_type, record, body.get("properties") or {})
            return self._json(self._shape(object_type, record, self._written(object_type, body)))
        properties = self._requested(params.getlist("properties"), object_type)
        associations = self._association_types(params.getlist("associations"))
        return self._json(self._shape(object_type, record, properties, associations))

    def _find(self, object_type: str, object_id: str, id_property: str | None = None,
              *, missing_ok: bool = False) -> Record:
        record: Record | None
        if id_property in (None, "", "hs_object_id"):
            record = self.objects[object_type].get(str(object_id))
        elif object_type == "contacts" and id_property == "email":
            record = self._by_email(str(object_id))
        elif id_property in UNIQUE_PROPERTIES[object_type]:
            record = self._by_unique(object_type, str(id_property), str(object_id))
        else:
            raise HubSpotError(400, f"Property {id_property} is not a unique identifier for {object_type}.")
        seen: set[str] = set()
        while record is not None and record.get("_merged_into") and record["id"] not in seen:
            # HubSpot answers a merged-away id with the record it was merged into
            seen.add(record["id"])
            record = self.objects[object_type].get(record["_merged_into"])
        if record is None or record["archived"]:
            if missing_ok:
                return {}
            raise HubSpotError(404, "resource not found")
        return record

    def _by_email(self, email: str) -> Record | None:
        wanted = email.strip().lower()
        for record in self.objects["contacts"].values():
            if not record["archived"] and (record["properties"].get("email") or "").lower() == wanted:
                return record
        return None

    def _by_unique(self, object_type: str, prop: str, value: str) -> Record | None:
        for record in self.objects[object_type].values():
            if not record["archived"] and record["properties"].get(prop) == value:
                return record
        return None

    def _check_unique(self, object_type: str, values: dict[str, str | None], own_id: str | None) -> None:
        for prop in UNIQUE_PROPERTIES[object_type]:
            if prop == "email" or not values.get(prop):
                continue
            other = self._by_unique(object_type, prop, str(values[prop]))
            if other is not None and other["id"] != own_id:
                raise HubSpotError(409, f"A {object_type[:-1]} with {prop} {values[prop]!r} already exists. "
                                   f"Existing ID: {other['id']}", "CONFLICT")

    # -- search -------------------------------------------------------------------------------------
    async def _search(self, request: Request, object_type: str) -> Response:
        body = await self._body(request)
        limit = self._limit(body.get("limit"), 10, SEARCH_MAX_LIMIT)
        after_raw = body.get("after") or 0
        if not str(after_raw).isdigit():
            raise HubSpotError(400, f"Invalid input: after '{after_raw}' is not a valid paging token.")
        after = int(after_raw)
        if after + limit > SEARCH_MAX_RESULTS:
            raise HubSpotError(
                400, f"The search API returns at most {SEARCH_MAX_RESULTS} results per query; after={after} with "
                f"limit={limit} pages past it. Narrow the query with filters instead.")
        groups = body.get("filterGroups") or []
        self._check_filters(object_type, groups)
        properties = self._requested(body.get("properties") or [], object_type)
        rows = [r for r in self._sorted(object_type) if self._matches(object_type, r, groups)]
        query = str(body.get("query") or "").strip().lower()
        if query:
            rows = [r for r in rows if any(query in (r["properties"].get(p) or "").lower()
                                           for p in SEARCH_TEXT_PROPERTIES[object_type])]
        for prop, descending in reversed(self._sorts(object_type, body.get("sorts") or [])):
            rows.sort(key=lambda r, p=prop: self._sort_key(p, r), reverse=descending)
        page = rows[after:after + limit]
        response: dict[str, Any] = {"total": len(rows),
                                    "results": [self._shape(object_type, r, properties) for r in page]}
        if after + limit < len(rows):
            response["paging"] = {"next": {"after": str(after + limit)}}
        return self._json(response)

    def _check_filters(self, object_type: str, groups: Any) -> None:
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise HubSpotError(400, "Invalid input JSON: filterGroups must be a list of {filters: [...]}.")
        filters = [f for g in groups for f in (g.get("filters") or [])]
        too_many = (len(groups) > MAX_FILTER_GROUPS or len(filters) > MAX_FILTERS
                    or any(len(g.get("filters") or []) > MAX_FILTERS_PER_GROUP for g in groups))
        if too_many:
            raise HubSpotError(400, f"Too many filters: at most {MAX_FILTER_GROUPS} filterGroups of "
                               f"{MAX_FILTERS_PER_GROUP} filters each, {MAX_FILTERS} filters in all.")
        for spec in filters:
            name, operator = spec.get("propertyName"), spec.get("operator", "EQ")
            if name not in SCHEMA[object_type]:
                raise HubSpotError(400, f"There was a problem with the request: property '{name}' does not exist "
                                   f"on {object_type}.")
            if operator not in OPERATORS:
                raise HubSpotError(400, f"Invalid input JSON: unknown operator '{operator}'.")

    def _matches(self, object_type: str, record: Record, groups: list[dict]) -> bool:
        if not groups:
            return True
        return any(all(self._test(record, f) for f in g.get("filters") or []) for g in groups)

    @staticmethod
    def _comparable(prop: str, value: Any) -> Any:
        if value is None or value == "":
            return None
        if prop in DATE_PROPERTIES:
            return to_ms(value)
        if prop in NUMBER_PROPERTIES:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
        return str(value).lower()

    def _test(self, record: Record, spec: dict[str, Any]) -> bool:
        prop, operator = spec["propertyName"], spec.get("operator", "EQ")
        have = self._comparable(prop, record["properties"].get(prop))
        if operator == "HAS_PROPERTY":
            return have is not None
        if operator == "NOT_HAS_PROPERTY":
            return have is None
        if operator in ("IN", "NOT_IN"):
            values = {self._comparable(prop, v) for v in spec.get("values") or []}
            return (have in values) == (operator == "IN")
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            needle = str(spec.get("value", "")).lower().strip("*")
            found = have is not None and needle in str(have)
            return found == (operator == "CONTAINS_TOKEN")
        want = self._comparable(prop, spec.get("value"))
        if operator == "NEQ":
            return have != want
        if have is None or want is None:
            return False
        if operator == "EQ":
            return bool(have == want)
        if operator == "BETWEEN":
            high = self._comparable(prop, spec.get("highValue"))
            return high is not None and want <= have <= high
        return {"LT": have < want, "LTE": have <= want, "GT": have > want, "GTE": have >= want}[operator]

    @staticmethod
    def _sorts(object_type: str, sorts: list[Any]) -> list[tuple[str, bool]]:
        """`[{"propertyName", "direction"}]`, or the SDK's strings (`"createdate"`, `"-createdate"`)."""
        parsed = []
        for sort in sorts:
            if isinstance(sort, dict):
                prop, descending = sort.get("propertyName"), str(sort.get("direction", "")).upper() == "DESCENDING"
            else:
                text = str(sort)
                prop, descending = text.lstrip("-"), text.startswith("-")
            if prop not in SCHEMA[object_type]:
                raise HubSpotError(400, f"There was a problem with the request: cannot sort by '{prop}'.")
            parsed.append((str(prop), descending))
        return parsed

    def _sort_key(self, prop: str, record: Record) -> tuple[bool, Any]:
        value = self._comparable(prop, record["properties"].get(prop))
        return value is None, value if value is not None else 0

    # -- writing ------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise HubSpotError(400, f"Invalid input JSON on line 1: {exc}") from exc
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid input JSON: expected an object.")
        return body

    def _now(self) -> datetime:
        """Now, to the millisecond, strictly after the previous write (two writes never share a stamp)."""
        with self._clock_lock:
            millis = max(int(time.time() * 1000), self._last_write_ms + 1)
            self._last_write_ms = millis
        return datetime.fromtimestamp(millis / 1000, UTC)

    def _validate(self, object_type: str, properties: Any) -> dict[str, str | None]:
        if not isinstance(properties, dict):
            raise HubSpotError(400, "Invalid input JSON: properties must be an object.")
        problems = [{"isValid": False, "message": f'Property "{name}" does not exist',
                     "error": "PROPERTY_DOESNT_EXIST", "name": name}
                    for name in properties if name not in SCHEMA[object_type]]
        email = properties.get("email")
        if object_type == "contacts" and email is not None and "@" not in str(email):
            problems.append({"isValid": False, "message": f"Email address {email} is invalid",
                             "error": "INVALID_EMAIL", "name": "email"})
        for name, value in properties.items():
            options = ENUM_OPTIONS.get((object_type, name))
            if options and value not in (None, "") and str(value) not in options:
                problems.append({"isValid": False, "message": f"{value} was not one of the allowed options: "
                                 f"[{', '.join(options)}]", "error": "INVALID_OPTION", "name": name})
        if problems:
            raise HubSpotError(400, "Property values were not valid: " + json.dumps(problems),
                               errors=[{"message": p["message"], "code": p["error"]} for p in problems])
        values = {k: (None if v is None else str(v)) for k, v in properties.items() if k not in READ_ONLY}
        if object_type == "contacts" and values.get("email"):
            values["hs_email_domain"] = str(values["email"]).rsplit("@", 1)[-1].lower()  # HubSpot derives it
        return values

    def _write(self, object_type: str, record: Record, properties: Any) -> Record:
        """Update in place; HubSpot moves the modification stamp on every write, even an idempotent one."""
        values = self._validate(object_type, properties)
        if object_type == "contacts" and values.get("email"):
            other = self._by_email(values["email"] or "")
            if other is not None and other["id"] != record["id"]:
                raise HubSpotError(409, f"Contact already exists. Existing ID: {other['id']}", "CONFLICT")
        self._check_unique(object_type, values, record["id"])
        record["properties"].update(values)
        stamp = iso_ms(self._now())
        record["properties"][MODIFIED[object_type]] = stamp
        record["updatedAt"] = stamp
        return record

    def _create(self, object_type: str, properties: Any, associations: Any = None) -> Record:
        values = self._validate(object_type, properties)
        if object_type == "contacts" and values.get("email"):
            existing = self._by_email(values["email"] or "")
            if existing is not None:
                raise HubSpotError(409, f"Contact already exists. Existing ID: {existing['id']}", "CONFLICT")
        self._check_unique(object_type, values, None)
        object_id = str(self._next_id)
        self._next_id += 1
        now = self._now()
        record = self._store(object_type, object_id, values, now, now)
        for association in associations or []:
            target = str((association.get("to") or {}).get("id", ""))
            for other in OBJECT_TYPES:
                if other != object_type and target in self.objects[other]:
                    self._associate(object_type, object_id, other, target)
        return record

    @staticmethod
    def _written(object_type: str, body: dict[str, Any]) -> list[str]:
        """A write answers with the properties it was given plus the defaults, as HubSpot does."""
        names = list(DEFAULT_PROPERTIES[object_type])
        names += [n for n in (body.get("properties") or {}) if n in SCHEMA[object_type] and n not in names]
        return names

    async def _create_one(self, request: Request, object_type: str) -> Response:
        body = await self._body(request)
        with self.sandbox.lock:
            record = self._create(object_type, body.get("properties") or {}, body.get("associations"))
        return self._json(self._shape(object_type, record, self._written(object_type, body)), status=201)

    async def _batch(self, request: Request, object_type: str) -> Response:
        action = request.path_params["action"]
        if action not in ("read", "create", "update", "upsert"):
            raise HubSpotError(404, f"No batch action '{action}' for {object_type}.", "OBJECT_NOT_FOUND")
        body = await self._body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            raise HubSpotError(400, "Invalid input JSON: inputs must be a list of objects.")
        if len(inputs) > BATCH_MAX_INPUTS:
            raise HubSpotError(400, f"Batch input is limited to {BATCH_MAX_INPUTS} inputs; got {len(inputs)}.")
        started = iso_ms(datetime.now(UTC))
        status, results, errors = 200, [], []
        with self.sandbox.lock:
            if action == "read":
                properties = self._requested(body.get("properties") or [], object_type)
                for item in inputs:
                    found = self._find(object_type, str(item.get("id")), body.get("idProperty"), missing_ok=True)
                    if found:
                        results.append(self._shape(object_type, found, properties))
                    else:
                        errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                                       "message": "Could not get some " + object_type + " objects, they may be "
                                       "deleted or not exist.", "context": {"ids": [str(item.get("id"))]}})
            elif action == "create":
                status = 201
                for item in inputs:
                    record = self._create(object_type, item.get("properties") or {}, item.get("associations"))
                    results.append(self._shape(object_type, record, self._written(object_type, item)))
            elif action == "update":
                self._no_duplicate_ids(inputs, lambda i: str(i.get("id")))
                for item in inputs:
                    record = self._find(object_type, str(item.get("id")), item.get("idProperty"))
                    self._write(object_type, record, item.get("properties") or {})
                    results.append(self._shape(object_type, record, self._written(object_type, item)))
            else:
                results = self._upsert(object_type, inputs)
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                  "completedAt": iso_ms(datetime.now(UTC))}
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
            status = 207
        return self._json(answer, status=status)

    @staticmethod
    def _no_duplicate_ids(inputs: list[dict], key: Callable[[dict], str]) -> None:
        seen = [key(i).lower() for i in inputs]
        duplicates = sorted({k for k in seen if seen.count(k) > 1})
        if duplicates:
            raise HubSpotError(400, f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique")

    def _upsert(self, object_type: str, inputs: list[dict[str, Any]]) -> list[Record]:
        """Create or update by a unique property; contacts match `email` case-insensitively."""
        self._no_duplicate_ids(inputs, lambda i: str(i.get("id")))
        results = []
        for item in inputs:
            id_property, key = item.get("idProperty") or "hs_object_id", str(item.get("id", ""))
            properties = dict(item.get("properties") or {})
            if id_property == "email" and object_type == "contacts":
                existing = self._by_email(key)
                properties.setdefault("email", key)
            elif id_property == "hs_object_id":
                existing = self.objects[object_type].get(key)
            elif id_property in UNIQUE_PROPERTIES[object_type]:
                existing = self._by_unique(object_type, id_property, key)
                properties.setdefault(id_property, key)
            else:
                raise HubSpotError(400, f"Property {id_property} is not a unique identifier for {object_type}.")
            if existing is not None:
                record, new = self._write(object_type, existing, properties), False
            elif id_property == "hs_object_id":
                raise HubSpotError(404, f"Object {key} not found; upsert by hs_object_id cannot create.")
            else:
                record, new = self._create(object_type, properties), True
            results.append({**self._shape(object_type, record, self._written(object_type, item)), "new": new})
        return results

    async def _merge(self, request: Request, object_type: str) -> Response:
        """`POST /crm/v3/objects/{type}/merge` `{"primaryObjectId", "objectIdToMerge"}`, as HubSpot merges: the
        primary keeps its id and its values, takes the other's values only where it has none, keeps the other's
        email as an additional one and both ids (`hs_merged_object_ids`, contacts' `hs_all_contact_vids`), and
        takes over its associations; the merged-away record is archived, and reading its id answers with the
        primary. Answers the primary as a simple public object (200)."""
        body = await self._body(request)
        primary_id, other_id = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if primary_id in (None, "") or other_id in (None, ""):
            raise HubSpotError(400, "Invalid input JSON: primaryObjectId and objectIdToMerge are required.")
        if str(primary_id) == str(other_id):
            raise HubSpotError(400, f"Cannot merge {object_type[:-1]} {primary_id} with itself.")
        with self.sandbox.lock:
            primary = self._find(object_type, str(primary_id))
            other = self._find(object_type, str(other_id))
            if primary["id"] == other["id"]:
                raise HubSpotError(400, f"{other_id} was already merged into {primary['id']}.")
            props, taken = primary["properties"], other["properties"]
            for name, value in taken.items():
                if name not in READ_ONLY and props.get(name) in (None, "") and value not in (None, ""):
                    props[name] = value
            merged = [i for i in (props.get("hs_merged_object_ids") or "").split(";") if i]
            merged += [i for i in [other["id"], *(taken.get("hs_merged_object_ids") or "").split(";")]
                       if i and i not in merged]
            props["hs_merged_object_ids"] = ";".join(merged)
            if object_type == "contacts":
                props["hs_all_contact_vids"] = ";".join([primary["id"], *merged])
                extra = [e for e in (props.get("hs_additional_emails") or "").split(";") if e]
                for email in [taken.get("email"), *(taken.get("hs_additional_emails") or "").split(";")]:
                    if email and email.lower() != (props.get("email") or "").lower() and email not in extra:
                        extra.append(email)
                props["hs_additional_emails"] = ";".join(extra) or None
            for other_type, ids in self.associations.pop((object_type, other["id"]), {}).items():
                for linked in ids:
                    back = self.associations.get((other_type, linked), {}).get(object_type, [])
                    if other["id"] in back:
                        back.remove(other["id"])
                    if linked not in self.associations.get((object_type, primary["id"]), {}).get(other_type, []):
                        self._associate(object_type, primary["id"], other_type, linked)
            stamp = iso_ms(self._now())
            other["archived"], other["archivedAt"], other["_merged_into"] = True, stamp, primary["id"]
            props[MODIFIED[object_type]] = stamp
            primary["updatedAt"] = stamp
        return self._json(self._shape(object_type, primary, list(DEFAULT_PROPERTIES[object_type])))

    # -- ground truth -------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        """Every live object with every property the portal defines, in ascending id order."""
        with self.sandbox.lock:
            return [self._shape(stream, r, list(SCHEMA[stream])) for r in self._sorted(stream)]

    def touch(self, stream: str, count: int) -> list[str]:
        """Edit `count` records as a sales rep would; their modification date and `updatedAt` become now."""
        touched = []
        with self.sandbox.lock:
            for record in self._sorted(stream)[:count]:
                props = record["properties"]
                if stream == "contacts":
                    stage = props.get("lifecyclestage")
                    position = LIFECYCLE.index(stage) if stage in LIFECYCLE else 0
                    change = {"jobtitle": f"Edited {time.time_ns()}"} if position == len(LIFECYCLE) - 1 else {
                        "lifecyclestage": LIFECYCLE[position + 1]}
                elif stream == "companies":
                    change = {"numberofemployees": str(int(props.get("numberofemployees") or 0) + 1)}
                else:
                    change = {"amount": _money(round(float(props.get("amount") or 0) * 100) + 10_000)}
                self._write(stream, record, change)
                touched.append(record["id"])
        return touched


def _mixed_case(person: Person) -> str:
    """`Ada.Lovelace0@Acme0.example.com`: what a CRM import keeps when a human typed the address."""
    local = f"{person.first_name}.{person.last_name.replace('-', '')}{person.key}"
    domain = person.company.domain
    return f"{local}@{domain[:1].upper()}{domain[1:]}"


EMULATOR = HubSpotEmulator
