"""QuickBooks Online's v3 API as the connector and python-quickbooks (0.9) see it.

What is emulated, and why each piece matters to a client:
- Intuit's OAuth2: the discovery document (python-quickbooks finds the token endpoint there), the token
  endpoint (refresh-token grant, HTTP Basic client credentials, `invalid_grant` / `invalid_client`) and the
  revocation endpoint. Access tokens live one hour (by the emulator's clock: `advance_clock`, `set_clock`,
  `POST /_sandbox/quickbooks/clock`) and can be expired or revoked from a test mid-run, so the
  refresh-once-on-401 path of the engine is exercised over real HTTP. Refresh tokens rotate as Intuit's do: a
  refresh answers with the same refresh token for 24 hours after it was issued, then with a new one; the previous
  one keeps working until the new one is first used, and is refused (`invalid_grant`) from then on; unused for
  100 days (rolling) a token dies. `connect()` (or `POST /_sandbox/quickbooks/connect`) opens a new grant that
  follows these rules, for live-mode tests; `superseded_refresh_tokens_presented` lists every token presented
  after a newer one had been issued. The seeded refresh token is a standing grant (see `oauth_grants`).
- The query language: `SELECT * | COUNT(*) FROM <Entity> [WHERE f op v [AND ...]] [ORDERBY f [ASC|DESC]]
  [STARTPOSITION n] [MAXRESULTS n]`, by GET `?query=` or by POST with the SQL as an `application/text` body.
  Rows come back as `{"QueryResponse": {"<Entity>": [...], "startPosition", "maxResults"}, "time"}` and an
  empty result as `{"QueryResponse": {}, "time"}`. Name-list entities (Customer, Item) hide inactive rows
  unless the query filters on `Active`, as QBO does. Bad queries get QBO's `ValidationFault` bodies.
- Writes: `POST /v3/company/<realm>/<entity>` creates (no `Id`) or updates (`Id` + current `SyncToken`,
  else "Stale Object Error" 5010; `"sparse": true` merges), `?requestid=` replays the first answer, and a
  payment applied to an invoice lowers its balance and links both transactions. `?operation=delete` removes a
  transaction, `?operation=void` zeroes an invoice (and `operation=update&include=void` a payment); the deleted
  ones are then seen only by ChangeDataCapture (`GET /v3/company/<realm>/cdc?entities=..&changedSince=..`).
- Errors: `{"Fault": {"Error": [{"Message", "Detail", "code"}], "type"}, "time"}`; authentication failures
  use Intuit's other, lower-case envelope (`{"fault": {"error": [{"message", "detail", "code"}]}}`).
- Scopes are not enforced, on purpose: Intuit has one scope for the Accounting API,
  `com.intuit.quickbooks.accounting`, and it grants reads and writes alike (the others are
  `com.intuit.quickbooks.payment` and the OpenID ones). There is no read-only accounting scope, so no token a
  client could hold would be refused a write that its reads were allowed (the Xero, HubSpot and Stripe
  emulators, whose vendors do split reads from writes, refuse such writes).

Timestamps are in the company's time zone with its offset (America/Los_Angeles here), as Intuit sends them;
money is in decimal currency units. The accounting side of the seeded world holds every customer, every
invoice, and every payment that settles an invoice: the processor's payment without an invoice never reaches
the books, and for the short-paid invoice the books record the full invoice amount (that is the mismatch).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import operator
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..connectors.http import json_path
from .base import SandboxState, bearer_token
from .oauth_grants import STANDING_GRANT, OAuthEmulator
from .world import World

# Intuit's own facts, kept here (an emulator never borrows the connector's copy of them)
MAX_RESULTS = 1000
SANDBOX_CLIENT_ID = "ABsandboxFAKEclientIdIntegrationPipelines0000000000"
SANDBOX_CLIENT_SECRET = "FAKEsandboxClientSecretIntegrationPipelines00"
SANDBOX_REFRESH_TOKEN = "AB11FAKEsandboxRefreshTokenIntegrationPipelines000000"
SANDBOX_REALM_ID = "9130350000000000"
COMPANY_TZ = ZoneInfo("America/Los_Angeles")
ACCESS_TOKEN_SECONDS = 3600  # one hour
REFRESH_TOKEN_SECONDS = 8_726_400  # ~101 days, what Intuit reports in x_refresh_token_expires_in
REFRESH_ROTATION_SECONDS = 86_400  # a refresh answers with the same refresh token for 24 hours, then a new one
DEFAULT_MAX_RESULTS = 100
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REVOKE_PATH = "/v2/oauth2/tokens/revoke"
DISCOVERY_PATH = "/.well-known/openid_configuration"
CDC_MAX_DAYS = 30  # ChangeDataCapture looks back at most 30 days (`changedSince`)
#: the removals QBO's API offers: `?operation=delete` on transactions, `?operation=void` on an invoice, and a
#: payment's void, which QBO spells `?operation=update&include=void` (python-quickbooks' VoidMixin sends both forms)
_REMOVALS = {("Invoice", "delete"), ("Invoice", "void"), ("Payment", "delete"), ("Payment", "void"),
             ("Purchase", "delete"), ("JournalEntry", "delete")}
PAYMENT_REF_NUM_MAX = 21  # Payment.PaymentRefNum: "String, max 21 characters" (QBO API reference)

STREAM_ENTITY = {"customers": "Customer", "invoices": "Invoice", "payments": "Payment", "purchases": "Purchase",
                 "journal_entries": "JournalEntry"}
ENTITIES = ("Customer", "Invoice", "Payment", "Item", "Purchase", "JournalEntry")
_NAME_LISTS = {"Customer", "Item"}  # entities QBO "deletes" by deactivating, hidden from queries by default
_CURRENCY_NAMES = {"USD": "United States Dollar", "GBP": "British Pound Sterling", "EUR": "Euro"}

# queryable fields per entity: lower-cased name → (path in the object, kind of value)
_META = {"metadata.createtime": ("MetaData.CreateTime", "datetime"),
         "metadata.lastupdatedtime": ("MetaData.LastUpdatedTime", "datetime")}
_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "Customer": {
        "id": ("Id", "id"), "displayname": ("DisplayName", "str"), "givenname": ("GivenName", "str"),
        "familyname": ("FamilyName", "str"), "companyname": ("CompanyName", "str"),
        "fullyqualifiedname": ("FullyQualifiedName", "str"),
        "primaryemailaddr": ("PrimaryEmailAddr.Address", "str"), "active": ("Active", "bool"),
        "balance": ("Balance", "number"), **_META,
    },
    "Invoice": {
        "id": ("Id", "id"), "docnumber": ("DocNumber", "str"), "txndate": ("TxnDate", "date"),
        "duedate": ("DueDate", "date"), "customerref": ("CustomerRef.value", "id"),
        "totalamt": ("TotalAmt", "number"), "balance": ("Balance", "number"), **_META,
    },
    "Payment": {
        "id": ("Id", "id"), "txndate": ("TxnDate", "date"), "customerref": ("CustomerRef.value", "id"),
        "totalamt": ("TotalAmt", "number"), **_META,
    },
    "Purchase": {
        "id": ("Id", "id"), "txndate": ("TxnDate", "date"), "totalamt": ("TotalAmt", "number"),
        "paymenttype": ("PaymentType", "str"), **_META,
    },
    "JournalEntry": {
        "id": ("Id", "id"), "txndate": ("TxnDate", "date"), "docnumber": ("DocNumber", "str"),
        "totalamt": ("TotalAmt", "number"), **_META,
    },
    "Item": {
        "id": ("Id", "id"), "name": ("Name", "str"), "sku": ("Sku", "str"), "type": ("Type", "str"),
        "active": ("Active", "bool"), **_META,
    },
}


# -- time and money -------------------------------------------------------------------------------------
def qbo_time(moment: datetime) -> str:
    """`2026-03-08T10:00:00-08:00`: second precision, company-local offset."""
    return moment.astimezone(COMPANY_TZ).replace(microsecond=0).isoformat()


def _local_date(moment: datetime) -> str:
    return moment.astimezone(COMPANY_TZ).date().isoformat()


def _response_time() -> str:
    return datetime.now(COMPANY_TZ).isoformat(timespec="milliseconds")


def _now() -> datetime:
    return datetime.now(COMPANY_TZ).replace(microsecond=0)


def _money(minor: int) -> float:
    return round(minor / 100, 2)


def _currency(code: str) -> dict[str, str]:
    return {"value": code, "name": _CURRENCY_NAMES.get(code, code)}


# -- the query language ---------------------------------------------------------------------------------
class QueryError(Exception):
    """A query QBO refuses: `code` 4000 for syntax (QueryParserError), 4001 for meaning (QueryValidationError)."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.message, self.detail = code, message, detail


def _parser_error(detail: str) -> QueryError:
    return QueryError("4000", "Error parsing query", f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>'(?:\\.|[^'\\])*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),*])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


@dataclass(frozen=True)
class Condition:
    path: str
    kind: str
    op: str
    value: Any  # coerced; a tuple of coerced values for IN, a compiled regex for LIKE


@dataclass(frozen=True)
class Query:
    entity: str
    count: bool
    fields: tuple[str, ...] | None
    where: tuple[Condition, ...]
    order: tuple[tuple[str, str, bool], ...]  # (path, kind, descending)
    start: int
    max_results: int


def _coerce(kind: str, value: Any, *, literal: bool = False) -> Any:
    """Make a field value and a query literal comparable. Literals that cannot be read raise 4001."""
    if value is None:
        return None
    try:
        if kind == "id":
            text = str(value)
            return (0, int(text)) if text.isdigit() else (1, text)
        if kind == "number":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise ValueError(value)
        if kind == "date":
            return date.fromisoformat(str(value)[:10])
        if kind == "datetime":
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=COMPANY_TZ)
        return str(value).casefold()
    except ValueError:
        if literal:
            raise _validation_error(f"value '{value}' is not a valid {kind}") from None
        return None


class _Parser:
    """A recursive-descent parser for the subset of QBO's query language clients actually send."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0

    @staticmethod
    def _tokenize(text: str) -> list[_Token]:
        tokens, pos = [], 0
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                raise _parser_error(f'Lexical error at line 1, column {pos + 1}.  Encountered: "{text[pos]}"')
            if match.lastgroup != "space":
                tokens.append(_Token(str(match.lastgroup), match.group(), pos + 1))
            pos = match.end()
        return tokens

    # -- token helpers ------------------------------------------------------------------------------
    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _error(self, expecting: str) -> QueryError:
        token = self._peek()
        if token is None:
            found, column = '"<EOF>"', len(self.text) + 1
        else:
            kind = {"word": "IDENTIFIER", "number": "INTEGER"}.get(token.kind, token.kind.upper())
            found, column = f'" <{kind}> "{token.text} ""', token.column
        return _parser_error(f"Encountered {found} at line 1, column {column}.\nWas expecting:\n    {expecting} ...")

    def _take(self, kind: str, expecting: str) -> _Token:
        token = self._peek()
        if token is None or token.kind != kind:
            raise self._error(expecting)
        self.i += 1
        return token

    def _keyword(self, *words: str) -> str | None:
        token = self._peek()
        if token is not None and token.kind == "word" and token.text.upper() in words:
            self.i += 1
            return token.text.upper()
        return None

    def _punct(self, char: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.i += 1
            return True
        return False

    def _integer(self, clause: str) -> int:
        token = self._take("number", f"<INTEGER> after {clause}")
        if not token.text.lstrip("-").isdigit():
            raise _parser_error(f"{clause} needs an integer, got {token.text}")
        return int(token.text)

    # -- grammar ------------------------------------------------------------------------------------
    def parse(self) -> Query:
        if self._keyword("SELECT") is None:
            raise self._error('"select"')
        count, fields = False, None
        if self._punct("*"):
            while self._punct(","):  # `SELECT *, Sku FROM Item` (python-quickbooks): extra fields are in `*`
                self._take("word", "<IDENTIFIER>")
        elif self._keyword("COUNT"):
            for char in "(*)":
                if not self._punct(char):
                    raise self._error(f'"{char}"')
            count = True
        else:
            names = [self._take("word", '"*" or <IDENTIFIER>').text]
            while self._punct(","):
                names.append(self._take("word", "<IDENTIFIER>").text)
            fields = tuple(names)
        if self._keyword("FROM") is None:
            raise self._error('"from"')
        entity_token = self._take("word", "<IDENTIFIER>")
        entity = next((e for e in ENTITIES if e.lower() == entity_token.text.lower()), None)
        if entity is None:
            raise _validation_error(f"{entity_token.text} is not a supported entity; the sandbox knows "
                                    f"{', '.join(ENTITIES)}")
        raw_where: list[tuple[str, str, Any]] = []
        if self._keyword("WHERE"):
            raw_where.append(self._condition())
            while self._keyword("AND"):
                raw_where.append(self._condition())
        raw_order: list[tuple[str, bool]] = []
        if self._keyword("ORDERBY") or (self._keyword("ORDER") and self._keyword("BY")):
            while True:
                name = self._take("word", "<IDENTIFIER>").text
                raw_order.append((name, self._keyword("ASC", "DESC") == "DESC"))
                if not self._punct(","):
                    break
        start = self._integer("STARTPOSITION") if self._keyword("STARTPOSITION") else 1
        max_results = self._integer("MAXRESULTS") if self._keyword("MAXRESULTS") else DEFAULT_MAX_RESULTS
        if self._peek() is not None:
            raise self._error('"where", "orderby", "startposition", "maxresults" or <EOF>')
        if start < 1:
            raise _parser_error(f"STARTPOSITION must be 1 or more, got {start}")
        if not 1 <= max_results <= MAX_RESULTS:
            raise _parser_error(f"MAXRESULTS must be between 1 and {MAX_RESULTS}, got {max_results}")
        return self._validate(entity, count, fields, raw_where, raw_order, start, max_results)

    def _condition(self) -> tuple[str, str, Any]:
        name = self._take("word", "<IDENTIFIER>").text
        token = self._peek()
        if token is not None and token.kind == "op":
            self.i += 1
            op = token.text
        else:
            op = self._keyword("IN", "LIKE") or ""
            if not op:
                raise self._error('"=", "<", ">", "<=", ">=", "in" or "like"')
        if op == "IN":
            if not self._punct("("):
                raise self._error('"("')
            values = [self._literal()]
            while self._punct(","):
                values.append(self._literal())
            if not self._punct(")"):
                raise self._error('")"')
            return name, op, values
        return name, op, self._literal()

    def _literal(self) -> Any:
        token = self._peek()
        if token is not None and token.kind == "string":
            self.i += 1
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        if token is not None and token.kind == "number":
            self.i += 1
            return token.text
        if self._keyword("TRUE"):
            return True
        if self._keyword("FALSE"):
            return False
        raise self._error("<STRING>, <NUMBER>, true or false")

    @staticmethod
    def _field(entity: str, name: str) -> tuple[str, str]:
        found = _FIELDS[entity].get(name.lower())
        if found is None:
            raise _validation_error(f"property '{name}' is not queryable on {entity}")
        return found

    def _validate(
        self, entity: str, count: bool, fields: tuple[str, ...] | None, raw_where: list[tuple[str, str, Any]],
        raw_order: list[tuple[str, bool]], start: int, max_results: int,
    ) -> Query:
        where = []
        for name, op, value in raw_where:
            path, kind = self._field(entity, name)
            if op in ("!=", "<>"):
                raise _validation_error(f"operator {op} is not supported; use IN, =, <, >, <=, >= or LIKE")
            if op == "LIKE":
                if kind != "str":
                    raise _validation_error(f"LIKE needs a text property; {name} is not one")
                pattern = ".*".join(re.escape(part) for part in str(value).casefold().split("%"))
                where.append(Condition(path, kind, op, re.compile(pattern, re.DOTALL)))
            elif op == "IN":
                where.append(Condition(path, kind, op, tuple(_coerce(kind, v, literal=True) for v in value)))
            else:
                where.append(Condition(path, kind, op, _coerce(kind, value, literal=True)))
        if entity in _NAME_LISTS and not any(c.path == "Active" for c in where):
            where.append(Condition("Active", "bool", "=", True))
        order = tuple((*self._field(entity, name), desc) for name, desc in raw_order)
        return Query(entity, count, fields, tuple(where), order, start, max_results)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


def parse_query(text: str) -> Query:
    """Parse one QBO query; raises `QueryError` with the code and detail QBO would answer with."""
    return _Parser(text).parse()


def _matches(record: dict[str, Any], condition: Condition) -> bool:
    actual = _coerce(condition.kind, json_path(record, condition.path))
    if condition.kind == "bool" and actual is None:
        actual = False
    if actual is None:
        return False
    if condition.op == "IN":
        return actual in condition.value
    if condition.op == "LIKE":
        return bool(condition.value.fullmatch(actual))
    try:
        return _COMPARE[condition.op](actual, condition.value)
    except TypeError:
        return False


def run_query(query: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Filter and sort (ties broken by Id, so paging is deterministic); paging is the caller's."""
    selected = [r for r in rows if all(_matches(r, c) for c in query.where)]
    selected.sort(key=lambda r: _coerce("id", r["Id"]))
    for path, kind, descending in reversed(query.order):
        def key(record: dict[str, Any], path: str = path, kind: str = kind) -> tuple:
            value = _coerce(kind, json_path(record, path))
            return (0,) if value is None else (1, value)
        selected.sort(key=key, reverse=descending)
    return selected


# -- OAuth2 state -------------------------------------------------------------------------------------
@dataclass
class _AccessToken:
    refresh_token: str
    expires_at: float
    revoked: bool = False


@dataclass
class _RefreshToken:
    grant: str
    issued_at: float
    last_used_at: float
    #: the token that replaced this one (issued by a refresh 24 hours or more after this one was issued)
    successor: str | None = None
    #: refused from now on: its successor (or a later one) has been used, or the grant was revoked
    dead: bool = False
    standing: bool = False


@dataclass(eq=False)
class _Fault(Exception):
    """Raised inside a write to answer with a QBO fault; nothing is changed when it is raised."""

    status: int
    code: str
    message: str
    detail: str
    element: str | None = None
    type: str = "ValidationFault"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.type}, "time": _response_time()}


def _required(what: str) -> _Fault:
    return _Fault(400, "2020", "Required param missing, need to supply the required value for the API",
                  f"Required parameter {what} is missing in the request", element=what)


def _invalid_reference(what: str, value: Any) -> _Fault:
    return _Fault(400, "2500", "Invalid Reference Id",
                  f"Invalid Reference Id : {what} {value!r} does not exist or has been made inactive.",
                  element=what)


_SYSTEM_FIELDS = frozenset({"Id", "SyncToken", "MetaData", "domain", "sparse"})
_READ_ONLY: dict[str, frozenset[str]] = {
    # fields QBO computes; a client sending them is ignored rather than obeyed
    "Customer": _SYSTEM_FIELDS | {"Balance", "BalanceWithJobs", "FullyQualifiedName"},
    "Invoice": _SYSTEM_FIELDS | {"TotalAmt", "Balance", "LinkedTxn"},
    "Payment": _SYSTEM_FIELDS | {"UnappliedAmt"},
    "Purchase": _SYSTEM_FIELDS | {"TotalAmt"},
    "JournalEntry": _SYSTEM_FIELDS | {"TotalAmt"},
}


@dataclass(eq=False)
class _Scheduled:
    countdown: int
    action: Callable[[], None]


@dataclass
class _Scripted:
    status: int
    body: Any


class QuickBooksEmulator(OAuthEmulator):
    name = "quickbooks"
    prefixes = ("/v3/company/", "/oauth2/v1/tokens/", "/v2/oauth2/tokens/", DISCOVERY_PATH)
    streams = ("customers", "invoices", "payments")
    refresh_prefix = "AB11FAKE"

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.client_id = SANDBOX_CLIENT_ID
        self.client_secret = SANDBOX_CLIENT_SECRET
        self.clients[self.client_id] = self.client_secret
        self.realm_id = SANDBOX_REALM_ID
        now = self.now()
        self.refresh_tokens: dict[str, _RefreshToken] = {
            SANDBOX_REFRESH_TOKEN: _RefreshToken(STANDING_GRANT, now, now, standing=True)}
        self.refresh_tokens_presented: list[str] = []
        #: refresh tokens presented after a newer one had been issued for their grant: a client that stores
        #: every rotated token never does this (Intuit: "always use the latest refresh token")
        self.superseded_refresh_tokens_presented: list[str] = []
        self.access_tokens: dict[str, _AccessToken] = {}
        self._scheduled: list[_Scheduled] = []
        self._scripted: deque[_Scripted] = deque()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {entity: {} for entity in ENTITIES}
        self._next_id: dict[str, int] = {}
        self._build(world)

    # -- the seeded books ------------------------------------------------------------------------------
    def _build(self, world: World) -> None:
        meta_start = qbo_time(world.start)
        for product in world.products:
            service = product.sku.startswith(("SERVICE", "SUPPORT"))
            self._store("Item", {
                "Id": str(product.key + 1), "SyncToken": "0", "domain": "QBO", "sparse": False,
                "Name": product.name, "Sku": product.sku, "Description": product.name, "Active": True,
                "FullyQualifiedName": product.name, "Taxable": False, "UnitPrice": _money(product.unit_price),
                "Type": "Service" if service else "Inventory", "TrackQtyOnHand": not service,
                **({} if service else {"QtyOnHand": product.stock, "InvStartDate": world.start.date().isoformat()}),
                "IncomeAccountRef": {"value": "79", "name": "Sales of Product Income"},
                "MetaData": {"CreateTime": meta_start, "LastUpdatedTime": meta_start},
            })
        customer_ids: dict[int, str] = {}
        taken: set[str] = set()
        for number, person in enumerate(sorted(world.people, key=lambda p: (p.created_at, p.key)), start=1):
            display = person.name
            if display.casefold() in taken:  # QBO insists DisplayName is unique; bookkeepers add the company
                display = f"{person.name} ({person.company.name})"
            if display.casefold() in taken:
                display = f"{person.name} ({person.company.name}) {person.key}"
            taken.add(display.casefold())
            cid = str(number)
            customer_ids[person.key] = cid
            self._store("Customer", {
                "Id": cid, "SyncToken": "0", "domain": "QBO", "sparse": False,
                "DisplayName": display, "FullyQualifiedName": display, "PrintOnCheckName": person.name,
                "GivenName": person.first_name, "FamilyName": person.last_name,
                "CompanyName": person.company.name,
                "PrimaryEmailAddr": {"Address": person.email}, "PrimaryPhone": {"FreeFormNumber": person.phone},
                "BillAddr": {"Id": str(1000 + person.key), "Line1": person.street, "City": person.city,
                             "PostalCode": person.postal_code, "Country": person.country},
                "Balance": 0.0, "BalanceWithJobs": 0.0, "Active": True, "Job": False, "BillWithParent": False,
                "Taxable": False, "PreferredDeliveryMethod": "Email", "CurrencyRef": _currency(person.currency),
                "MetaData": {"CreateTime": qbo_time(person.created_at),
                             "LastUpdatedTime": qbo_time(person.updated_at)},
            })
        # Invoices and payments share one transaction sequence, numbered in the order they happened.
        booked = [p for p in world.payments if p.invoice is not None]
        events = sorted([(i.issued_at, 0, i.key) for i in world.invoices] + [(p.created_at, 1, p.key) for p in booked])
        txn_ids = {(kind, key): str(130 + n) for n, (_, kind, key) in enumerate(events)}
        payment_for = {p.invoice.key: p for p in booked if p.invoice is not None}
        for invoice in world.invoices:
            iid = txn_ids[(0, invoice.key)]
            customer = self.objects["Customer"][customer_ids[invoice.person.key]]
            payment = payment_for.get(invoice.key)
            lines = [self._sales_line(n, line.product.key + 1, line.product.name, line.product.unit_price,
                                      line.quantity) for n, line in enumerate(invoice.lines, start=1)]
            total = _money(invoice.amount)
            updated = max(invoice.issued_at, payment.created_at) if payment else invoice.issued_at
            self._store("Invoice", {
                "Id": iid, "SyncToken": "1" if payment else "0", "domain": "QBO", "sparse": False,
                "DocNumber": invoice.number, "TxnDate": _local_date(invoice.issued_at),
                "DueDate": _local_date(invoice.due_at), "SalesTermRef": {"value": "3", "name": "Net 30"},
                "CustomerRef": {"value": customer["Id"], "name": customer["DisplayName"]},
                "CurrencyRef": _currency(invoice.currency),
                "BillEmail": {"Address": invoice.person.email}, "BillAddr": copy.deepcopy(customer["BillAddr"]),
                "Line": [*lines, self._subtotal(lines)], "TxnTaxDetail": {"TotalTax": 0},
                "TotalAmt": total, "Balance": 0.0 if payment else total, "Deposit": 0,
                "ApplyTaxAfterDiscount": False, "PrintStatus": "NotSet", "EmailStatus": "EmailSent",
                "LinkedTxn": [{"TxnId": txn_ids[(1, payment.key)], "TxnType": "Payment"}] if payment else [],
                "MetaData": {"CreateTime": qbo_time(invoice.issued_at), "LastUpdatedTime": qbo_time(updated)},
            })
        for payment in booked:
            assert payment.invoice is not None
            customer = self.objects["Customer"][customer_ids[payment.person.key]]
            # The books record what settled the invoice: its full amount, whatever the processor charged.
            amount = _money(payment.invoice.amount)
            self._store("Payment", {
                "Id": txn_ids[(1, payment.key)], "SyncToken": "0", "domain": "QBO", "sparse": False,
                "TxnDate": _local_date(payment.created_at),
                "CustomerRef": {"value": customer["Id"], "name": customer["DisplayName"]},
                "CurrencyRef": _currency(payment.currency), "TotalAmt": amount, "UnappliedAmt": 0.0,
                "ProcessPayment": False, "PrivateNote": f"Paid via {payment.processor.title()}",
                "DepositToAccountRef": {"value": "4", "name": "Undeposited Funds"},
                "Line": [{"Amount": amount,
                          "LinkedTxn": [{"TxnId": txn_ids[(0, payment.invoice.key)], "TxnType": "Invoice"}]}],
                "MetaData": {"CreateTime": qbo_time(payment.created_at),
                             "LastUpdatedTime": qbo_time(payment.created_at)},
            })
        self._next_id = {"Customer": len(self.objects["Customer"]) + 1, "Item": len(world.products) + 1,
                         "txn": 130 + len(events)}
        #: what QBO keeps of a deleted transaction: its id and when it was deleted, served by ChangeDataCapture only
        self.deleted: dict[str, dict[str, dict[str, Any]]] = {entity: {} for entity in self.objects}
        for cid in self.objects["Customer"]:
            self._recompute_balance(cid)

    def _store(self, entity: str, record: dict[str, Any]) -> None:
        self.objects[entity][record["Id"]] = record

    @staticmethod
    def _sales_line(number: int, item_id: int, item_name: str, unit_price: int, quantity: int) -> dict[str, Any]:
        return {
            "Id": str(number), "LineNum": number, "Description": item_name,
            "Amount": _money(unit_price * quantity), "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {"ItemRef": {"value": str(item_id), "name": item_name},
                                    "UnitPrice": _money(unit_price), "Qty": quantity,
                                    "TaxCodeRef": {"value": "NON"}},
        }

    @staticmethod
    def _subtotal(lines: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Amount": round(sum(float(line["Amount"]) for line in lines), 2),
                "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}

    def _recompute_balance(self, customer_id: str) -> None:
        """Open invoices minus unapplied payments. The customer's SyncToken and LastUpdatedTime stay put:
        a balance moves because of other transactions, not because the customer record was edited."""
        customer = self.objects["Customer"].get(customer_id)
        if customer is None:
            return
        owed = sum(float(i["Balance"]) for i in self.objects["Invoice"].values()
                   if i["CustomerRef"]["value"] == customer_id)
        credit = sum(float(p.get("UnappliedAmt") or 0) for p in self.objects["Payment"].values()
                     if p["CustomerRef"]["value"] == customer_id)
        customer["Balance"] = customer["BalanceWithJobs"] = round(owed - credit, 2)

    # -- test and demo controls ------------------------------------------------------------------------
    def expire_access_tokens(self, after_requests: int = 0) -> None:
        """Expire every issued access token now, or after `after_requests` more authorized API calls
        (to make a token die in the middle of a paginated read, as a one-hour token eventually does)."""
        if after_requests > 0:
            self.after_requests(after_requests, self.expire_access_tokens)
            return
        with self.sandbox.lock:
            for issued in self.access_tokens.values():
                issued.expires_at = 0.0

    def after_requests(self, count: int, action: Callable[[], None]) -> None:
        """Run `action` right after the `count`-th next authorized API call has been let through, e.g. to
        revoke the grant mid-run as a user disconnecting the app would."""
        with self.sandbox.lock:
            self._scheduled.append(_Scheduled(count, action))

    def revoke(self, token: str | None = None) -> None:
        """Revoke a grant as a user disconnecting the app would: its refresh token and its access tokens.
        With no token, every grant is revoked."""
        with self.sandbox.lock:
            refresh = self.access_tokens[token].refresh_token if token in self.access_tokens else token
            if refresh is None:
                grants = {known.grant for known in self.refresh_tokens.values()}
            else:
                known = self.refresh_tokens.get(refresh)
                grants = {known.grant} if known else set()
            for known in self.refresh_tokens.values():
                if known.grant in grants:
                    known.dead = True
            for issued in self.access_tokens.values():
                owner = self.refresh_tokens.get(issued.refresh_token)
                if refresh is None or (owner is not None and owner.grant in grants):
                    issued.revoked = True

    def connect(self, client_id: str | None = None, client_secret: str | None = None) -> str:
        """The user connects the app (Intuit's consent screen): a new grant with its first refresh token, which
        rotates as Intuit's do. A new client id/secret pair registers that app too."""
        with self.sandbox.lock:
            if client_id and client_secret:
                self.clients[client_id] = client_secret
            grant, now = self.new_grant(), self.now()
            token = self.mint_refresh_token(grant)
            self.refresh_tokens[token] = _RefreshToken(grant, now, now)
        return token

    def queue_query_answer(self, status: int, body: Any) -> None:
        """Answer the next authorized query with exactly this (a Fault in a 200, a page without its envelope),
        to check how clients cope with what QBO sends on a bad day."""
        self._scripted.append(_Scripted(status, body))

    # -- protocol --------------------------------------------------------------------------------------
    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={"intuit_tid": secrets.token_hex(16), **(headers or {})})

    def fault_response(self, status: int, code: str, message: str, detail: str,
                       type_: str = "ValidationFault") -> JSONResponse:
        return self._json(_Fault(status, code, message, detail, type=type_).body(), status)

    def error_response(self, status: int, message: str) -> Response:
        return self.fault_response(status, "10000", "An application error has occurred while processing your "
                                   "request", f"System Failure Error: {message}", "SystemFault")

    def rate_limit_response(self, retry_after: float) -> Response:
        response = self.fault_response(
            429, "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "The request limit was reached. Retry after some time.", "SERVICE")
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def _intuit_auth_fault(self, status: int, message: str, code: str, detail: str | None, type_: str) -> JSONResponse:
        """Intuit's gateway envelope for 401/403: lower-case keys, epoch-millisecond time."""
        return self._json({
            "warnings": None, "intuitObject": None,
            "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": None}],
                      "type": type_},
            "report": None, "queryResponse": None, "batchItemResponse": [], "attachableResponse": [],
            "syncErrorResponse": None, "requestId": None, "time": int(time.time() * 1000), "status": None,
            "cdcresponse": [],
        }, status)

    def _authorize(self, request: Request) -> Response | None:
        token = bearer_token(request)
        issued = self.access_tokens.get(token or "")
        detail = None
        if token is None:
            detail = "Authorization header is missing or is not a Bearer token"
        elif issued is None:
            detail = "Token validation failed"
        elif issued.revoked:
            detail = "Token revoked"
        elif issued.expires_at <= self.now():
            detail = "Token expired"
        if detail is not None:
            return self._intuit_auth_fault(401, "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                           "3200", detail, "AUTHENTICATION")
        if request.path_params.get("realm") != self.realm_id:
            return self._intuit_auth_fault(403, "message=AuthorizationFailed; errorCode=003100; statusCode=403",
                                           "3100", None, "SERVICE")
        with self.sandbox.lock:
            due = []
            for scheduled in self._scheduled:
                scheduled.countdown -= 1
                if scheduled.countdown <= 0:
                    due.append(scheduled)
            self._scheduled = [s for s in self._scheduled if s not in due]
        for scheduled in due:
            scheduled.action()
        return None

    def routes(self) -> list[Route]:
        return [
            Route(DISCOVERY_PATH, self._discovery, methods=["GET"]),
            Route(DISCOVERY_PATH + "/", self._discovery, methods=["GET"]),
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(REVOKE_PATH, self._revoke, methods=["POST"]),
            Route("/v3/company/{realm}/query", self._query, methods=["GET", "POST"]),
            Route("/v3/company/{realm}/cdc", self._cdc, methods=["GET"]),
            Route("/v3/company/{realm}/{entity}", self._save, methods=["POST"]),
            Route("/v3/company/{realm}/{entity}/{id}", self._read, methods=["GET"]),
            *self.control_routes(),
        ]

    # -- OAuth2 ----------------------------------------------------------------------------------------
    async def _discovery(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return self._json({
            "issuer": "https://oauth.platform.intuit.com/op/v1",
            "authorization_endpoint": "https://appcenter.intuit.com/connect/oauth2",
            "token_endpoint": base + TOKEN_PATH,
            "userinfo_endpoint": base + "/v1/openid_connect/userinfo",
            "revocation_endpoint": base + REVOKE_PATH,
            "jwks_uri": base + "/op/v1/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        })

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            return user, password
        return form.get("client_id", ""), form.get("client_secret", "")

    def _client_ok(self, client_id: str, client_secret: str) -> bool:
        return self.client_ok(client_id, client_secret)

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        client_id, client_secret = self._client_credentials(request, form)
        if not self._client_ok(client_id, client_secret):
            return self._json({"error": "invalid_client"}, 401)
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return self._json({"error": "unsupported_grant_type"}, 400)
        refresh = form.get("refresh_token", "")
        if grant != "refresh_token":  # there is no browser consent in the sandbox: no code is ever valid
            return self._json({"error": "invalid_grant"}, 400)
        now = self.now()
        with self.sandbox.lock:
            self.refresh_tokens_presented.append(refresh)
            known = self.refresh_tokens.get(refresh)
            if known is None and self.standing_grant_token(refresh):
                # issued for the seeded grant before this sandbox was restarted or reset: still the grant's token
                known = self.refresh_tokens[refresh] = _RefreshToken(STANDING_GRANT, now, now)
            if known is not None and known.successor is not None:
                self.superseded_refresh_tokens_presented.append(refresh)
            if (known is None or known.dead
                    or (not known.standing and now >= known.last_used_at + REFRESH_TOKEN_SECONDS)):
                return self._json({"error": "invalid_grant", "error_description": "Token invalid"}, 400)
            current = refresh
            while self.refresh_tokens[current].successor is not None:  # an older token: answer with the newest
                current = str(self.refresh_tokens[current].successor)
            if current == refresh:
                # the newest token is used: every token it replaced is refused from now on
                for older in self.refresh_tokens.values():
                    if older.grant == known.grant and older.successor is not None and not older.standing:
                        older.dead = True
                if now >= known.issued_at + REFRESH_ROTATION_SECONDS:  # a day old: the answer carries a new one
                    current = self.mint_refresh_token(known.grant)
                    known.successor = current
                    self.refresh_tokens[current] = _RefreshToken(known.grant, now, now)
            self.refresh_tokens[current].last_used_at = now
            access = f"eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..sandbox.{secrets.token_urlsafe(32)}"
            self.access_tokens[access] = _AccessToken(current, now + ACCESS_TOKEN_SECONDS)
        return self._json({
            "token_type": "bearer", "access_token": access, "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": current, "x_refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
        }, headers={"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})

    async def _revoke(self, request: Request) -> Response:
        client_id, client_secret = self._client_credentials(request, {})
        if not self._client_ok(client_id, client_secret):
            return self._json({"error": "invalid_client"}, 401)
        try:
            token = json.loads(await request.body() or b"{}").get("token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            return self._json({"error": "invalid_request"}, 400)
        self.revoke(str(token))
        return Response(status_code=200)

    # -- reads -----------------------------------------------------------------------------------------
    async def _query(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        if request.method == "POST":
            text = (await request.body()).decode(errors="replace")
        else:
            text = request.query_params.get("query", "")
        if self._scripted:
            scripted = self._scripted.popleft()
            return self._json(scripted.body, scripted.status)
        if not text.strip():
            # QBO answers a query endpoint call without a query with a SystemFault in an HTTP 200.
            return self.fault_response(200, "10000", "An application error has occurred while processing your "
                                       "request", "System Failure Error: no query was given", "SystemFault")
        try:
            query = parse_query(text)
        except QueryError as exc:
            return self.fault_response(400, exc.code, exc.message, exc.detail)
        with self.sandbox.lock:
            rows = run_query(query, list(self.objects[query.entity].values()))
            if query.count:
                return self._json({"QueryResponse": {"totalCount": len(rows)}, "time": _response_time()})
            page = [self._project(r, query.fields) for r in rows[query.start - 1:query.start - 1 + query.max_results]]
        if not page:
            return self._json({"QueryResponse": {}, "time": _response_time()})
        return self._json({
            "QueryResponse": {query.entity: page, "startPosition": query.start, "maxResults": len(page)},
            "time": _response_time(),
        })

    @staticmethod
    def _project(record: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
        if fields is None:
            return copy.deepcopy(record)
        wanted = {f.lower() for f in fields}
        picked = {k: copy.deepcopy(v) for k, v in record.items() if k.lower() in wanted}
        return {"Id": record["Id"], **picked, "domain": "QBO", "sparse": True}

    def _entity(self, request: Request) -> str | None:
        name = request.path_params["entity"].lower()
        return next((e for e in ENTITIES if e.lower() == name), None)

    def _unsupported(self, request: Request) -> Response:
        return self.fault_response(400, "500", "Unsupported Operation",
                                   f"Operation Could not find resource for relative : {request.url.path} is not "
                                   "supported.")

    async def _read(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        entity = self._entity(request)
        if entity is None:
            return self._unsupported(request)
        with self.sandbox.lock:
            record = self.objects[entity].get(request.path_params["id"])
            record = copy.deepcopy(record) if record is not None else None
        if record is None:
            return self.fault_response(400, "610", "Object Not Found", "Object Not Found : Something you're "
                                       "trying to use has been made inactive. Check the fields with accounts, "
                                       "customers, items, vendors or employees.")
        return self._json({entity: record, "time": _response_time()})

    # -- writes ----------------------------------------------------------------------------------------
    async def _save(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        entity = self._entity(request)
        operation = request.query_params.get("operation")
        includes = request.query_params.get("include", "")
        if operation == "update" and "void" in includes:
            operation = "void"  # how QBO spells a payment's void: a sparse update that includes `void`
        if entity is None or entity == "Item" or (operation is not None and (entity, operation) not in _REMOVALS):
            return self._unsupported(request)
        raw = await request.body()
        request_id = request.query_params.get("requestid") or None
        allow_duplicate = "allowduplicatedocnum" in includes

        def produce() -> tuple[int, Any]:
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:
                return 400, _Fault(400, "2010", "Request has invalid or unsupported property",
                                   f"Property Name:Can not parse the request body ({exc})").body()
            if not isinstance(body, dict):
                return 400, _Fault(400, "2010", "Request has invalid or unsupported property",
                                   f"Property Name:the request body must be a {entity} object").body()
            try:
                with self.sandbox.lock:
                    if operation is not None:
                        saved = self._remove(entity, operation, body)
                    else:
                        saved = self._write(entity, body, allow_duplicate=allow_duplicate)
            except _Fault as fault:
                return fault.status, fault.body()
            return 200, {entity: saved, "time": _response_time()}

        # QBO keys the replay on the requestid alone: a retry returns the first answer without re-running it.
        key = f"{self.realm_id}:{request_id}" if request_id else None
        status, answer, _ = self.replay_or_store(key, {"realm": self.realm_id}, produce)
        return self._json(answer, status)

    def _write(self, entity: str, body: dict[str, Any], *, allow_duplicate: bool) -> dict[str, Any]:
        """Validate everything first, then change the books, so a refused write changes nothing."""
        read_only = _READ_ONLY[entity]
        if body.get("Id") in (None, ""):
            current = None
            record = {k: v for k, v in body.items() if k not in read_only}
        else:
            current = self._current(entity, body)
            changes = {k: v for k, v in body.items() if k not in read_only}
            if body.get("sparse") is True:
                record = {**copy.deepcopy(current), **changes}
            else:  # a full update: writable fields left out are cleared
                record = {k: copy.deepcopy(v) for k, v in current.items() if k in read_only} | changes
        prepare = {"Customer": self._prepare_customer, "Invoice": self._prepare_invoice,
                   "Payment": self._prepare_payment, "Purchase": self._prepare_purchase,
                   "JournalEntry": self._prepare_journal_entry}[entity]
        commit = prepare(record, current, allow_duplicate=allow_duplicate)
        now = qbo_time(_now())
        if current is None:
            record["Id"] = self._allocate(entity)
            record["SyncToken"] = "0"
            record["MetaData"] = {"CreateTime": now, "LastUpdatedTime": now}
        else:
            record["Id"] = current["Id"]
            record["SyncToken"] = str(int(current["SyncToken"]) + 1)
            record["MetaData"] = {**current["MetaData"], "LastUpdatedTime": now}
        record["domain"], record["sparse"] = "QBO", False
        self.objects[entity][record["Id"]] = record
        commit(record)
        return copy.deepcopy(record)

    def _current(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """The record an update, delete or void names by `Id`, at the `SyncToken` the caller last read."""
        if body.get("Id") in (None, ""):
            raise _required("Id")
        current = self.objects[entity].get(str(body["Id"]))
        if current is None:
            raise _Fault(400, "610", "Object Not Found", f"Object Not Found : {entity} {body['Id']} does not exist "
                         "or has been deleted.")
        if body.get("SyncToken") in (None, ""):
            raise _required("SyncToken")
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise _Fault(400, "5010", "Stale Object Error", "Stale Object Error : You and another user were "
                         "working on this at the same time. They finished before you did, so your work was not "
                         "saved.", element="SyncToken")
        return current

    def _remove(self, entity: str, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Delete or void a transaction, as a bookkeeper does by hand.
        - Delete: the record leaves every query and read (610 from then on); ChangeDataCapture alone still reports
          it, as `{"Id", "status": "Deleted", "MetaData": {"LastUpdatedTime"}}`. The answer is that same stub.
        - Void: the record stays under its number with every amount zeroed and `Voided` before its private note.
        A payment's delete or void gives its invoices their balance back. An invoice with a payment applied is
        refused either way: QBO will not void it (the payment must be removed first), and the twin refuses its
        delete too rather than unlink money silently (the API reference does not say what a delete does there)."""
        current = self._current(entity, body)
        now = qbo_time(_now())
        if entity == "Invoice" and any(t.get("TxnType") == "Payment" for t in current.get("LinkedTxn", [])):
            raise _Fault(400, "6000", "A business validation error has occurred while processing your request",
                         f"Business Validation Error: invoice {current.get('DocNumber')} has a payment applied. "
                         "Remove the payment first.")
        if entity == "Payment":
            self._release_payment(current, now)
        if operation == "delete":
            del self.objects[entity][current["Id"]]
            stub = {"Id": current["Id"], "status": "Deleted", "domain": "QBO"}
            self.deleted[entity][current["Id"]] = {**stub, "MetaData": {"LastUpdatedTime": now}}
            if "CustomerRef" in current:
                self._recompute_balance(current["CustomerRef"]["value"])
            return stub
        voided = current
        for line in voided.get("Line", []):
            line["Amount"] = 0.0
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict) and "UnitPrice" in detail:
                detail["UnitPrice"] = 0.0
        for field in ("TotalAmt", "Balance", "UnappliedAmt", "HomeBalance", "HomeTotalAmt"):
            if field in voided:
                voided[field] = 0.0
        voided["PrivateNote"] = f"Voided{' - ' + voided['PrivateNote'] if voided.get('PrivateNote') else ''}"
        voided["SyncToken"] = str(int(voided["SyncToken"]) + 1)
        voided["MetaData"] = {**voided["MetaData"], "LastUpdatedTime": now}
        if "CustomerRef" in voided:
            self._recompute_balance(voided["CustomerRef"]["value"])
        return copy.deepcopy(voided)

    def _release_payment(self, payment: dict[str, Any], now: str) -> None:
        """Give back to each invoice what `payment` took off it, and unlink the two."""
        for line in payment.get("Line", []):
            for link in line.get("LinkedTxn", []):
                invoice = self.objects["Invoice"].get(str(link.get("TxnId")))
                if invoice is None:
                    continue
                invoice["Balance"] = round(float(invoice["Balance"]) + float(line.get("Amount") or 0), 2)
                invoice["LinkedTxn"] = [t for t in invoice.get("LinkedTxn", []) if t.get("TxnId") != payment["Id"]]
                invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
                invoice["MetaData"] = {**invoice["MetaData"], "LastUpdatedTime": now}
        for line in payment.get("Line", []):
            line["LinkedTxn"] = []

    async def _cdc(self, request: Request) -> Response:
        """ChangeDataCapture: every object of `entities` changed at or after `changedSince` (30 days back at
        most), deleted ones as stubs with `status: Deleted`. One `QueryResponse` per entity, in the order asked;
        at most 1,000 objects each, and no paging."""
        denied = self._authorize(request)
        if denied:
            return denied
        names = [n.strip() for n in request.query_params.get("entities", "").split(",") if n.strip()]
        entities = [next((e for e in ENTITIES if e.lower() == n.lower()), None) for n in names]
        if not names or None in entities:
            return self.fault_response(400, "2030", "Invalid ID", "Param entities must name QuickBooks entities, "
                                       f"e.g. entities=Invoice,Payment; got {request.query_params.get('entities')!r}",
                                       element="entities")
        since_text = request.query_params.get("changedSince", "")
        try:
            since = datetime.fromisoformat(since_text.replace("Z", "+00:00"))
            if since.tzinfo is None:
                since = since.replace(tzinfo=COMPANY_TZ)
        except ValueError:
            return self.fault_response(400, "2030", "Invalid ID", f"Param changedSince is not a date: {since_text!r}",
                                       element="changedSince")
        if since < _now() - timedelta(days=CDC_MAX_DAYS):
            return self.fault_response(400, "2020", "Required param missing, need to supply the required value for "
                                       "the API", f"changedSince can not be more than {CDC_MAX_DAYS} days in the "
                                       "past", element="changedSince")
        answers = []
        with self.sandbox.lock:
            for entity in entities:
                assert entity is not None
                changed = [copy.deepcopy(r) for r in [*self.objects[entity].values(), *self.deleted[entity].values()]
                           if datetime.fromisoformat(r["MetaData"]["LastUpdatedTime"]) >= since]
                changed.sort(key=lambda r: r["MetaData"]["LastUpdatedTime"])
                changed = changed[:MAX_RESULTS]
                answers.append({entity: changed, "startPosition": 1, "maxResults": len(changed)} if changed else {})
        return self._json({"CDCResponse": [{"QueryResponse": answers}], "time": _response_time()})

    def _allocate(self, entity: str) -> str:
        counter = "txn" if entity in ("Invoice", "Payment", "Purchase", "JournalEntry") else entity
        value = self._next_id[counter]
        self._next_id[counter] = value + 1
        return str(value)

    def _customer_ref(self, record: dict[str, Any]) -> dict[str, Any]:
        ref = record.get("CustomerRef")
        value = ref.get("value") if isinstance(ref, dict) else None
        if value in (None, ""):
            raise _required("CustomerRef")
        customer = self.objects["Customer"].get(str(value))
        if customer is None or not customer.get("Active", True):
            raise _invalid_reference("CustomerRef", value)
        return customer

    def _prepare_customer(self, record: dict[str, Any], current: dict[str, Any] | None, *,
                          allow_duplicate: bool) -> Callable[[dict[str, Any]], None]:
        names = [record.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
        display = record.get("DisplayName") or " ".join(str(n) for n in names if n) or record.get("CompanyName")
        if not display:
            raise _required("DisplayName, GivenName, FamilyName or CompanyName")
        for other in self.objects["Customer"].values():
            if other["DisplayName"].casefold() == str(display).casefold() and (
                    current is None or other["Id"] != current["Id"]):
                raise _Fault(400, "6240", "Duplicate Name Exists Error", "The name supplied already exists. : "
                             f"Another customer is already using this name ({display}). Please use a "
                             "different name.", element="DisplayName")
        record["DisplayName"] = record["FullyQualifiedName"] = str(display)
        record.setdefault("PrintOnCheckName", str(display))
        record.setdefault("Active", True)
        record.setdefault("CurrencyRef", _currency("USD"))
        if current is None:
            record["Balance"] = record["BalanceWithJobs"] = 0.0
        return lambda saved: None

    def _prepare_invoice(self, record: dict[str, Any], current: dict[str, Any] | None, *,
                         allow_duplicate: bool) -> Callable[[dict[str, Any]], None]:
        customer = self._customer_ref(record)
        record["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        lines_in = record.get("Line")
        if not isinstance(lines_in, list) or not lines_in:
            raise _required("Line")
        lines: list[dict[str, Any]] = []
        for line in lines_in:
            kind = line.get("DetailType") if isinstance(line, dict) else None
            if kind == "SubTotalLineDetail":
                continue  # recomputed below, as QBO does
            if kind not in ("SalesItemLineDetail", "DescriptionOnly"):
                raise _required("Line.DetailType")
            if kind == "SalesItemLineDetail" and line.get("Amount") in (None, ""):
                raise _required("Line.Amount")
            detail = line.get("SalesItemLineDetail") or {}
            item_id = str((detail.get("ItemRef") or {}).get("value") or "1")
            item = self.objects["Item"].get(item_id)
            if kind == "SalesItemLineDetail" and item is None:
                raise _invalid_reference("Line.SalesItemLineDetail.ItemRef", item_id)
            number = len(lines) + 1
            copied = {**line, "Id": str(number), "LineNum": number,
                      "Amount": round(float(line.get("Amount") or 0), 2)}
            if kind == "SalesItemLineDetail" and item is not None:
                copied["SalesItemLineDetail"] = {**detail, "ItemRef": {"value": item_id, "name": item["Name"]}}
            lines.append(copied)
        total = round(sum(line["Amount"] for line in lines), 2)
        paid = round(float(current["TotalAmt"]) - float(current["Balance"]), 2) if current else 0.0
        if total < paid:
            raise _Fault(400, "6000", "A business validation error has occurred while processing your request",
                         f"Business Validation Error: the invoice total {total} is less than the {paid} already "
                         "paid against it.")
        record["Line"] = [*lines, self._subtotal(lines)]
        record["TotalAmt"], record["Balance"] = total, round(total - paid, 2)
        record["LinkedTxn"] = copy.deepcopy(current.get("LinkedTxn", [])) if current else []
        today = _now().date()
        record["TxnDate"] = str(record.get("TxnDate") or today.isoformat())
        record["DueDate"] = str(record.get("DueDate") or (date.fromisoformat(record["TxnDate"][:10])
                                                          + timedelta(days=30)).isoformat())
        record.setdefault("CurrencyRef", copy.deepcopy(customer.get("CurrencyRef", _currency("USD"))))
        if not record.get("DocNumber"):
            numbers = [int(m.group(1)) for i in self.objects["Invoice"].values()
                       if (m := re.fullmatch(r"INV-(\d+)", str(i.get("DocNumber", ""))))]
            record["DocNumber"] = f"INV-{max(numbers, default=1000) + 1}"
        elif not allow_duplicate and any(
                i["DocNumber"] == record["DocNumber"] and (current is None or i["Id"] != current["Id"])
                for i in self.objects["Invoice"].values()):
            raise _Fault(400, "6140", "Duplicate Document Number Error", "Duplicate Document Number Error : You "
                         f"must specify a different number. This number has already been used. "
                         f"DocNumber={record['DocNumber']} is assigned to TxnType=Invoice",
                         element="DocNumber")
        old_customer = current["CustomerRef"]["value"] if current else None

        def commit(saved: dict[str, Any]) -> None:
            self._recompute_balance(customer["Id"])
            if old_customer and old_customer != customer["Id"]:
                self._recompute_balance(old_customer)
        return commit

    def _prepare_payment(self, record: dict[str, Any], current: dict[str, Any] | None, *,
                         allow_duplicate: bool) -> Callable[[dict[str, Any]], None]:
        customer = self._customer_ref(record)
        record["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        if record.get("TotalAmt") in (None, ""):
            raise _required("TotalAmt")
        ref_num = record.get("PaymentRefNum")
        if ref_num is not None and len(str(ref_num)) > PAYMENT_REF_NUM_MAX:
            # QBO keeps at most 21 characters here, so a processor's 27-character charge id never fits whole
            raise _Fault(400, "2050", "String length is either shorter or longer than supported by specification",
                         f"String length specified does not match the supported length. Min:0 "
                         f"Max:{PAYMENT_REF_NUM_MAX} supplied length:{len(str(ref_num))}", element="PaymentRefNum")
        total = round(float(record["TotalAmt"]), 2)
        # What this payment took off each invoice before, and what it will take off now.
        before: dict[str, float] = {}
        for line in (current or {}).get("Line", []):
            for link in line.get("LinkedTxn", []):
                before[link["TxnId"]] = before.get(link["TxnId"], 0.0) + float(line["Amount"])
        after: dict[str, float] = {}
        lines = record.get("Line") or []
        for line in lines:
            amount = round(float(line.get("Amount") or 0), 2)
            for link in line.get("LinkedTxn") or []:
                if link.get("TxnType") != "Invoice":
                    raise _invalid_reference("Line.LinkedTxn.TxnType", link.get("TxnType"))
                invoice = self.objects["Invoice"].get(str(link.get("TxnId")))
                if invoice is None or invoice["CustomerRef"]["value"] != customer["Id"]:
                    raise _invalid_reference("Line.LinkedTxn.TxnId", link.get("TxnId"))
                after[invoice["Id"]] = round(after.get(invoice["Id"], 0.0) + amount, 2)
        applied = round(sum(after.values()), 2)
        if applied > total:
            raise _Fault(400, "6000", "A business validation error has occurred while processing your request",
                         f"Business Validation Error: the amounts applied ({applied}) exceed the payment total "
                         f"({total}).")
        for invoice_id, amount in after.items():
            invoice = self.objects["Invoice"][invoice_id]
            open_balance = float(invoice["Balance"]) + before.get(invoice_id, 0.0)
            if amount > round(open_balance, 2):
                raise _Fault(400, "6000", "A business validation error has occurred while processing your "
                             "request", f"Business Validation Error: {amount} is more than the {open_balance:.2f} "
                             f"still open on invoice {invoice['DocNumber']}.")
        record["TotalAmt"], record["UnappliedAmt"] = total, round(total - applied, 2)
        record.setdefault("TxnDate", _now().date().isoformat())
        record.setdefault("CurrencyRef", copy.deepcopy(customer.get("CurrencyRef", _currency("USD"))))
        old_customer = current["CustomerRef"]["value"] if current else None

        def commit(saved: dict[str, Any]) -> None:
            now = qbo_time(_now())
            for invoice_id in set(before) | set(after):
                invoice = self.objects["Invoice"][invoice_id]
                change = before.get(invoice_id, 0.0) - after.get(invoice_id, 0.0)
                invoice["Balance"] = round(float(invoice["Balance"]) + change, 2)
                links = [t for t in invoice.get("LinkedTxn", []) if t.get("TxnId") != saved["Id"]]
                if invoice_id in after:
                    links.append({"TxnId": saved["Id"], "TxnType": "Payment"})
                invoice["LinkedTxn"] = links
                invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
                invoice["MetaData"] = {**invoice["MetaData"], "LastUpdatedTime": now}
            self._recompute_balance(customer["Id"])
            if old_customer and old_customer != customer["Id"]:
                self._recompute_balance(old_customer)
        return commit

    def _prepare_purchase(self, record: dict[str, Any], current: dict[str, Any] | None, *,
                          allow_duplicate: bool) -> Callable[[dict[str, Any]], None]:
        """An expense paid from a bank or card account (`AccountRef`), spread over expense accounts
        (`AccountBasedExpenseLineDetail.AccountRef`); the total is the sum of the lines, as QBO computes it."""
        if record.get("PaymentType") not in ("Cash", "Check", "CreditCard"):
            raise _required("PaymentType")
        if not (record.get("AccountRef") or {}).get("value"):
            raise _required("AccountRef")
        lines_in = record.get("Line")
        if not isinstance(lines_in, list) or not lines_in:
            raise _required("Line")
        lines = []
        for number, line in enumerate(lines_in, start=1):
            if not isinstance(line, dict) or line.get("DetailType") != "AccountBasedExpenseLineDetail":
                raise _required("Line.DetailType")
            if line.get("Amount") in (None, ""):
                raise _required("Line.Amount")
            detail = line.get("AccountBasedExpenseLineDetail") or {}
            if not (detail.get("AccountRef") or {}).get("value"):
                raise _required("Line.AccountBasedExpenseLineDetail.AccountRef")
            lines.append({**line, "Id": str(number), "LineNum": number, "Amount": round(float(line["Amount"]), 2)})
        record["Line"] = lines
        record["TotalAmt"] = round(sum(line["Amount"] for line in lines), 2)
        record.setdefault("TxnDate", _now().date().isoformat())
        record.setdefault("CurrencyRef", _currency("USD"))
        return lambda saved: None

    def _prepare_journal_entry(self, record: dict[str, Any], current: dict[str, Any] | None, *,
                               allow_duplicate: bool) -> Callable[[dict[str, Any]], None]:
        """Debit and credit lines on accounts (`JournalEntryLineDetail.PostingType`, `.AccountRef`); the debits
        must equal the credits, and `TotalAmt` is their sum."""
        lines_in = record.get("Line")
        if not isinstance(lines_in, list) or not lines_in:
            raise _required("Line")
        lines, totals = [], {"Debit": 0.0, "Credit": 0.0}
        for number, line in enumerate(lines_in, start=1):
            if not isinstance(line, dict) or line.get("DetailType") != "JournalEntryLineDetail":
                raise _required("Line.DetailType")
            if line.get("Amount") in (None, ""):
                raise _required("Line.Amount")
            amount = round(float(line["Amount"]), 2)
            if amount < 0:
                raise _Fault(400, "6000", "A business validation error has occurred while processing your "
                             "request", f"Business Validation Error: line {number} has a negative amount ({amount}).")
            detail = line.get("JournalEntryLineDetail") or {}
            if detail.get("PostingType") not in totals:
                raise _required("Line.JournalEntryLineDetail.PostingType")
            if not (detail.get("AccountRef") or {}).get("value"):
                raise _required("Line.JournalEntryLineDetail.AccountRef")
            totals[detail["PostingType"]] += amount
            lines.append({**line, "Id": str(number - 1), "Amount": amount})
        if round(totals["Debit"], 2) != round(totals["Credit"], 2):
            raise _Fault(400, "6000", "A business validation error has occurred while processing your request",
                         f"Business Validation Error: the debits ({totals['Debit']:.2f}) and credits "
                         f"({totals['Credit']:.2f}) of a journal entry must be equal.")
        record["Line"] = lines
        record["TotalAmt"] = round(totals["Debit"], 2)
        record.setdefault("TxnDate", _now().date().isoformat())
        record.setdefault("CurrencyRef", _currency("USD"))
        return lambda saved: None

    # -- ground truth ----------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        entity = STREAM_ENTITY[stream]
        with self.sandbox.lock:
            rows = [copy.deepcopy(r) for r in self.objects[entity].values()]
        return sorted(rows, key=lambda r: int(r["Id"]))

    def touch(self, stream: str, count: int) -> list[str]:
        """Edit `count` records as a bookkeeper would: a note changes, SyncToken and LastUpdatedTime move."""
        entity = STREAM_ENTITY[stream]
        note = f"Reviewed {time.time_ns()}"
        touched = []
        with self.sandbox.lock:
            now = qbo_time(_now())
            for record in sorted(self.objects[entity].values(), key=lambda r: int(r["Id"]))[:count]:
                if entity == "Invoice":
                    record["CustomerMemo"] = {"value": note}
                elif entity == "Customer":
                    record["Notes"] = note
                else:
                    record["PrivateNote"] = note
                record["SyncToken"] = str(int(record["SyncToken"]) + 1)
                record["MetaData"] = {**record["MetaData"], "LastUpdatedTime": now}
                touched.append(record["Id"])
        return touched


EMULATOR = QuickBooksEmulator
