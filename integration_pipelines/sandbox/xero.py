"""Xero's Accounting API 2.0 and its identity service, as the connector and xero-python (15) see them.

What is emulated, and why each piece matters to a client:
- Identity: `POST /connect/token` (refresh-token grant; client id and secret as HTTP Basic or in the form, as
  xero-python sends them). Every refresh *rotates* the refresh token: the new one is returned, the one just used
  keeps working for a 30-minute grace period and then dies with `{"error": "invalid_grant"}`; a refresh token
  unused for 60 days dies too. Access tokens live 30 minutes by the emulator's clock (`advance_clock`,
  `set_clock`, `POST /_sandbox/xero/clock`) and can be expired or revoked from a test. `connect()` (or
  `POST /_sandbox/xero/connect`) is a user connecting an app: a new grant that follows these rules strictly, for
  live-mode tests; `consumed_refresh_tokens_presented` lists every rotated-out token presented again.
  `POST /connect/revocation` revokes a grant; `GET /connections` (and `/Connections`, as xero-python asks)
  lists the organisation. The seeded refresh token (the spec's fake value) is a standing grant that never
  expires, so a long-running demo can start any number of processes from the same environment; the tokens it
  rotates into are honoured by a restarted sandbox too (see `oauth_grants`).
- Scopes: each grant holds the scopes the user consented to (`connect(scope=…)`; the seeded grant has `SCOPE`,
  the seeded read-only grant `READ_ONLY_SCOPE`), and the token endpoint answers with them. A call needs its
  resource's scope (`READ_SCOPES`/`WRITE_SCOPES`: a PUT or POST needs the write scope, `accounting.transactions`
  or its granular successor for invoices, payments and manual journals (`accounting.manualjournals`: see
  WRITE_SCOPES for why both); a GET takes either, as Xero's scopes are additive); without it Xero answers 401
  problem details `Detail: "AuthorizationUnsuccessful"` with `WWW-Authenticate: … error="insufficient_scope"`
  (as Xero's developer community threads show it), so a read-only connection used for writes fails like it.
- The gateway: no/unknown/expired token → 401 problem details (`Detail: "TokenExpired: token expired at …"`);
  a missing or foreign `xero-tenant-id` → 403 `Detail: "AuthenticationUnsuccessful"`. Every answer carries
  `X-MinLimit-Remaining`, `X-DayLimit-Remaining`, `X-AppMinLimit-Remaining`; with `limit_minute(...)` a test
  makes the per-minute limit bite (429, `Retry-After`, `X-Rate-Limit-Problem: minute`).
- Lists: `GET /api.xro/2.0/{Contacts|Invoices|Payments|ManualJournals}` with `page` and `pageSize` (1..1000,
  default 100) answer `{"Id","Status","ProviderName","DateTimeUTC","pagination":{page,pageSize,pageCount,itemCount},
  "<Resource>":[…]}`; without `page` everything comes back at once (invoices then without line items, manual
  journals without journal lines, as Xero does). `/Items` is never paginated. Filters: `If-Modified-Since` (ISO
  8601 with or without zone, or an HTTP date) on `UpdatedDateUTC`, `where` (a subset of Xero's expression
  language: comparisons, `&&`/`||`/AND/OR, `.Contains/.StartsWith/.EndsWith`, `DateTime(y,m,d)`, `Guid("…")`),
  `order` ("Field [ASC|DESC], …"), `IDs`, `InvoiceNumbers`, `ContactIDs`, `Statuses`, `includeArchived`. Bad query
  values → 400 `QueryParseException`.
- Writes: `PUT` creates, `POST` creates too, and updates contacts named by `ContactID` and invoices named by
  `InvoiceID` (in the body or as `POST /Invoices/{id}`), with Xero's rules: DRAFT/SUBMITTED invoices are editable
  and may move to DRAFT, SUBMITTED, AUTHORISED or DELETED; AUTHORISED ones are editable while no payment is
  allocated and may move to VOIDED; PAID, VOIDED and DELETED ones answer "Invoice not of valid status for
  modification". Only the fields sent change. Bodies are
  `{"Invoices": [...]}`, `{"Payments": [...]}`, `{"Contacts": [...]}`. Validation failures answer 400
  `ValidationException` with every element echoed and its `ValidationErrors` (nothing is saved), or, with
  `summarizeErrors=false`, 200 with the failed elements flagged. `Idempotency-Key` (≤ 128 characters) replays the
  first answer; the same key with a different request is refused. A payment lowers its invoice's `AmountDue`,
  and settles it (`Status: PAID`) when nothing is left.
- Manual journals (`PUT`/`POST /ManualJournals`, `{"ManualJournals": [{Narration, Date, Status, LineAmountTypes,
  JournalLines: [{LineAmount, AccountCode, Description, TaxType}]}]}`, `GET /ManualJournals[/{id}]`): a narration
  and at least two lines; `LineAmount` is signed (debit positive, credit negative) and the lines must balance to
  zero; every `AccountCode` must be in the organisation's chart (`CHART_OF_ACCOUNTS`) and not a bank account
  (Xero never lets a manual journal touch a bank account); created DRAFT (default) or POSTED; a DRAFT one can be
  posted or deleted later, a POSTED one voided. A journal has no currency: Xero books it in the organisation's base
  currency. Failures answer the same 400 `ValidationException` with `Elements[].ValidationErrors[]` (the messages'
  exact wording for journals is unconfirmed; "Account code '…' is not a valid code for this document." is Xero's
  wording for an account a document cannot use, confirmed on invoice lines). The books hold a few journals of the
  bookkeeper's own (`HAND_JOURNALS`: posted, one voided duplicate, one draft).

Money is in decimal units; dates are Microsoft JSON dates (`/Date(1772841600000+0000)/`), `Date`/`DueDate` at
midnight UTC with a `DateString` twin. The books hold every person as a contact (names made unique, as Xero
insists), every world invoice as an ACCREC invoice (some unpaid ones still DRAFT), every payment that settles an
invoice (for the short-paid one the books record the full invoice amount: that is the cross-system mismatch),
and every product as an item.
"""

from __future__ import annotations

import base64
import binascii
import copy
import email.utils
import hashlib
import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..connectors.http import json_path
from .base import SandboxState, bearer_token
from .oauth_grants import STANDING_GRANT, OAuthEmulator
from .world import World

# Xero's own facts, kept here (an emulator never borrows the connector's copy of them)
API_ROOT = "/api.xro/2.0"
MAX_PAGE_SIZE = 1000
SANDBOX_CLIENT_ID = "FAKE-sandbox-xero-client-id-0000000000000000"
SANDBOX_CLIENT_SECRET = "FAKE-sandbox-xero-client-secret-integration-pipelines"
SANDBOX_REFRESH_TOKEN = "FAKE-sandbox-xero-refresh-token-integration-pipelines"
#: A second seeded grant, connected with only the `.read` scopes (the emulator's own fake value; the connector
#: knows none of it): what a least-privilege extraction connection holds. Like the seeded grant it never expires;
#: unlike it, the tokens it rotates into are forgotten when the sandbox restarts.
SANDBOX_READ_ONLY_REFRESH_TOKEN = "FAKE-sandbox-xero-read-only-refresh-token-0000"
SANDBOX_TENANT_ID = "00000000-fa4e-4000-8000-5a4db0c5e7e0"
TOKEN_PATH = "/connect/token"
REVOKE_PATH = "/connect/revocation"
CONNECTIONS_PATH = "/connections"
CONNECTIONS_PATHS = ("/connections", "/Connections")  # Xero routes case-insensitively; xero-python sends this
ACCESS_TOKEN_SECONDS = 1800  # 30 minutes
REFRESH_GRACE_SECONDS = 1800  # a rotated-out refresh token keeps working 30 minutes (for a lost response)
REFRESH_UNUSED_SECONDS = 60 * 86400  # a refresh token unused for 60 days expires
DEFAULT_PAGE_SIZE = 100
MAX_IDEMPOTENCY_KEY = 128
SCOPE = "offline_access accounting.transactions accounting.contacts accounting.settings"
READ_ONLY_SCOPE = "offline_access accounting.transactions.read accounting.contacts.read accounting.settings.read"
READ_ONLY_GRANT = "g0-read"
#: resource → the scopes that allow writing it: Xero's broad scope, and the granular one that apps created from
#: March 2026 are given instead (accounting.invoices, accounting.payments, accounting.manualjournals). Manual
#: journals take `accounting.transactions` or `accounting.manualjournals`: Xero's scope split (2 March 2026) moves
#: them out of the broad scope into their own granular one, and apps connected before it keep the broad scope until
#: September 2027, so both are live grants a client may hold; either one lets it write them, as in Xero.
WRITE_SCOPES: dict[str, tuple[str, ...]] = {
    "contacts": ("accounting.contacts",),
    "invoices": ("accounting.transactions", "accounting.invoices"),
    "payments": ("accounting.transactions", "accounting.payments"),
    "manualjournals": ("accounting.transactions", "accounting.manualjournals"),
    "items": ("accounting.settings",),
}
#: resource → the scopes that allow reading it: each write scope, or its `.read` twin
READ_SCOPES: dict[str, tuple[str, ...]] = {
    resource: (*scopes, *(f"{scope}.read" for scope in scopes)) for resource, scopes in WRITE_SCOPES.items()}
PROVIDER_NAME = "Integration Pipelines"
ORGANISATION = "Acme Trading (Xero sandbox)"

# resource (lower-case, as Xero's routing is case-insensitive) → (stream, envelope key, id field)
RESOURCES = {
    "contacts": ("contacts", "Contacts", "ContactID"),
    "invoices": ("invoices", "Invoices", "InvoiceID"),
    "payments": ("payments", "Payments", "PaymentID"),
    "items": ("items", "Items", "ItemID"),
    "manualjournals": ("manual_journals", "ManualJournals", "ManualJournalID"),
}
#: stream → its id field (a stream's name is not always its resource's: manual_journals ↔ ManualJournals)
ID_FIELDS = {stream: id_field for stream, _, id_field in RESOURCES.values()}
PAGINATED = frozenset({"contacts", "invoices", "payments", "manual_journals"})
#: lists that leave out their records' lines unless paged, as Xero does (invoices' LineItems, journals' JournalLines)
LINES_ONLY_WHEN_PAGED = {"invoices": "LineItems", "manual_journals": "JournalLines"}
_TYPE_NAMES = {"contacts": "Contact", "invoices": "Invoice", "payments": "Payment", "items": "Item",
               "manual_journals": "ManualJournal"}
#: The sandbox organisation's chart of accounts: code → (name, type). Xero's default chart (codes as it ships them),
#: plus the two accounts the group added for card processors (a business sets up such accounts itself, as the
#: QuickBooks company has its processor clearing, merchant fee and sales refund accounts). Manual journal lines are
#: checked against it; BANK accounts take payments and can never be used in a manual journal (help.xero.com, "You
#: can't post a manual journal to a bank account in Xero").
CHART_OF_ACCOUNTS: dict[str, tuple[str, str]] = {
    "090": ("Business Bank Account", "BANK"), "091": ("Business Savings Account", "BANK"),
    "200": ("Sales", "REVENUE"), "205": ("Sales Refunds", "REVENUE"), "260": ("Other Revenue", "REVENUE"),
    "310": ("Cost of Goods Sold", "DIRECTCOSTS"), "404": ("Bank Fees", "EXPENSE"),
    "412": ("Consulting & Accounting", "EXPENSE"), "416": ("Depreciation", "DEPRECIATN"),
    "420": ("Entertainment", "EXPENSE"), "429": ("General Expenses", "EXPENSE"),
    "493": ("Travel - National", "EXPENSE"), "494": ("Travel - International", "EXPENSE"),
    "433": ("Insurance", "EXPENSE"), "453": ("Office Expenses", "EXPENSE"), "469": ("Rent", "OVERHEADS"),
    "477": ("Wages and Salaries", "EXPENSE"), "485": ("Subscriptions", "EXPENSE"),
    "615": ("Card Processor Clearing", "CURRENT"), "620": ("Prepayments", "PREPAYMENT"),
    "630": ("Inventory", "INVENTORY"), "710": ("Office Equipment", "FIXED"),
    "711": ("Less Accumulated Depreciation on Office Equipment", "FIXED"), "850": ("Suspense", "CURRLIAB"),
}
#: Tax types a journal line may name, with their rate in percent (UK VAT codes and the zero ones every org has).
TAX_RATES = {"NONE": 0.0, "EXEMPTINPUT": 0.0, "EXEMPTOUTPUT": 0.0, "ZERORATEDINPUT": 0.0, "ZERORATEDOUTPUT": 0.0,
             "INPUT2": 20.0, "OUTPUT2": 20.0}
LINE_AMOUNT_TYPES = ("NoTax", "Exclusive", "Inclusive")
#: The bookkeeper's own manual journals, as every organisation's books hold them (none of them books a card fee):
#: (day of the world, narration, debit account, credit account, status). The fourth repeats the first by mistake
#: and was voided.
HAND_JOURNALS = (
    (0, "Depreciation of office equipment, February", "416", "711", "POSTED"),
    (0, "Insurance prepayment released for March", "433", "620", "POSTED"),
    (1, "Reclass: software subscription coded to office expenses", "485", "453", "POSTED"),
    (1, "Depreciation of office equipment, February", "416", "711", "VOIDED"),
    (2, "Accountancy fees accrued for the quarter (for review)", "412", "850", "DRAFT"),
    (2, "Rent prepayment released for March", "469", "620", "POSTED"),
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOTNET = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


# -- dates and money ------------------------------------------------------------------------------------
def dotnet(moment: datetime) -> str:
    """`/Date(1772841600000+0000)/`: epoch milliseconds, UTC."""
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _midnight(moment: datetime | date) -> datetime:
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _date_fields(name: str, moment: datetime | date) -> dict[str, str]:
    """A Xero date and its `…String` twin (`Date` + `DateString`), both at midnight UTC."""
    day = _midnight(moment)
    return {name: dotnet(day), f"{name}String": day.strftime("%Y-%m-%dT00:00:00")}


def parse_dotnet(value: str) -> datetime:
    match = _DOTNET.fullmatch(value)
    if match is None:
        raise ValueError(value)
    return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)


def parse_request_date(value: Any) -> datetime | None:
    """Dates in a write: `/Date(ms+0000)/`, `2026-03-09` or `2026-03-09T00:00:00`. None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if value.startswith("/Date("):
            return parse_dotnet(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_if_modified_since(value: str | None) -> datetime | None:
    """xero-python sends ISO 8601 without a zone (UTC is meant); HTTP clients send an HTTP date. Xero accepts both;
    an unreadable value is ignored, as HTTP says of a bad `If-Modified-Since`."""
    if not value:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _money(minor: int) -> float:
    return round(minor / 100, 2)


def _now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _guid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# -- the `where` expression language (a faithful subset) --------------------------------------------------
class QueryParseError(Exception):
    """A `where`/`order`/paging value Xero cannot use: 400 QueryParseException."""


_WHERE_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)|(?P<op>==|!=|>=|<=|>|<|&&|\|\||[(),.!])
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*))""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}
_METHODS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda a, b: b in a, "startswith": lambda a, b: a.startswith(b), "endswith": lambda a, b: a.endswith(b),
}


def _comparable(value: Any) -> Any:
    """Record values as the expression language sees them: dates as datetimes, GUIDs case-insensitively."""
    if isinstance(value, str):
        match = _DOTNET.fullmatch(value)
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        try:
            return str(uuid.UUID(value)) if len(value) == 36 else value
        except ValueError:
            return value
    return value


class _Where:
    """Parse once, then test records. Grammar: or := and (('||'|OR) and)*; and := unary (('&&'|AND) unary)*;
    unary := ('!'|NOT) unary | '(' or ')' | field op literal | field '.' Method '(' string ')' | field."""

    def __init__(self, text: str, known: set[str], type_name: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while text[position:].strip():
            match = _WHERE_TOKEN.match(text, position)
            if match is None or not match.lastgroup:
                raise QueryParseError(f"Syntax error '{text[position:position + 10].strip()}' at position {position}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            position = match.end()
        self.position = 0
        self.known = known
        self.type_name = type_name
        self.test = self._or()
        if self.position != len(self.tokens):
            raise QueryParseError(f"Syntax error '{self.tokens[self.position][1]}'")

    def _peek(self, offset: int = 0) -> str | None:
        index = self.position + offset
        return self.tokens[index][1] if index < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.position] if self.position < len(self.tokens) else None
        if token is None or (expected is not None and token[1].upper() != expected.upper()):
            raise QueryParseError(f"'{expected or 'expression'}' expected")
        self.position += 1
        return token

    def _or(self) -> Callable[[dict], bool]:
        parts = [self._and()]
        while (self._peek() or "").upper() in ("||", "OR"):
            self._take()
            parts.append(self._and())
        return lambda record: any(part(record) for part in parts)

    def _and(self) -> Callable[[dict], bool]:
        parts = [self._unary()]
        while (self._peek() or "").upper() in ("&&", "AND"):
            self._take()
            parts.append(self._unary())
        return lambda record: all(part(record) for part in parts)

    def _unary(self) -> Callable[[dict], bool]:
        if (self._peek() or "").upper() in ("!", "NOT"):
            self._take()
            inner = self._unary()
            return lambda record: not inner(record)
        if self._peek() == "(":
            self._take("(")
            inner = self._or()
            self._take(")")
            return inner
        kind, word = self._take()
        if kind != "word":
            raise QueryParseError(f"Expression expected at '{word}'")
        if word not in self.known:
            raise QueryParseError(f"No property or field '{word}' exists in type '{self.type_name}'")
        path = [word]
        while self._peek() == ".":
            self._take(".")
            name = self._take()[1]
            if name.lower() in _METHODS and self._peek() == "(":
                self._take("(")
                kind, argument = self._take()
                self._take(")")
                if kind != "string":
                    raise QueryParseError(f"{name} needs a string argument")
                method, needle, field = _METHODS[name.lower()], json.loads(argument), list(path)
                return lambda record: isinstance(value := json_path(record, field), str) and method(value, needle)
            path.append(name)
        op = self._peek()
        if op not in _COMPARE:
            return lambda record: json_path(record, path) is True
        self._take()
        literal, compare = self._literal(), _COMPARE[op]

        def test(record: dict) -> bool:
            value = _comparable(json_path(record, path))
            if value is None or literal is None:
                return compare(value, literal) if op in ("==", "!=") else False
            try:
                return compare(value, literal)
            except TypeError:
                return False

        return test

    def _literal(self) -> Any:
        kind, text = self._take()
        if kind == "string":
            return _comparable(json.loads(text))
        if kind == "number":
            return float(text)
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "null":
            return None
        if lowered in ("datetime", "guid"):
            self._take("(")
            args = []
            while self._peek() not in (")", None):
                value = self._take()[1]
                if value != ",":
                    args.append(value)
            self._take(")")
            try:
                if lowered == "guid":
                    return str(uuid.UUID(json.loads(args[0])))
                return datetime(*[int(float(a)) for a in args], tzinfo=UTC)  # type: ignore[misc]
            except (ValueError, IndexError, TypeError) as exc:
                raise QueryParseError(f"Invalid {text} literal") from exc
        raise QueryParseError(f"Literal expected at '{text}'")


def compile_where(text: str, known: set[str], type_name: str) -> Callable[[dict], bool]:
    """`Name.Contains("x") && Date >= DateTime(2026, 03, 08)` → a predicate over records."""
    return _Where(text, known, type_name).test


def parse_order(text: str, known: set[str], type_name: str) -> list[tuple[list[str], bool]]:
    """`"InvoiceNumber DESC, Date"` → [(path, descending), ...]."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise QueryParseError(f"Invalid order clause '{part.strip()}'")
        path = words[0].split(".")
        if path[0] not in known:
            raise QueryParseError(f"No property or field '{path[0]}' exists in type '{type_name}'")
        order.append((path, len(words) == 2 and words[1].upper() == "DESC"))
    return order


def _sort_key(value: Any) -> tuple[int, Any]:
    value = _comparable(value)
    if value is None:
        return (0, 0)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, str(value).casefold())


# -- the emulator ---------------------------------------------------------------------------------------
@dataclass
class _RefreshToken:
    grant: str
    issued_at: float
    #: when it was rotated out (first used); None while unused, and always for the standing seeded token
    consumed_at: float | None = None
    standing: bool = False


class XeroEmulator(OAuthEmulator):
    name = "xero"
    prefixes = (f"{API_ROOT}/", TOKEN_PATH, REVOKE_PATH, *CONNECTIONS_PATHS)
    streams = ("contacts", "invoices", "payments", "items", "manual_journals")
    refresh_prefix = "FAKE-xero-refresh-"

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.client_id = SANDBOX_CLIENT_ID
        self.client_secret = SANDBOX_CLIENT_SECRET
        self.clients[self.client_id] = self.client_secret
        self.tenant_id = SANDBOX_TENANT_ID
        self.refresh_tokens: dict[str, _RefreshToken] = {
            SANDBOX_REFRESH_TOKEN: _RefreshToken(STANDING_GRANT, self.now(), standing=True),
            SANDBOX_READ_ONLY_REFRESH_TOKEN: _RefreshToken(READ_ONLY_GRANT, self.now(), standing=True)}
        #: grant → the scopes the user consented to (space-separated, as the token endpoint answers them)
        self.grant_scopes: dict[str, str] = {STANDING_GRANT: SCOPE, READ_ONLY_GRANT: READ_ONLY_SCOPE}
        self.access_tokens: dict[str, tuple[str, float]] = {}
        self.revoked_grants: set[str] = set()
        self.refresh_tokens_presented: list[str] = []
        #: refresh tokens presented again after they were rotated out (inside the grace period or not): a client
        #: that stores every rotated token never does this
        self.consumed_refresh_tokens_presented: list[str] = []
        self.if_modified_since_seen: list[str | None] = []
        self.limits = {"minute": 60, "day": 5000, "appminute": 10_000}
        self.minute_window = 60.0
        self.enforce_minute_limit = False
        self._minute_calls: deque[float] = deque()
        self._day_calls = 0
        self.objects: dict[str, dict[str, dict[str, Any]]] = {stream: {} for stream in self.streams}
        self.chart = {code: {"AccountID": _guid(world.seed, "xero-account", code), "Code": code, "Name": name,
                             "Type": type_} for code, (name, type_) in CHART_OF_ACCOUNTS.items()}
        #: the accounts a payment may go to (bank accounts; Xero also allows accounts with payments enabled)
        self.accounts = {code: account for code, account in self.chart.items() if account["Type"] == "BANK"}
        self._next_invoice_number = 1001 + len(world.invoices) + 1000
        self._build(world)

    # -- the seeded books --------------------------------------------------------------------------------
    def _build(self, world: World) -> None:
        seed, rng = world.seed, world.rng("xero")
        for product in world.products:
            tracked = not product.sku.startswith(("SERVICE", "SUPPORT"))
            price = _money(product.unit_price)
            self._store("items", {
                "ItemID": _guid(seed, "xero-item", product.key), "Code": product.sku, "Name": product.name,
                "Description": product.name, "PurchaseDescription": product.name if tracked else None,
                "IsSold": True, "IsPurchased": tracked, "IsTrackedAsInventory": tracked,
                **({"InventoryAssetAccountCode": "630", "TotalCostPool": round(product.stock * price * 0.6, 2),
                    "QuantityOnHand": float(product.stock)} if tracked else {}),
                "SalesDetails": {"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT"},
                "PurchaseDetails": ({"UnitPrice": round(price * 0.6, 2), "COGSAccountCode": "310", "TaxType": "INPUT"}
                                    if tracked else {}),
                "UpdatedDateUTC": dotnet(world.start),
            })
        contact_ids: dict[int, str] = {}
        taken: set[str] = set()
        customers = {invoice.person.key for invoice in world.invoices}
        for person in sorted(world.people, key=lambda p: (p.created_at, p.key)):
            name = person.name
            for candidate in (person.name, f"{person.name} ({person.company.name})",
                              f"{person.name} ({person.company.name}) {person.key}"):
                name = candidate
                if candidate.casefold() not in taken:
                    break
            taken.add(name.casefold())
            cid = _guid(seed, "xero-contact", person.key)
            contact_ids[person.key] = cid
            self._store("contacts", {
                "ContactID": cid, "ContactStatus": "ACTIVE", "Name": name, "FirstName": person.first_name,
                "LastName": person.last_name, "EmailAddress": person.email,
                "BankAccountDetails": "",
                "Addresses": [
                    {"AddressType": "STREET", "AddressLine1": person.street, "City": person.city, "Region": "",
                     "PostalCode": person.postal_code, "Country": person.country, "AttentionTo": person.name},
                    {"AddressType": "POBOX", "City": "", "Region": "", "PostalCode": "", "Country": ""},
                ],
                "Phones": [
                    {"PhoneType": "DEFAULT", "PhoneNumber": person.phone, "PhoneAreaCode": "", "PhoneCountryCode": ""},
                    {"PhoneType": "MOBILE", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
                ],
                "UpdatedDateUTC": dotnet(person.updated_at), "ContactGroups": [], "IsSupplier": False,
                "IsCustomer": person.key in customers, "DefaultCurrency": person.currency,
                "ContactPersons": [], "HasAttachments": False, "HasValidationErrors": False,
            })
        payment_for = {p.invoice.key: p for p in world.payments if p.invoice is not None}
        for invoice in world.invoices:
            payment = payment_for.get(invoice.key)
            contact = self.objects["contacts"][contact_ids[invoice.person.key]]
            status = "PAID" if payment else ("DRAFT" if rng.random() < 0.25 else "AUTHORISED")
            lines = [self._line(seed, invoice.key, n, line.product.sku, line.product.name,
                                _money(line.product.unit_price), line.quantity)
                     for n, line in enumerate(invoice.lines)]
            iid = _guid(seed, "xero-invoice", invoice.key)
            updated = max(invoice.issued_at, payment.created_at) if payment else invoice.issued_at
            record = self._invoice_record(
                iid, "ACCREC", invoice.number, contact, _midnight(invoice.issued_at), _midnight(invoice.due_at),
                status, lines, invoice.currency, updated, reference=f"Order {invoice.key + 5001}")
            self._store("invoices", record)
            if payment is None:
                continue
            # the books record what settled the invoice: its full amount, whatever the processor charged
            self._apply_payment(record, {
                "PaymentID": _guid(seed, "xero-payment", payment.key), "Date": _date_fields("Date", payment.created_at)
                ["Date"], "Amount": record["Total"], "Reference": f"Paid via {payment.processor.title()}",
                "Account": self.accounts["090"]}, payment.created_at)
        self._seed_manual_journals(world)

    def _seed_manual_journals(self, world: World) -> None:
        """The journals of HAND_JOURNALS, dated in the world's days; the voided duplicate has the first's amount."""
        rng = world.rng("xero-manual-journals")
        amounts: list[float] = []
        for number, (day, narration, debit, credit, status) in enumerate(HAND_JOURNALS):
            amount = amounts[0] if number == 3 else _money(rng.randint(5_000, 150_000))
            amounts.append(amount)
            when = world.start + timedelta(days=day, hours=rng.randint(9, 17), minutes=rng.randint(0, 59))
            lines = [self._journal_line(amount, self.chart[debit], narration),
                     self._journal_line(-amount, self.chart[credit], narration)]
            self._store("manual_journals", self._journal_record(
                _guid(world.seed, "xero-manual-journal", number), narration, _midnight(when), status, "NoTax",
                lines, when))

    @staticmethod
    def _line(seed: int, invoice_key: object, number: int, code: str | None, description: str,
              unit: float, quantity: float, account: str = "200") -> dict[str, Any]:
        return {
            "LineItemID": _guid(seed, "xero-line", invoice_key, number), "Description": description,
            "Quantity": float(quantity), "UnitAmount": unit, **({"ItemCode": code} if code else {}),
            "AccountCode": account, "TaxType": "NONE", "TaxAmount": 0.0,
            "LineAmount": round(unit * float(quantity), 2), "Tracking": [],
        }

    @staticmethod
    def _contact_summary(contact: dict[str, Any]) -> dict[str, Any]:
        return {"ContactID": contact["ContactID"], "Name": contact["Name"], "Addresses": [], "Phones": [],
                "ContactGroups": [], "ContactPersons": [], "HasValidationErrors": False}

    def _invoice_record(self, iid: str, type_: str, number: str, contact: dict[str, Any], issued: datetime,
                        due: datetime, status: str, lines: list[dict[str, Any]], currency: str, updated: datetime,
                        reference: str = "") -> dict[str, Any]:
        total = round(sum(line["LineAmount"] for line in lines), 2)
        return {
            "Type": type_, "InvoiceID": iid, "InvoiceNumber": number, "Reference": reference,
            "Prepayments": [], "Overpayments": [], "AmountDue": total, "AmountPaid": 0.0, "AmountCredited": 0.0,
            "SentToContact": status != "DRAFT", "CurrencyRate": 1.0, "IsDiscounted": False, "HasAttachments": False,
            "HasErrors": False, "Contact": self._contact_summary(contact), **_date_fields("Date", issued),
            **_date_fields("DueDate", due), "BrandingThemeID": _guid(self.world.seed, "xero-branding"),
            "Status": status, "LineAmountTypes": "Exclusive", "LineItems": lines, "SubTotal": total,
            "TotalTax": 0.0, "Total": total, "UpdatedDateUTC": dotnet(updated), "CurrencyCode": currency,
            "Payments": [], "CreditNotes": [],
        }

    def _apply_payment(self, invoice: dict[str, Any], fields: dict[str, Any], when: datetime) -> dict[str, Any]:
        """Record a payment and settle (part of) its invoice; both records change, as they do in Xero."""
        amount = round(float(fields["Amount"]), 2)
        account = fields["Account"]
        payment = {
            "PaymentID": fields["PaymentID"], "Date": fields["Date"], "BankAmount": amount, "Amount": amount,
            "Reference": fields.get("Reference") or "", "CurrencyRate": 1.0, "PaymentType": "ACCRECPAYMENT"
            if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT", "Status": "AUTHORISED",
            "UpdatedDateUTC": dotnet(when), "HasAccount": True, "IsReconciled": False,
            "Account": {"AccountID": account["AccountID"], "Code": account["Code"]},
            "Invoice": {"Type": invoice["Type"], "InvoiceID": invoice["InvoiceID"],
                        "InvoiceNumber": invoice["InvoiceNumber"], "Contact": {
                            "ContactID": invoice["Contact"]["ContactID"], "Name": invoice["Contact"]["Name"]},
                        "CurrencyCode": invoice["CurrencyCode"], "Payments": [], "Prepayments": [],
                        "Overpayments": [], "CreditNotes": [], "HasErrors": False, "IsDiscounted": False},
            "HasValidationErrors": False,
        }
        self._store("payments", payment)
        invoice["AmountPaid"] = round(invoice["AmountPaid"] + amount, 2)
        invoice["AmountDue"] = round(invoice["Total"] - invoice["AmountPaid"] - invoice["AmountCredited"], 2)
        invoice["Payments"].append({"PaymentID": payment["PaymentID"], "Date": payment["Date"], "Amount": amount,
                                    "Reference": payment["Reference"], "CurrencyRate": 1.0, "HasAccount": False,
                                    "HasValidationErrors": False})
        if invoice["AmountDue"] <= 0:
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = payment["Date"]
        invoice["UpdatedDateUTC"] = dotnet(when)
        return payment

    @staticmethod
    def _journal_line(amount: float, account: dict[str, Any], description: str | None, tax_type: str = "NONE",
                      tax_amount: float = 0.0) -> dict[str, Any]:
        """A journal line as Xero answers it: the account by code and id, the amount signed (debit positive)."""
        line = {"Description": description, "TaxType": tax_type, "TaxAmount": tax_amount, "LineAmount": amount,
                "AccountCode": account["Code"], "Tracking": [], "AccountID": account["AccountID"], "IsBlank": False}
        return {k: v for k, v in line.items() if v is not None}

    @staticmethod
    def _journal_record(mid: str, narration: str, day: datetime, status: str, line_amount_types: str,
                        lines: list[dict[str, Any]], updated: datetime, *, url: str | None = None,
                        cash_basis: bool = True) -> dict[str, Any]:
        return {"Date": dotnet(day), "Status": status, "LineAmountTypes": line_amount_types,
                "UpdatedDateUTC": dotnet(updated), "ManualJournalID": mid, "Narration": narration,
                "JournalLines": lines, "Url": url, "ShowOnCashBasisReports": cash_basis, "HasAttachments": False}

    def _store(self, stream: str, record: dict[str, Any]) -> None:
        """Keep a record as Xero serialises it: fields without a value are left out, never sent as null."""
        for field in [k for k, v in record.items() if v is None]:
            del record[field]
        self.objects[stream][record[ID_FIELDS[stream]]] = record

    # -- test and demo controls ------------------------------------------------------------------------
    def expire_access_tokens(self) -> None:
        """Every issued access token expires now (as one does after 30 minutes)."""
        with self.sandbox.lock:
            self.access_tokens = {token: (grant, 0.0) for token, (grant, _) in self.access_tokens.items()}

    def revoke_grants(self) -> None:
        """The user disconnects the app: every refresh and access token dies, the seeded one included."""
        with self.sandbox.lock:
            self.revoked_grants |= {known.grant for known in self.refresh_tokens.values()}

    def connect(self, client_id: str | None = None, client_secret: str | None = None,
                scope: str | None = None) -> str:
        """The user connects the app (with `offline_access`): a new grant whose refresh token rotates strictly.
        A new client id/secret pair registers that app too; `scope`: what the user consented to (default: every
        scope the connector asks for, `SCOPE`)."""
        with self.sandbox.lock:
            if client_id and client_secret:
                self.clients[client_id] = client_secret
            grant = self.new_grant()
            self.grant_scopes[grant] = scope or SCOPE
            token = self.mint_refresh_token(grant)
            self.refresh_tokens[token] = _RefreshToken(grant, self.now())
        return token

    def limit_minute(self, calls: int, window_seconds: float = 60.0) -> None:
        """Make the per-minute limit bite at `calls` per `window_seconds` (a test cannot wait for a real minute)."""
        with self.sandbox.lock:
            self.limits["minute"] = calls
            self.minute_window = window_seconds
            self.enforce_minute_limit = True
            self._minute_calls.clear()

    # -- protocol --------------------------------------------------------------------------------------
    def _problem(self, status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        """The gateway's problem-details body (401, 403, 429, 5xx)."""
        body = {"Type": None, "Title": _TITLES.get(status, "Error"), "Status": status, "Detail": detail,
                "Instance": str(uuid.uuid4()), "Extensions": {}}
        return JSONResponse(body, status_code=status, headers={"Xero-Correlation-Id": str(uuid.uuid4()),
                                                                **(headers or {})})

    def _api_exception(self, status: int, number: int, type_: str, message: str,
                       elements: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
                       ) -> JSONResponse:
        body: dict[str, Any] = {"ErrorNumber": number, "Type": type_, "Message": message}
        if elements is not None:
            body["Elements"] = elements
        return JSONResponse(body, status_code=status, headers=headers)

    def error_response(self, status: int, message: str) -> Response:
        return self._problem(status, f"An error occurred in Xero. Check the API Status page "
                             f"https://status.developer.xero.com for current service status. ({message})")

    def rate_limit_response(self, retry_after: float) -> Response:
        return self._problem(429, "Rate limit exceeded: minute", headers={
            "Retry-After": f"{math.ceil(retry_after):d}", "X-Rate-Limit-Problem": "minute",
            "X-MinLimit-Remaining": "0", "X-DayLimit-Remaining": str(self._remaining("day")),
            "X-AppMinLimit-Remaining": str(self._remaining("appminute"))})

    def _remaining(self, limit: str) -> int:
        used = self._day_calls if limit == "day" else len(self._minute_calls)
        return max(0, self.limits[limit] - used)

    def _authorize(self, request: Request) -> tuple[Response | None, dict[str, str]]:
        """Token, then tenant, then the rate limits. Returns (refusal, headers for the answer)."""
        token = bearer_token(request)
        now = self.now()
        with self.sandbox.lock:
            issued = self.access_tokens.get(token or "")
            if issued is None or issued[0] in self.revoked_grants:
                return self._problem(401, "AuthenticationUnsuccessful"), {}
            if issued[1] <= now:
                expired = datetime.fromtimestamp(issued[1], UTC) if issued[1] else datetime.now(UTC)
                return self._problem(401, f"TokenExpired: token expired at {expired:%m/%d/%Y %H:%M:%S}"), {}
            if not self._scope_allows(request, issued[0]):
                return self._problem(401, "AuthorizationUnsuccessful", headers={
                    "WWW-Authenticate": 'Bearer error="insufficient_scope"'}), {}
            if request.url.path.lower() != CONNECTIONS_PATH and request.headers.get("xero-tenant-id") != self.tenant_id:
                return self._problem(403, "AuthenticationUnsuccessful"), {}
            while self._minute_calls and self._minute_calls[0] <= now - self.minute_window:
                self._minute_calls.popleft()
            if self.enforce_minute_limit and len(self._minute_calls) >= self.limits["minute"]:
                wait = self._minute_calls[0] + self.minute_window - now
                return self.rate_limit_response(max(1.0, wait)), {}
            self._minute_calls.append(now)
            self._day_calls += 1
            headers = {"X-MinLimit-Remaining": str(self._remaining("minute")),
                       "X-DayLimit-Remaining": str(self._remaining("day")),
                       "X-AppMinLimit-Remaining": str(self._remaining("appminute"))}
        return None, headers

    def _scope_allows(self, request: Request, grant: str) -> bool:
        """Whether the grant's scopes cover this call: a GET reads, a PUT or POST writes (`READ_SCOPES`,
        `WRITE_SCOPES`); `/connections` and unknown resources need none here (the route answers those)."""
        resource = str(request.path_params.get("resource", "")).lower()
        table = READ_SCOPES if request.method == "GET" else WRITE_SCOPES
        if resource not in table:
            return True
        granted = set(self.grant_scopes.get(grant, SCOPE).split())
        return bool(granted.intersection(table[resource]))

    def _envelope(self, key: str, records: list[dict[str, Any]], pagination: dict[str, int] | None = None
                  ) -> dict[str, Any]:
        body: dict[str, Any] = {"Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": PROVIDER_NAME,
                                "DateTimeUTC": f"/Date({int(time.time() * 1000)})/"}
        if pagination is not None:
            body["pagination"] = pagination
        body[key] = records
        return body

    def routes(self) -> list[Route]:
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(REVOKE_PATH, self._revoke, methods=["POST"]),
            *(Route(path, self._connections, methods=["GET"]) for path in CONNECTIONS_PATHS),
            Route(f"{API_ROOT}/{{resource}}", self._collection, methods=["GET", "PUT", "POST"]),
            Route(f"{API_ROOT}/{{resource}}/{{id}}", self._single, methods=["GET", "POST"]),
            *self.control_routes(),
        ]

    # -- identity --------------------------------------------------------------------------------------
    async def _form(self, request: Request) -> dict[str, str]:
        return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
                return client_id, client_secret
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
        return form.get("client_id", ""), form.get("client_secret", "")

    async def _token(self, request: Request) -> Response:
        form = await self._form(request)
        client_id, client_secret = self._client_credentials(request, form)
        if not self.client_ok(client_id, client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        presented = form.get("refresh_token", "")
        now = self.now()
        with self.sandbox.lock:
            self.refresh_tokens_presented.append(presented)
            known = self.refresh_tokens.get(presented)
            if known is None and self.standing_grant_token(presented):
                # issued for the seeded grant before this sandbox was restarted or reset: still the grant's token
                known = self.refresh_tokens[presented] = _RefreshToken(STANDING_GRANT, now)
            if known is not None and known.consumed_at is not None:
                self.consumed_refresh_tokens_presented.append(presented)
            if (known is None or known.grant in self.revoked_grants
                    or (known.consumed_at is not None and now >= known.consumed_at + REFRESH_GRACE_SECONDS)
                    or (not known.standing and known.consumed_at is None
                        and now >= known.issued_at + REFRESH_UNUSED_SECONDS)):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            if not known.standing and known.consumed_at is None:
                known.consumed_at = now  # rotated out: works for the grace period, then dies
            access = f"FAKE-xero-access-{secrets.token_urlsafe(24)}"
            rotated = self.mint_refresh_token(known.grant)
            self.access_tokens[access] = (known.grant, now + ACCESS_TOKEN_SECONDS)
            self.refresh_tokens[rotated] = _RefreshToken(known.grant, now)
        return JSONResponse({"access_token": access, "expires_in": ACCESS_TOKEN_SECONDS,
                             "token_type": "Bearer", "refresh_token": rotated,
                             "scope": self.grant_scopes.get(known.grant, SCOPE)},
                            headers={"Cache-Control": "no-store"})

    async def _revoke(self, request: Request) -> Response:
        form = await self._form(request)
        if self._client_credentials(request, form) != (self.client_id, self.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        with self.sandbox.lock:
            known = self.refresh_tokens.get(form.get("token", ""))
            if known is not None:
                self.revoked_grants.add(known.grant)
        return Response(status_code=200)

    async def _connections(self, request: Request) -> Response:
        denied, headers = self._authorize(request)
        if denied:
            return denied
        stamp = self.world.start.strftime("%Y-%m-%dT%H:%M:%S.0000000")
        return JSONResponse([{"id": _guid(self.world.seed, "xero-connection"), "authEventId":
                              _guid(self.world.seed, "xero-auth-event"), "tenantId": self.tenant_id,
                              "tenantType": "ORGANISATION", "tenantName": ORGANISATION, "createdDateUtc": stamp,
                              "updatedDateUtc": stamp}], headers=headers)

    # -- reading ---------------------------------------------------------------------------------------
    def _resource(self, request: Request) -> tuple[str, str, str] | None:
        return RESOURCES.get(request.path_params["resource"].lower())

    async def _collection(self, request: Request) -> Response:
        resource = self._resource(request)
        denied, headers = self._authorize(request)
        if denied:
            return denied
        if resource is None:
            return PlainTextResponse("The resource you're looking for cannot be found", status_code=404,
                                     headers=headers)
        if request.method == "GET":
            try:
                return self._list(resource, request, headers)
            except QueryParseError as exc:
                return self._api_exception(400, 16, "QueryParseException", str(exc), headers=headers)
        return await self._write(resource, request, headers)

    async def _single(self, request: Request) -> Response:
        resource = self._resource(request)
        denied, headers = self._authorize(request)
        if denied:
            return denied
        record = None
        if resource is not None:
            stream, key, id_field = resource
            wanted = request.path_params["id"]
            with self.sandbox.lock:
                record = self.objects[stream].get(wanted.lower()) or next(
                    (r for r in self.objects[stream].values()
                     if wanted in (r.get("InvoiceNumber"), r.get("Code"), r.get("ContactNumber"))), None)
        if resource is None or record is None:
            return PlainTextResponse("The resource you're looking for cannot be found", status_code=404,
                                     headers=headers)
        if request.method == "POST":
            return await self._write(resource, request, headers, record_id=record[id_field])
        return JSONResponse(self._envelope(key, [copy.deepcopy(record)]), headers=headers)

    def _list(self, resource: tuple[str, str, str], request: Request, headers: dict[str, str]) -> Response:
        stream, key, id_field = resource
        params = request.query_params
        since_header = request.headers.get("if-modified-since")
        with self.sandbox.lock:
            self.if_modified_since_seen.append(since_header)
            rows = [copy.deepcopy(r) for r in self.objects[stream].values()]
        known = {field for row in rows for field in row} | {id_field, "UpdatedDateUTC"}
        type_name = _TYPE_NAMES[stream]
        if params.get("IDs"):
            wanted = {value.strip().lower() for value in params["IDs"].split(",")}
            rows = [r for r in rows if r[id_field].lower() in wanted]
        if stream == "invoices" and params.get("InvoiceNumbers"):  # exact numbers, comma-separated (Xero)
            numbers = {value.strip() for value in params["InvoiceNumbers"].split(",")}
            rows = [r for r in rows if r["InvoiceNumber"] in numbers]
        if stream == "invoices" and params.get("ContactIDs"):
            contacts = {value.strip().lower() for value in params["ContactIDs"].split(",")}
            rows = [r for r in rows if r["Contact"]["ContactID"].lower() in contacts]
        if stream == "invoices" and params.get("Statuses"):
            statuses = {value.strip().upper() for value in params["Statuses"].split(",")}
            rows = [r for r in rows if r["Status"] in statuses]
        if stream in ("contacts", "invoices") and params.get("includeArchived", "").lower() != "true":
            rows = [r for r in rows if r.get("ContactStatus", r.get("Status")) != "ARCHIVED"]
        since = parse_if_modified_since(since_header)
        if since is not None:
            rows = [r for r in rows if parse_dotnet(r["UpdatedDateUTC"]) >= since]
        if params.get("where"):
            predicate = compile_where(params["where"], known, type_name)
            rows = [r for r in rows if predicate(r)]
        # without `order`, records come by change time (unconfirmed default); the id breaks ties for stability
        order = parse_order(params["order"], known, type_name) if params.get("order") else [(["UpdatedDateUTC"],
                                                                                            False)]
        rows.sort(key=lambda r: r[id_field])
        for path, descending in reversed(order):
            rows.sort(key=lambda r, path=path: _sort_key(json_path(r, path)), reverse=descending)
        if resource[0] not in PAGINATED or "page" not in params:
            if stream in LINES_ONLY_WHEN_PAGED:
                for row in rows:  # a list without paging is a summary: no line items, no journal lines
                    row.pop(LINES_ONLY_WHEN_PAGED[stream], None)
            return JSONResponse(self._envelope(key, rows), headers=headers)
        page = self._int_param(params, "page", 1, 1, None)
        size = self._int_param(params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        pagination = {"page": page, "pageSize": size, "pageCount": math.ceil(len(rows) / size),
                      "itemCount": len(rows)}
        return JSONResponse(self._envelope(key, rows[(page - 1) * size: page * size], pagination), headers=headers)

    @staticmethod
    def _int_param(params: Any, name: str, default: int, low: int, high: int | None) -> int:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise QueryParseError(f"The value '{raw}' is not valid for {name}.") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise QueryParseError(f"{name} must be {bound}; got {value}")
        return value

    # -- writing ---------------------------------------------------------------------------------------
    async def _write(self, resource: tuple[str, str, str], request: Request, headers: dict[str, str],
                     record_id: str | None = None) -> Response:
        stream, key, _ = resource
        if stream == "items":
            return self._problem(405, "Items are read-only in this sandbox", headers)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self._api_exception(400, 14, "PostDataInvalidException", "Invalid Json data", headers=headers)
        elements = body.get(key) if isinstance(body, dict) and key in body else [body]
        if not isinstance(elements, list) or not all(isinstance(e, dict) for e in elements):
            return self._api_exception(400, 14, "PostDataInvalidException", f"Expected a list of {key}",
                                       headers=headers)
        if record_id is not None:
            elements = [{**e, resource[2]: record_id} for e in elements]
        idem_key = request.headers.get("idempotency-key")
        if idem_key is not None and len(idem_key) > MAX_IDEMPOTENCY_KEY:
            return self._api_exception(400, 10, "ValidationException",
                                       f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters",
                                       elements=[], headers=headers)
        summarize = request.query_params.get("summarizeErrors", "true").lower() != "false"
        payload = {"method": request.method, "path": request.url.path.lower(), "body": elements,
                   "summarize": summarize}

        def produce() -> tuple[int, Any]:
            with self.sandbox.lock:
                return self._save(stream, key, request.method, elements, summarize)

        status, answer, _ = self.replay_or_store(idem_key, payload, produce)
        if status == -1:
            return self._problem(409, f"The Idempotency-Key '{idem_key}' was already used with a different "
                                 "request", headers)
        return JSONResponse(answer, status_code=status, headers=headers)

    def _save(self, stream: str, key: str, method: str, elements: list[dict[str, Any]], summarize: bool
              ) -> tuple[int, Any]:
        """Validate every element first; with summarizeErrors (the default) one bad element saves nothing."""
        check = {"invoices": self._check_invoice, "payments": self._check_payment, "contacts": self._check_contact,
                 "manual_journals": self._check_manual_journal}
        checked = [check[stream](element, method) for element in elements]
        failed = [(element, errors) for element, (errors, _) in zip(elements, checked, strict=True) if errors]
        if failed and summarize:
            echoed = [{**element, "ValidationErrors": [{"Message": m} for m in errors]}
                      for element, (errors, _) in zip(elements, checked, strict=True)]
            return 400, {"ErrorNumber": 10, "Type": "ValidationException",
                         "Message": "A validation exception occurred", "Elements": echoed}
        results = []
        now = _now()
        for element, (errors, save) in zip(elements, checked, strict=True):
            if errors:
                results.append({**element, "HasErrors": True, "StatusAttributeString": "ERROR",
                                "ValidationErrors": [{"Message": m} for m in errors]})
            else:
                results.append(copy.deepcopy(save(now)))
        return 200, self._envelope(key, results)

    def _check_contact(self, element: dict[str, Any], method: str
                       ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        errors: list[str] = []
        existing = None
        if element.get("ContactID"):
            existing = self.objects["contacts"].get(str(element["ContactID"]).lower())
            if existing is None or method == "PUT":
                errors.append(f"The ContactID '{element['ContactID']}' could not be found"
                              if existing is None else "A contact with this ContactID already exists")
        name = element.get("Name", existing["Name"] if existing else None)
        if not name or not str(name).strip():
            errors.append("The contact name must be specified.")
        elif any(c["Name"].casefold() == str(name).casefold() and c is not existing
                 and c["ContactStatus"] == "ACTIVE" for c in self.objects["contacts"].values()):
            errors.append(f"The contact name {name} is already assigned to another contact. The contact name must "
                          "be unique across all active contacts.")
        email = element.get("EmailAddress")
        if email and not _EMAIL.match(str(email)):
            errors.append("Email address must be valid.")
        if element.get("ContactStatus") not in (None, "ACTIVE", "ARCHIVED"):
            errors.append(f"'{element['ContactStatus']}' is not a valid ContactStatus")

        def save(now: datetime) -> dict[str, Any]:
            if existing is not None:
                for field, value in element.items():
                    if field not in ("ContactID", "UpdatedDateUTC", "HasValidationErrors"):
                        existing[field] = value
                existing["UpdatedDateUTC"] = dotnet(now)
                return existing
            record = {
                "ContactID": str(uuid.uuid4()), "ContactStatus": "ACTIVE", "Name": name, "FirstName": None,
                "LastName": None, "EmailAddress": None, "BankAccountDetails": "", "Addresses": [], "Phones": [],
                "ContactGroups": [], "IsSupplier": False, "IsCustomer": False, "ContactPersons": [],
                "HasAttachments": False, "HasValidationErrors": False,
                **{k: v for k, v in element.items() if k not in ("ContactID", "UpdatedDateUTC")},
                "UpdatedDateUTC": dotnet(now),
            }
            self._store("contacts", record)
            return record

        return errors, save

    def _find_contact(self, reference: Any) -> dict[str, Any] | None:
        if not isinstance(reference, dict):
            return None
        if reference.get("ContactID"):
            return self.objects["contacts"].get(str(reference["ContactID"]).lower())
        name = str(reference.get("Name") or "").casefold()
        return next((c for c in self.objects["contacts"].values() if c["Name"].casefold() == name), None)

    def _check_invoice(self, element: dict[str, Any], method: str
                       ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        if element.get("InvoiceID"):
            return self._check_invoice_update(element, method)
        errors: list[str] = []
        type_ = element.get("Type")
        if type_ not in ("ACCREC", "ACCPAY"):
            errors.append("Invoice Type must be specified" if not type_ else f"'{type_}' is not a valid Invoice Type")
        reference = element.get("Contact")
        contact = self._find_contact(reference)
        if not isinstance(reference, dict) or not (reference.get("ContactID") or reference.get("Name")):
            errors.append("A Contact must be specified for this type of transaction")
        elif reference.get("ContactID") and contact is None:
            errors.append(f"The contact with ContactID '{reference['ContactID']}' could not be found")
        raw_lines = element.get("LineItems") or []
        if not raw_lines:
            errors.append("At least one line item must be specified")
        items = {item["Code"]: item for item in self.objects["items"].values()}
        for line in raw_lines:
            code = line.get("ItemCode")
            if code and code not in items:
                errors.append(f"Item code '{code}' is not valid")
            if not code and not line.get("Description"):
                errors.append("Description must be specified for a line item")
            if "UnitAmount" in line:
                try:
                    float(line["UnitAmount"])
                except (TypeError, ValueError):
                    errors.append("Unit Amount must be a valid number")
            account_code = line.get("AccountCode")
            if account_code is not None and (self.chart.get(str(account_code)) or {}).get("Type", "BANK") == "BANK":
                errors.append(f"Account code '{account_code}' is not a valid code for this document.")
        status = element.get("Status", "DRAFT")
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            errors.append("Invoice not of valid status for creation")
        issued = parse_request_date(element.get("Date")) if element.get("Date") else _midnight(_now())
        due = parse_request_date(element.get("DueDate")) if element.get("DueDate") else issued
        if issued is None:
            errors.append("Date must be a valid date")
        if due is None:
            errors.append("DueDate must be a valid date")
        number = element.get("InvoiceNumber")
        if number and type_ == "ACCREC" and any(i["InvoiceNumber"] == number and i["Type"] == "ACCREC"
                                                for i in self.objects["invoices"].values()):
            errors.append("Invoice # must be unique.")

        def save(now: datetime) -> dict[str, Any]:
            nonlocal contact
            if contact is None:  # Xero creates a contact from a Name it does not know
                _, create = self._check_contact({"Name": reference["Name"]}, "PUT")
                contact = create(now)
            iid = str(uuid.uuid4())
            lines = []
            for n, line in enumerate(raw_lines):
                item = items.get(line.get("ItemCode") or "")
                unit = float(line.get("UnitAmount", item["SalesDetails"]["UnitPrice"] if item else 0.0))
                lines.append(self._line(self.world.seed, iid, n, line.get("ItemCode"),
                                        line.get("Description") or (item["Name"] if item else ""), round(unit, 2),
                                        float(line.get("Quantity", 1)), line.get("AccountCode", "200")))
            invoice_number = number or f"INV-{self._next_invoice_number}"
            if not number:
                self._next_invoice_number += 1
            record = self._invoice_record(
                iid, type_, invoice_number, contact, _midnight(issued or now), _midnight(due or now), status, lines,
                element.get("CurrencyCode") or contact.get("DefaultCurrency") or "USD", now,
                reference=element.get("Reference", ""))
            self._store("invoices", record)
            return record

        return errors, save

    def _check_invoice_update(self, element: dict[str, Any], method: str
                              ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        """`POST /Invoices` (or `/Invoices/{id}`) naming an `InvoiceID`: only the fields sent change.

        Xero's rules: DRAFT and SUBMITTED invoices can be edited freely and moved to DRAFT, SUBMITTED, AUTHORISED or
        DELETED; an AUTHORISED one can be edited while no payment is allocated to it, and moved to VOIDED (not back
        to DRAFT/SUBMITTED, not to DELETED); PAID, VOIDED and DELETED invoices cannot be modified at all."""
        errors: list[str] = []
        existing = self.objects["invoices"].get(str(element["InvoiceID"]).lower())
        if existing is None or method == "PUT":
            errors.append(f"The InvoiceID '{element['InvoiceID']}' could not be found" if existing is None
                          else "An Invoice with this InvoiceID already exists: use POST to update it")
            return errors, lambda now: {}
        old = existing["Status"]
        new = element.get("Status", old)
        edits = {k for k in element if k not in ("InvoiceID", "Status", "UpdatedDateUTC", "HasErrors",
                                                 "ValidationErrors") and element[k] != existing.get(k)}
        allowed = {"DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
                   "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
                   "AUTHORISED": {"AUTHORISED", "VOIDED"}}
        if old not in allowed:
            errors.append("Invoice not of valid status for modification")
            return errors, lambda now: existing
        if new not in allowed[old]:
            errors.append(f"Invoice not of valid status for modification: a {old} invoice cannot become {new}")
        if old == "AUTHORISED" and existing["AmountPaid"] > 0 and (edits or new != old):
            errors.append("This document cannot be edited as it has a payment or credit note allocated to it.")
        if "Type" in element and element["Type"] != existing["Type"]:
            errors.append("The Type of an invoice cannot be changed")
        contact = self._find_contact(element["Contact"]) if "Contact" in element else None
        if "Contact" in element and contact is None:
            errors.append("The contact could not be found")
        raw_lines = element.get("LineItems")
        items = {item["Code"]: item for item in self.objects["items"].values()}
        if raw_lines is not None:
            if not raw_lines:
                errors.append("At least one line item must be specified")
            for line in raw_lines:
                code = line.get("ItemCode")
                if code and code not in items:
                    errors.append(f"Item code '{code}' is not valid")
                if not code and not line.get("Description"):
                    errors.append("Description must be specified for a line item")
                try:
                    float(line.get("UnitAmount", 0))
                except (TypeError, ValueError):
                    errors.append("Unit Amount must be a valid number")
        issued = parse_request_date(element["Date"]) if element.get("Date") else None
        due = parse_request_date(element["DueDate"]) if element.get("DueDate") else None
        if element.get("Date") and issued is None:
            errors.append("Date must be a valid date")
        if element.get("DueDate") and due is None:
            errors.append("DueDate must be a valid date")
        number = element.get("InvoiceNumber")
        if number and number != existing["InvoiceNumber"] and any(
                i["InvoiceNumber"] == number and i["Type"] == existing["Type"] and i is not existing
                for i in self.objects["invoices"].values()):
            errors.append("Invoice # must be unique.")

        def save(now: datetime) -> dict[str, Any]:
            if contact is not None:
                existing["Contact"] = self._contact_summary(contact)
            if raw_lines is not None:
                lines = []
                for n, line in enumerate(raw_lines):
                    item = items.get(line.get("ItemCode") or "")
                    unit = float(line.get("UnitAmount", item["SalesDetails"]["UnitPrice"] if item else 0.0))
                    lines.append(self._line(self.world.seed, (existing["InvoiceID"], now.timestamp()), n,
                                            line.get("ItemCode"), line.get("Description") or (
                                                item["Name"] if item else ""), round(unit, 2),
                                            float(line.get("Quantity", 1)), line.get("AccountCode", "200")))
                total = round(sum(line["LineAmount"] for line in lines), 2)
                existing.update(LineItems=lines, SubTotal=total, Total=total,
                                AmountDue=round(total - existing["AmountPaid"] - existing["AmountCredited"], 2))
            if issued is not None:
                existing.update(_date_fields("Date", _midnight(issued)))
            if due is not None:
                existing.update(_date_fields("DueDate", _midnight(due)))
            for field in ("Reference", "InvoiceNumber", "CurrencyCode"):
                if field in element:
                    existing[field] = element[field]
            existing["Status"] = new
            if new == "VOIDED":
                existing["AmountDue"] = 0.0
            existing["SentToContact"] = existing["SentToContact"] or new not in ("DRAFT", "DELETED")
            existing["UpdatedDateUTC"] = dotnet(now)
            return existing

        return errors, save

    def _check_payment(self, element: dict[str, Any], method: str
                       ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        errors: list[str] = []
        reference = element.get("Invoice") if isinstance(element.get("Invoice"), dict) else {}
        invoice = None
        if reference.get("InvoiceID"):
            invoice = self.objects["invoices"].get(str(reference["InvoiceID"]).lower())
        elif reference.get("InvoiceNumber"):
            invoice = next((i for i in self.objects["invoices"].values()
                            if i["InvoiceNumber"] == reference["InvoiceNumber"]), None)
        else:
            errors.append("Payments must be applied to an Invoice, Credit Note, Prepayment or Overpayment")
        if reference and invoice is None:
            errors.append("Invoice could not be found")
        account_ref = element.get("Account") if isinstance(element.get("Account"), dict) else {}
        account = next((a for a in self.accounts.values() if account_ref and (
            a["AccountID"] == str(account_ref.get("AccountID", "")).lower() or a["Code"] == account_ref.get("Code"))),
            None)
        if account is None:
            errors.append("Account must be a valid bank account or an account with payments enabled")
        try:
            amount = round(float(element.get("Amount")), 2)
        except (TypeError, ValueError):
            amount = 0.0
        if amount <= 0:
            errors.append("Payment amount must be greater than zero")
        if invoice is not None:
            if invoice["Status"] != "AUTHORISED":
                errors.append("Payments can only be made against Authorised documents")
            elif amount > invoice["AmountDue"]:
                errors.append("Payment amount exceeds the amount outstanding on this document")
        paid_on = parse_request_date(element.get("Date")) if element.get("Date") else _midnight(_now())
        if paid_on is None:
            errors.append("Date must be a valid date")

        def save(now: datetime) -> dict[str, Any]:
            assert invoice is not None and account is not None
            return self._apply_payment(invoice, {
                "PaymentID": str(uuid.uuid4()), "Date": dotnet(_midnight(paid_on or now)), "Amount": amount,
                "Reference": element.get("Reference", ""), "Account": account}, now)

        return errors, save

    # -- manual journals -------------------------------------------------------------------------------
    def _check_manual_journal(self, element: dict[str, Any], method: str
                              ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        """A new manual journal (`PUT`, or `POST` without a `ManualJournalID`): a narration, at least two lines on
        accounts of the chart that are not bank accounts, debits (positive) equal to credits (negative), created as
        DRAFT (the default) or POSTED."""
        if element.get("ManualJournalID"):
            return self._check_manual_journal_update(element, method)
        errors: list[str] = []
        narration = element.get("Narration")
        if not isinstance(narration, str) or not narration.strip():
            errors.append("Narration must be specified")
        status = element.get("Status", "DRAFT")
        if status not in ("DRAFT", "POSTED"):
            errors.append("Manual journal not of valid status for creation")
        amount_types = element.get("LineAmountTypes", "NoTax")
        if amount_types not in LINE_AMOUNT_TYPES:
            errors.append(f"'{amount_types}' is not a valid LineAmountTypes")
        day = parse_request_date(element["Date"]) if element.get("Date") else _midnight(_now())
        if day is None:
            errors.append("Date must be a valid date")
        lines, line_errors = self._journal_lines(element.get("JournalLines"), amount_types)
        errors += line_errors

        def save(now: datetime) -> dict[str, Any]:
            record = self._journal_record(
                str(uuid.uuid4()), str(narration), _midnight(day or now), status, amount_types, lines, now,
                url=element.get("Url"), cash_basis=bool(element.get("ShowOnCashBasisReports", True)))
            self._store("manual_journals", record)
            return record

        return errors, save

    def _check_manual_journal_update(self, element: dict[str, Any], method: str
                                     ) -> tuple[list[str], Callable[[datetime], dict[str, Any]]]:
        """`POST` naming a `ManualJournalID`: only the fields sent change. A DRAFT journal may be edited and moved to
        POSTED or DELETED, a POSTED one edited or VOIDED; VOIDED and DELETED ones are closed (the edit rules for
        posted journals are unconfirmed: Xero's app lets a person edit them, so the emulator does too)."""
        existing = self.objects["manual_journals"].get(str(element["ManualJournalID"]).lower())
        if existing is None or method == "PUT":
            return [f"The ManualJournalID '{element['ManualJournalID']}' could not be found" if existing is None
                    else "A manual journal with this ManualJournalID already exists: use POST to update it"
                    ], lambda now: {}
        allowed = {"DRAFT": {"DRAFT", "POSTED", "DELETED"}, "POSTED": {"POSTED", "VOIDED"}}
        old, new = existing["Status"], element.get("Status", existing["Status"])
        if old not in allowed or new not in allowed[old]:
            return ["Manual journal not of valid status for modification"], lambda now: existing
        errors: list[str] = []
        if "Narration" in element and not str(element["Narration"] or "").strip():
            errors.append("Narration must be specified")
        amount_types = element.get("LineAmountTypes", existing["LineAmountTypes"])
        if amount_types not in LINE_AMOUNT_TYPES:
            errors.append(f"'{amount_types}' is not a valid LineAmountTypes")
        day = parse_request_date(element["Date"]) if element.get("Date") else None
        if element.get("Date") and day is None:
            errors.append("Date must be a valid date")
        lines: list[dict[str, Any]] | None = None
        if "JournalLines" in element:
            lines, line_errors = self._journal_lines(element["JournalLines"], amount_types)
            errors += line_errors

        def save(now: datetime) -> dict[str, Any]:
            for field in ("Narration", "Url", "ShowOnCashBasisReports"):
                if field in element:
                    existing[field] = element[field]
            if lines is not None:
                existing["JournalLines"] = lines
            if day is not None:
                existing["Date"] = dotnet(_midnight(day))
            existing.update(Status=new, LineAmountTypes=amount_types, UpdatedDateUTC=dotnet(now))
            return existing

        return errors, save

    def _journal_lines(self, raw: Any, amount_types: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Journal lines as stored, and what is wrong with them: each names a number and an account of the chart
        (by code or id) that is not a bank account; the debits must equal the credits (with the tax of `Exclusive`
        lines added, as Xero posts it)."""
        if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(line, dict) for line in raw):
            return [], ["A manual journal must have at least two journal lines"]
        lines: list[dict[str, Any]] = []
        errors: list[str] = []
        for line in raw:
            try:
                amount = round(float(line["LineAmount"]), 2)
            except (KeyError, TypeError, ValueError):
                errors.append("Line Amount must be a valid number")
                continue
            account, problem = self._journal_account(line)
            tax_type = line.get("TaxType") or "NONE"
            if tax_type not in TAX_RATES:
                errors.append(f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of "
                              "transaction.")
            if account is None:
                errors.append(problem)
                continue
            rate = TAX_RATES.get(tax_type, 0.0)
            tax = 0.0 if amount_types == "NoTax" else round(
                amount * rate / 100 if amount_types == "Exclusive" else amount * rate / (100 + rate), 2)
            lines.append(self._journal_line(amount, account, line.get("Description"), tax_type, tax))
        if not errors:
            posted = [line["LineAmount"] + (line["TaxAmount"] if amount_types == "Exclusive" else 0.0)
                      for line in lines]
            debits, credits = sum(a for a in posted if a > 0), -sum(a for a in posted if a < 0)
            if round(debits - credits, 2) != 0:
                errors.append(f"The total debits ({debits:.2f}) must equal total credits ({credits:.2f})")
        return lines, errors

    def _journal_account(self, line: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The chart's account a journal line names (by `AccountCode`, else `AccountID`), or why there is none. A
        bank account is never valid on a manual journal: Xero refuses it like an unknown code."""
        code, account_id = line.get("AccountCode"), line.get("AccountID")
        if not code and not account_id:
            return None, "Account code must be specified"
        account = self.chart.get(str(code)) if code else next(
            (a for a in self.chart.values() if a["AccountID"] == str(account_id).lower()), None)
        if account is None or account["Type"] == "BANK":
            return None, f"Account code '{code or account_id}' is not a valid code for this document."
        return account, ""

    # -- ground truth ----------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        with self.sandbox.lock:
            return [copy.deepcopy(r) for r in self.objects[stream].values()]

    def touch(self, stream: str, count: int) -> list[str]:
        """Edit `count` records as a bookkeeper would; each edit moves its `UpdatedDateUTC` to now."""
        touched = []
        with self.sandbox.lock:
            for record in list(self.objects[stream].values())[:count]:
                stamp = time.time_ns()
                if stream == "contacts":
                    mobile = next(p for p in record["Phones"] if p["PhoneType"] == "MOBILE")
                    mobile["PhoneNumber"] = f"07{stamp % 10**9:09d}"
                elif stream == "invoices":
                    record["Reference"] = f"Checked {stamp}"
                elif stream == "payments":
                    record["IsReconciled"] = True
                    record["Reference"] = f"{record['Reference']} (reconciled {stamp})"
                elif stream == "manual_journals":
                    record["Narration"] = f"{record['Narration']} (reviewed {stamp})"
                else:
                    record["Description"] = f"{record['Name']} (revised {stamp})"
                record["UpdatedDateUTC"] = dotnet(_now())
                touched.append(record[ID_FIELDS[stream]])
        return touched


EMULATOR = XeroEmulator
