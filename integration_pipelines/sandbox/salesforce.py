"""Salesforce's REST API as simple-salesforce and the connector see it: the OAuth token endpoint (refresh-token
and client-credentials grants) naming the org's `instance_url`, SOQL queries over `/services/data/vXX.X/query`
with `nextRecordsUrl` cursors, sObject rows, upserts by external id, sObject Collections, and Salesforce's
error lists `[{"message", "errorCode", "fields"}]`.

The org holds Accounts (the world's companies), Contacts (its CRM people, with the planted anomalies: one email
in different case, one person entered twice), Opportunities (its deals) and Cases (support tickets derived from
the people with `world.rng("salesforce")`). A small SOQL engine answers what the API would: explicit field
lists, `WHERE` with AND/OR/NOT, comparisons, IN, LIKE, typed literals (unquoted datetimes), ORDER BY, LIMIT,
OFFSET, COUNT(); malformed SOQL, unknown objects and fields fail with Salesforce's codes and caret messages.

Child-to-parent relationship paths (`SELECT Id, Account.Name FROM Contact`, also in WHERE and ORDER BY) answer
nested parent records (`"Account": {"attributes": {...}, "Name": ...}`, or `"Account": null`); parent-to-child
subqueries are not supported. Records are deleted (`DELETE …/sobjects/<Object>/<id>` → 204) into the recycle bin:
`IsDeleted` true, gone from `query`, still in `queryAll`, and a retrieve or second delete is 404
`ENTITY_IS_DELETED`. `GET …/sobjects`, `…/sobjects/<Object>` and `…/sobjects/<Object>/describe` describe the schema.

Who may do what: every refresh token is a grant (`grants`), with the OAuth scopes the user consented to for the
connected app and the object permissions of the user it runs as (`PERMISSION_SETS`). The token answer's `scope`
says the grant's scopes; a session whose scopes lack `api` (and `full`) gets 401 `INVALID_SESSION_ID` "This session
is not valid for use with the REST API" on every REST call. A write the user's object permissions do not allow is
403 `[{"message": "insufficient access rights on object id", "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY"}]`
(inside an sObject Collection, that record's result carries it as `statusCode`; a collection none of whose records
the user may write is refused whole), and an object the user may not read is, to SOQL, an unknown object. Seeded:
the sandbox refresh token (scopes `refresh_token api`, every permission), `SANDBOX_READ_ONLY_REFRESH_TOKEN` (Read
only) and `SANDBOX_NO_API_REFRESH_TOKEN` (scopes `refresh_token id`); `connect(scope, permissions)` makes others.

Where the sandbox is kinder than Salesforce, on purpose: `Sforce-Query-Options: batchSize=N` is honoured for any
N from 1 (Salesforce uses at least 200), so tests can page through a small org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .base import Emulator, SandboxState
from .ids import token
from .world import Person, World

#: The connected app and integration user's (fake) credentials; the connector's sandbox mode sends the same strings.
SANDBOX_CLIENT_ID = "FAKE-sandbox-salesforce-consumer-key-3MVG9integrationpipelines"
SANDBOX_CLIENT_SECRET = "FAKE-sandbox-salesforce-consumer-secret-0000"
SANDBOX_REFRESH_TOKEN = "FAKE-sandbox-salesforce-refresh-token-5Aep861integrationpipelines"
#: The API version `dump` renders records in (their `attributes.url`).
API_VERSION = "62.0"
OAUTH_PREFIX = "/services/oauth2/"
API_USAGE_LIMIT = 100_000  # an Enterprise org's base daily allocation, shown in Sforce-Limit-Info
MAX_BATCH = 2000
MAX_COLLECTION = 200
OPEN_CURSORS = 10  # Salesforce keeps this many query cursors per user; older ones become invalid
MIN_VERSION, MAX_VERSION = 20, 66
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_NOT_FOUND = "The requested resource does not exist"


# -- ids and timestamps --------------------------------------------------------------------------------
def to18(id15: str) -> str:
    """Salesforce's case-safe 18-character id: three checksum characters encode the upper-case positions."""
    suffix = ""
    for chunk in range(3):
        flags = sum(1 << bit for bit in range(5) if id15[chunk * 5 + bit].isupper())
        suffix += _ID_SUFFIX[flags]
    return id15 + suffix


def sf_id(prefix: str, *salt: object) -> str:
    """A deterministic record id: key prefix (001 Account, 003 Contact ...), pod `Hs`, zeros, 5 unique chars."""
    return to18(f"{prefix}Hs00000{token(*salt, length=5)}")


def stamp(moment: datetime) -> str:
    """Salesforce's datetime wire form: milliseconds and a `+0000` offset."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_stamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _with_ms(moment: datetime, *salt: object) -> datetime:
    """The world keeps whole seconds; Salesforce stamps milliseconds. Add deterministic ones."""
    millis = int.from_bytes(token(*salt, length=4).encode(), "big") % 1000
    return moment.replace(microsecond=0) + timedelta(milliseconds=millis)


# -- the org's schema ----------------------------------------------------------------------------------
_TEXT = {"id", "reference", "string", "textarea", "email", "phone", "url", "picklist"}
_NUMBER = {"double", "currency", "percent", "int"}


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    writable: bool = True
    required: bool = False
    reference_to: str | None = None
    restricted: tuple[str, ...] = ()
    external_id: bool = False

    @property
    def soql_type(self) -> str:
        """The type word Salesforce uses in a filter-type error."""
        if self.type in _TEXT:
            return "string" if self.type not in {"id", "reference"} else "id"
        return {"datetime": "dateTime", "date": "date", "boolean": "boolean"}.get(self.type, "double")


def _fields(*defs: FieldDef) -> dict[str, FieldDef]:
    return {d.name: d for d in defs}


_AUDIT = (
    FieldDef("OwnerId", "reference", reference_to="User"),
    FieldDef("CreatedDate", "datetime", writable=False),
    FieldDef("LastModifiedDate", "datetime", writable=False),
    FieldDef("SystemModstamp", "datetime", writable=False),
    FieldDef("IsDeleted", "boolean", writable=False),
)

#: (probability, is_won, is_closed) per opportunity stage of a default org
STAGES: dict[str, tuple[int, bool, bool]] = {
    "Prospecting": (10, False, False), "Qualification": (10, False, False), "Needs Analysis": (20, False, False),
    "Value Proposition": (50, False, False), "Id. Decision Makers": (60, False, False),
    "Perception Analysis": (70, False, False), "Proposal/Price Quote": (75, False, False),
    "Negotiation/Review": (90, False, False), "Closed Won": (100, True, True), "Closed Lost": (0, False, True),
}
WORLD_STAGES = {"appointmentscheduled": "Prospecting", "qualifiedtobuy": "Qualification",
                "presentationscheduled": "Proposal/Price Quote", "closedwon": "Closed Won",
                "closedlost": "Closed Lost"}
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")

SCHEMA: dict[str, dict[str, FieldDef]] = {
    "Account": _fields(
        FieldDef("Id", "id", writable=False), FieldDef("Name", "string", required=True),
        FieldDef("Type", "picklist"), FieldDef("Industry", "picklist"), FieldDef("Website", "url"),
        FieldDef("Phone", "phone"), FieldDef("BillingStreet", "textarea"), FieldDef("BillingCity", "string"),
        FieldDef("BillingPostalCode", "string"), FieldDef("BillingCountry", "string"),
        FieldDef("NumberOfEmployees", "int"), FieldDef("Description", "textarea"),
        FieldDef("External_Id__c", "string", external_id=True), *_AUDIT,
    ),
    "Contact": _fields(
        FieldDef("Id", "id", writable=False), FieldDef("AccountId", "reference", reference_to="Account"),
        FieldDef("FirstName", "string"), FieldDef("LastName", "string", required=True),
        FieldDef("Name", "string", writable=False), FieldDef("Email", "email"), FieldDef("Phone", "phone"),
        FieldDef("Title", "string"), FieldDef("MailingStreet", "textarea"), FieldDef("MailingCity", "string"),
        FieldDef("MailingPostalCode", "string"), FieldDef("MailingCountry", "string"),
        FieldDef("LeadSource", "picklist"), FieldDef("Description", "textarea"),
        FieldDef("External_Id__c", "string", external_id=True), *_AUDIT,
    ),
    "Opportunity": _fields(
        FieldDef("Id", "id", writable=False), FieldDef("AccountId", "reference", reference_to="Account"),
        FieldDef("ContactId", "reference", reference_to="Contact"), FieldDef("Name", "string", required=True),
        FieldDef("StageName", "picklist", required=True, restricted=tuple(STAGES)),
        FieldDef("CloseDate", "date", required=True), FieldDef("Amount", "currency"),
        FieldDef("CurrencyIsoCode", "picklist", restricted=("USD", "GBP", "EUR")),
        FieldDef("Probability", "percent"), FieldDef("IsWon", "boolean", writable=False),
        FieldDef("IsClosed", "boolean", writable=False), FieldDef("Type", "picklist"),
        FieldDef("LeadSource", "picklist"), FieldDef("Description", "textarea"),
        FieldDef("External_Id__c", "string", external_id=True), *_AUDIT,
    ),
    "Case": _fields(
        FieldDef("Id", "id", writable=False), FieldDef("CaseNumber", "string", writable=False),
        FieldDef("AccountId", "reference", reference_to="Account"),
        FieldDef("ContactId", "reference", reference_to="Contact"), FieldDef("Subject", "string"),
        FieldDef("Description", "textarea"), FieldDef("Status", "picklist", restricted=CASE_STATUSES),
        FieldDef("Priority", "picklist"), FieldDef("Origin", "picklist"),
        FieldDef("IsClosed", "boolean", writable=False), FieldDef("ClosedDate", "datetime", writable=False),
        FieldDef("SuppliedEmail", "email"), *_AUDIT,
    ),
}
KEY_PREFIX = {"Account": "001", "Contact": "003", "Opportunity": "006", "Case": "500", "User": "005"}
STREAM_OBJECTS = {"accounts": "Account", "contacts": "Contact", "opportunities": "Opportunity", "cases": "Case"}
_OBJECT_BY_LOWER = {name.lower(): name for name in SCHEMA}

# -- who may do what: the connected app's OAuth scopes and the integration user's object permissions -------------
#: Refresh tokens of further connected-app grants (the emulator's own fake values; the connectors know none of
#: them): a read-only integration user (object permission Read only), and a connected app whose OAuth scopes lack
#: `api` (its sessions cannot call the REST API at all).
SANDBOX_READ_ONLY_REFRESH_TOKEN = "FAKE-sandbox-salesforce-read-only-refresh-token-0000"
SANDBOX_NO_API_REFRESH_TOKEN = "FAKE-sandbox-salesforce-no-api-scope-refresh-token-0000"
#: Object permissions (Setup → Permission Sets → Object Settings), per object: read, create, edit, delete.
ALL_OBJECT_PERMISSIONS = frozenset({"read", "create", "edit", "delete"})
PERMISSION_SETS: dict[str, dict[str, frozenset[str]]] = {
    "integration": {name: ALL_OBJECT_PERMISSIONS for name in SCHEMA},
    "read_only": {name: frozenset({"read"}) for name in SCHEMA},
}
DEFAULT_SCOPE = "refresh_token api"
#: A write the user's object permissions do not allow: Salesforce's error list, 403 for a single-record call (a
#: per-record `statusCode` inside an sObject Collection's results). Reports differ on 400 vs 403 (unconfirmed).
INSUFFICIENT_ACCESS = "INSUFFICIENT_ACCESS_OR_READONLY"
INSUFFICIENT_ACCESS_MESSAGE = "insufficient access rights on object id"
#: A session whose connected app was not granted the `api` (or `full`) OAuth scope, on any REST call: 401.
NOT_FOR_REST = "This session is not valid for use with the REST API"


@dataclass(frozen=True)
class Grant:
    """What one refresh token (and every session refreshed from it) may do: the OAuth scopes the user consented to
    for the connected app, and the object permissions of the user it runs as."""

    scope: str
    permissions: Mapping[str, frozenset[str]]

    @property
    def rest_api(self) -> bool:
        return bool({"api", "full"} & set(self.scope.split()))

    def may(self, sobject: str, action: str) -> bool:
        return action in self.permissions.get(sobject, frozenset())


#: The grant of the request being served (set once its session is known); None outside a request (test code).
_CURRENT_GRANT: ContextVar[Grant | None] = ContextVar("salesforce_grant", default=None)


def _field(sobject: str, name: str) -> FieldDef | None:
    fields = SCHEMA[sobject]
    return fields.get(name) or next((f for n, f in fields.items() if n.lower() == name.lower()), None)


def _relationship_name(reference: FieldDef) -> str:
    """A lookup's relationship name: `AccountId` → `Account`, custom `Partner__c` → `Partner__r`."""
    if reference.name.endswith("__c"):
        return reference.name[:-3] + "__r"
    return reference.name[:-2] if reference.name.endswith("Id") else reference.name


def _relationship(sobject: str, name: str) -> FieldDef | None:
    """The lookup field behind a relationship name on `sobject` (case-insensitive), if there is one."""
    return next((f for f in SCHEMA[sobject].values()
                 if f.type == "reference" and _relationship_name(f).lower() == name.lower()), None)


def _path_field(sobject: str, path: str) -> FieldDef:
    """The definition of the last field of a resolved path (`Account.Name` on Contact → Account's Name)."""
    *relationships, last = path.split(".")
    for rel in relationships:
        reference = _relationship(sobject, rel)
        assert reference is not None and reference.reference_to is not None
        sobject = reference.reference_to
    return SCHEMA[sobject][last]


# -- errors ------------------------------------------------------------------------------------------------
class SalesforceError(Exception):
    """An error Salesforce answers with its list body `[{"message", "errorCode", ("fields")}]`."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def item(self, key: str = "errorCode") -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, key: self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


def _caret(query: str, position: int, text: str) -> str:
    """Salesforce's parser message: the query, a caret under the offending column, row and column, reason."""
    return f"\n{query}\n{' ' * position}^\nERROR at Row:1:Column:{position + 1}\n{text}"


# -- SOQL --------------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<op><=|>=|!=|<>|=|<|>)
    |(?P<punct>[(),])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)""",
    re.X,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC", "NULLS",
             "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL"}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass
class Query:
    text: str
    sobject: str
    fields: list[str]
    count_only: bool = False
    where: Any = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)  # (field, descending, nulls_first)
    limit: int | None = None
    offset: int = 0


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)


class SoqlParser:
    """Recursive descent over the SOQL subset integrations use; every failure names its column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Tok] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise self._malformed(position, f"unexpected token: '{text[position]}'")
            if match.lastgroup != "ws":
                self.tokens.append(Tok(str(match.lastgroup), match.group(), position))
            position = match.end()
        self.tokens.append(Tok("eof", "<EOF>", len(text)))
        self.index = 0

    # -- token helpers ------------------------------------------------------------------------------------
    def _malformed(self, position: int, reason: str) -> SalesforceError:
        return SalesforceError(400, "MALFORMED_QUERY", _caret(self.text, position, reason))

    def peek(self) -> Tok:
        return self.tokens[self.index]

    def take(self) -> Tok:
        tok = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return tok

    def keyword(self, *words: str) -> bool:
        tok = self.peek()
        if tok.kind == "ident" and tok.upper in words:
            self.take()
            return True
        return False

    def expect_keyword(self, word: str) -> Tok:
        tok = self.peek()
        if tok.kind != "ident" or tok.upper != word:
            raise self._malformed(tok.pos, f"unexpected token: '{tok.text}'")
        return self.take()

    def expect_punct(self, char: str) -> Tok:
        tok = self.peek()
        if tok.text != char:
            raise self._malformed(tok.pos, f"unexpected token: '{tok.text}'")
        return self.take()

    def field_name(self) -> Tok:
        tok = self.peek()
        if tok.kind != "ident" or tok.upper in _KEYWORDS:
            raise self._malformed(tok.pos, f"unexpected token: '{tok.text}'")
        return self.take()

    # -- grammar -----------------------------------------------------------------------------------------
    def parse(self) -> tuple[Query, dict[str, Tok]]:
        """Return the query (field names as written) and where each name appeared, for error carets."""
        self.expect_keyword("SELECT")
        names: list[Tok] = []
        count_only = False
        if self.peek().upper == "COUNT" and self.tokens[self.index + 1].text == "(":
            self.take()
            self.expect_punct("(")
            self.expect_punct(")")
            count_only = True
        else:
            names.append(self.field_name())
            while self.peek().text == ",":
                self.take()
                names.append(self.field_name())
        self.expect_keyword("FROM")
        sobject = self.field_name()
        query = Query(self.text, sobject.text, [t.text for t in names], count_only)
        positions = {t.text: t for t in names}
        positions[":object"] = sobject
        if self.keyword("WHERE"):
            query.where = self.condition(positions)
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                name = self.field_name()
                positions.setdefault(name.text, name)
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                nulls_first = not descending
                if self.keyword("NULLS"):
                    if self.keyword("FIRST"):
                        nulls_first = True
                    else:
                        self.expect_keyword("LAST")
                        nulls_first = False
                query.order.append((name.text, descending, nulls_first))
                if self.peek().text != ",":
                    break
                self.take()
        if self.keyword("LIMIT"):
            query.limit = self.integer()
        if self.keyword("OFFSET"):
            query.offset = self.integer()
            if query.offset > 2000:
                raise SalesforceError(400, "NUMBER_OUTSIDE_VALID_RANGE",
                                      f"Maximum SOQL offset allowed is 2000, got {query.offset}")
        tail = self.peek()
        if tail.kind != "eof":
            raise self._malformed(tail.pos, f"unexpected token: '{tail.text}'")
        return query, positions

    def integer(self) -> int:
        tok = self.peek()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self._malformed(tok.pos, f"unexpected token: '{tok.text}'")
        self.take()
        return int(tok.text)

    def condition(self, positions: dict[str, Tok]) -> Any:
        terms = [self.conjunction(positions)]
        while self.keyword("OR"):
            terms.append(self.conjunction(positions))
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction(self, positions: dict[str, Tok]) -> Any:
        terms = [self.negation(positions)]
        while self.keyword("AND"):
            terms.append(self.negation(positions))
        return terms[0] if len(terms) == 1 else ("and", terms)

    def negation(self, positions: dict[str, Tok]) -> Any:
        if self.keyword("NOT"):
            return ("not", self.negation(positions))
        if self.peek().text == "(":
            self.take()
            inner = self.condition(positions)
            self.expect_punct(")")
            return inner
        name = self.field_name()
        positions.setdefault(name.text, name)
        if self.keyword("LIKE"):
            return ("like", name.text, self.literal())
        negate = False
        if self.peek().upper == "NOT" and self.tokens[self.index + 1].upper == "IN":
            self.take()
            negate = True
        if self.keyword("IN"):
            self.expect_punct("(")
            values = [self.literal()]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect_punct(")")
            return ("in", name.text, values, negate)
        op = self.peek()
        if op.kind != "op":
            raise self._malformed(op.pos, f"unexpected token: '{op.text}'")
        self.take()
        return ("cmp", name.text, "!=" if op.text == "<>" else op.text, self.literal())

    def literal(self) -> Tok:
        tok = self.peek()
        if tok.kind in {"string", "datetime", "date", "number"} or tok.upper in {"TRUE", "FALSE", "NULL"}:
            return self.take()
        raise self._malformed(tok.pos, f"unexpected token: '{tok.text}'")


def _literal_value(tok: Tok) -> Any:
    if tok.kind == "string":
        return _unescape(tok.text)
    if tok.kind == "datetime":
        return parse_stamp(tok.text)
    if tok.kind == "date":
        return date.fromisoformat(tok.text)
    if tok.kind == "number":
        return float(tok.text)
    return {"TRUE": True, "FALSE": False, "NULL": None}[tok.upper]


def _check_literal(definition: FieldDef, tok: Tok) -> None:
    """Salesforce types filter values: datetimes unquoted, strings quoted, numbers bare."""
    if tok.upper == "NULL":
        return
    wanted = {"string": "string", "id": "string", "dateTime": "datetime", "date": "date",
              "boolean": "bool", "double": "number"}[definition.soql_type]
    actual = {"string": "string", "datetime": "datetime", "date": "date", "number": "number"}.get(tok.kind, "bool")
    if wanted != actual:
        quoted = "be enclosed in quotes" if wanted == "string" else "not be enclosed in quotes"
        raise SalesforceError(400, "INVALID_FIELD", f"value of filter criterion for field '{definition.name}' must "
                              f"be of type {definition.soql_type} and should {quoted}")


def _comparable(definition: FieldDef, value: Any) -> Any:
    if value is None:
        return None
    if definition.type == "datetime":
        return parse_stamp(value) if isinstance(value, str) else value
    if definition.type == "date":
        return date.fromisoformat(value) if isinstance(value, str) else value
    if definition.type in _NUMBER:
        return float(value)
    if isinstance(value, str):
        return value.lower()  # SOQL text comparisons ignore case
    return value


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


# -- the emulator ------------------------------------------------------------------------------------------
class _ByPath(Response):
    """A fault answer shaped by where it lands: the login service answers OAuth errors, the API error lists."""

    def __init__(self, api: Response, oauth: Response) -> None:
        super().__init__(status_code=api.status_code)
        self.api, self.oauth = api, oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.oauth if scope.get("path", "").startswith(OAUTH_PREFIX) else self.api
        await chosen(scope, receive, send)


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    batch_size: int
    endpoint: str


def _access_error(sobject: str, action: str) -> SalesforceError | None:
    """Salesforce's refusal when the current request's user lacks `action` (read, create, edit, delete) on
    `sobject`; None when allowed, or outside a request."""
    grant = _CURRENT_GRANT.get()
    if grant is None or grant.may(sobject, action):
        return None
    return SalesforceError(403, INSUFFICIENT_ACCESS, INSUFFICIENT_ACCESS_MESSAGE, [])


class SalesforceEmulator(Emulator):
    name = "salesforce"
    prefixes = ("/services/",)
    streams = tuple(STREAM_OBJECTS)

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.client_id = SANDBOX_CLIENT_ID
        self.client_secret = SANDBOX_CLIENT_SECRET
        integration = PERMISSION_SETS["integration"]
        #: refresh token → its grant (OAuth scopes, object permissions)
        self.grants: dict[str, Grant] = {
            SANDBOX_REFRESH_TOKEN: Grant(DEFAULT_SCOPE, integration),
            SANDBOX_READ_ONLY_REFRESH_TOKEN: Grant(DEFAULT_SCOPE, PERMISSION_SETS["read_only"]),
            SANDBOX_NO_API_REFRESH_TOKEN: Grant("refresh_token id", integration),
        }
        self.refresh_tokens = set(self.grants)
        #: session (access token) → the grant it was issued under
        self.session_grants: dict[str, Grant] = {}
        self.org_id = sf_id("00D", world.seed, "org")
        self.user_id = sf_id("005", world.seed, "integration-user")
        self.sessions: set[str] = set()
        self.tokens_issued = 0
        self._sessions_left: int | None = None
        self.api_usage = 0
        self.hidden_fields: set[tuple[str, str]] = set()
        self.anomaly_ids: dict[str, list[str]] = {}
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.RLock()
        self._serial = 0
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)
        self._case_number = 1000
        rng = world.rng("salesforce")
        account_ids = self._seed_accounts(world, rng)
        contact_ids = self._seed_contacts(world, rng, account_ids)
        self._seed_opportunities(world, rng, account_ids, contact_ids)
        self._seed_cases(world, rng, account_ids, contact_ids)

    # -- seeding --------------------------------------------------------------------------------------------
    def _blank(self, sobject: str, record_id: str) -> dict[str, Any]:
        record: dict[str, Any] = dict.fromkeys(SCHEMA[sobject])
        record.update(Id=record_id, IsDeleted=False, OwnerId=self.user_id)
        return record

    def _put(self, sobject: str, record: dict[str, Any], created: datetime, modified: datetime) -> None:
        record.update(CreatedDate=stamp(created), LastModifiedDate=stamp(modified), SystemModstamp=stamp(modified))
        self._derive(sobject, record)
        self.records[sobject][record["Id"]] = record

    def _seed_accounts(self, world: World, rng: Any) -> dict[int, str]:
        industries = ["Manufacturing", "Technology", "Retail", "Consulting", "Energy", "Finance"]
        ids: dict[int, str] = {}
        for company in world.companies:
            members = [p for p in world.people if p.company.key == company.key]
            first = members[0] if members else None
            account_id = sf_id("001", world.seed, "account", company.key)
            ids[company.key] = account_id
            record = self._blank("Account", account_id)
            record.update(
                Name=company.name, Type="Customer - Direct", Industry=rng.choice(industries),
                Website=f"https://www.{company.domain}", Phone=first.phone if first else None,
                BillingStreet=first.street if first else None, BillingCity=first.city if first else None,
                BillingPostalCode=first.postal_code if first else None,
                BillingCountry=first.country if first else None, NumberOfEmployees=rng.randint(5, 5000),
            )
            created = _with_ms(world.start - timedelta(days=rng.randint(30, 400), seconds=rng.randrange(86400)),
                               "account-created", company.key)
            modified = _with_ms(world.start + timedelta(seconds=rng.randrange(int(world.days * 86400))),
                                "account-modified", company.key)
            self._put("Account", record, created, modified)
        return ids

    def _contact(self, person: Person, contact_id: str, account_id: str | None, email: str) -> dict[str, Any]:
        record = self._blank("Contact", contact_id)
        record.update(
            AccountId=account_id, FirstName=person.first_name, LastName=person.last_name, Email=email,
            Phone=person.phone, MailingStreet=person.street, MailingCity=person.city,
            MailingPostalCode=person.postal_code, MailingCountry=person.country,
        )
        return record

    def _seed_contacts(self, world: World, rng: Any, account_ids: dict[int, str]) -> dict[int, str]:
        case_key = world.anomalies.get("crm_email_case_differs")
        duplicate_key = world.anomalies.get("crm_duplicate_contact")
        titles = ["Purchasing Manager", "CFO", "Operations Lead", "Office Manager", "CTO", None]
        ids: dict[int, str] = {}
        for person in world.people:
            if not person.in_crm:
                continue
            contact_id = sf_id("003", world.seed, "contact", person.key)
            ids[person.key] = contact_id
            email = person.email
            if person.key == case_key:  # typed by hand into the CRM: Ada.Lovelace0@Acme0.example.com
                local, domain = email.split("@")
                email = ".".join(p.capitalize() for p in local.split(".")) + "@" + domain.capitalize()
                self.anomaly_ids["crm_email_case_differs"] = [contact_id]
            record = self._contact(person, contact_id, account_ids[person.company.key], email)
            record.update(Title=rng.choice(titles), LeadSource=rng.choice(["Web", "Partner Referral", "Trade Show"]))
            created = _with_ms(person.created_at, "contact-created", person.key)
            modified = max(created, _with_ms(person.updated_at, "contact-modified", person.key))
            self._put("Contact", record, created, modified)
            if person.key == duplicate_key:
                # entered again from a web form with a personal address: same name and phone, no account
                dup_id = sf_id("003", world.seed, "contact-duplicate", person.key)
                personal = f"{person.first_name}.{person.last_name.replace('-', '')}".lower() + "@personal.example.net"
                duplicate = self._contact(person, dup_id, None, personal)
                duplicate.update(MailingStreet=None, MailingPostalCode=None, LeadSource="Web")
                dup_created = min(created + timedelta(days=1, hours=3), world.anchor - timedelta(minutes=5))
                dup_modified = min(dup_created + timedelta(hours=2), world.anchor - timedelta(seconds=1))
                self._put("Contact", duplicate, _with_ms(dup_created, "dup-created", person.key),
                          _with_ms(dup_modified, "dup-modified", person.key))
                self.anomaly_ids["crm_duplicate_contact"] = [contact_id, dup_id]
        return ids

    def _seed_opportunities(self, world: World, rng: Any, account_ids: dict[int, str],
                            contact_ids: dict[int, str]) -> None:
        for deal in world.deals:
            opportunity_id = sf_id("006", world.seed, "opportunity", deal.key)
            record = self._blank("Opportunity", opportunity_id)
            record.update(
                AccountId=account_ids[deal.person.company.key], ContactId=contact_ids.get(deal.person.key),
                Name=deal.name, StageName=WORLD_STAGES[deal.stage], CloseDate=deal.close_date.date().isoformat(),
                Amount=deal.amount / 100, CurrencyIsoCode=deal.currency,
                Type="Existing Customer - Upgrade" if "expansion" in deal.name else "New Customer",
                LeadSource=rng.choice(["Web", "Partner Referral", "Phone Inquiry"]),
            )
            created = _with_ms(deal.created_at, "opportunity-created", deal.key)
            self._put("Opportunity", record, created,
                      max(created, _with_ms(deal.updated_at, "opportunity-modified", deal.key)))

    def _seed_cases(self, world: World, rng: Any, account_ids: dict[int, str], contact_ids: dict[int, str]) -> None:
        invoices_by_person: dict[int, list[str]] = {}
        for invoice in world.invoices:
            invoices_by_person.setdefault(invoice.person.key, []).append(invoice.number)
        for person in world.people:
            if person.key not in contact_ids:
                continue
            for n in range(rng.choice([0, 0, 1, 1, 2])):
                product = rng.choice(world.products)
                numbers = invoices_by_person.get(person.key)
                subject = rng.choice([
                    f"{product.name} arrived damaged", f"How do I set up the {product.name.lower()}?",
                    f"Question about invoice {numbers[0]}" if numbers else f"Quote request: {product.name}",
                ])
                case_id = sf_id("500", world.seed, "case", person.key, n)
                record = self._blank("Case", case_id)
                status = rng.choice(CASE_STATUSES)
                record.update(
                    CaseNumber=self._next_case_number(), AccountId=account_ids[person.company.key],
                    ContactId=contact_ids[person.key], Subject=subject, Status=status,
                    Description=f"Customer wrote in about {product.sku}.",
                    Priority=rng.choice(["High", "Medium", "Low"]), Origin=rng.choice(["Email", "Phone", "Web"]),
                    SuppliedEmail=person.email,
                )
                created = _with_ms(person.created_at + (world.anchor - person.created_at) * rng.random(),
                                   "case-created", person.key, n)
                modified = _with_ms(created + (world.anchor - created) * rng.random(), "case-modified", person.key, n)
                self._put("Case", record, created, max(created, modified))

    def _next_case_number(self) -> str:
        self._case_number += 1
        return f"{self._case_number:08d}"

    @staticmethod
    def _derive(sobject: str, record: dict[str, Any]) -> None:
        """Formula-like fields Salesforce maintains itself."""
        if sobject == "Contact":
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        elif sobject == "Opportunity" and record.get("StageName") in STAGES:
            probability, won, closed = STAGES[record["StageName"]]
            record.update(IsWon=won, IsClosed=closed)
            if record.get("Probability") is None:
                record["Probability"] = probability
        elif sobject == "Case":
            record["Status"] = record.get("Status") or "New"
            record["IsClosed"] = record["Status"] == "Closed"
            if record["IsClosed"] and record.get("ClosedDate") is None:
                record["ClosedDate"] = record.get("LastModifiedDate")
            elif not record["IsClosed"]:
                record["ClosedDate"] = None

    def _now(self) -> datetime:
        """Now, strictly after every stamp handed out before (two edits never share a SystemModstamp)."""
        with self._lock:
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if now <= self._last_stamp:
                now = self._last_stamp + timedelta(milliseconds=1)
            self._last_stamp = now
            return now

    # -- protocol hooks -------------------------------------------------------------------------------------
    def error_response(self, status: int, message: str) -> Response:
        code = {500: "UNKNOWN_EXCEPTION", 503: "SERVER_UNAVAILABLE"}.get(status, "UNKNOWN_EXCEPTION")
        api = JSONResponse([{"message": message, "errorCode": code}], status_code=status)
        oauth = JSONResponse({"error": "server_error", "error_description": message}, status_code=status)
        return _ByPath(api, oauth)

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """Salesforce's list body for a resource it does not have (404 NOT_FOUND) and for a method a resource does
        not take (405 METHOD_NOT_ALLOWED, naming the methods it does)."""
        if status == 405:
            methods = ",".join(m for m in ("HEAD", "GET", "POST", "PATCH", "PUT", "DELETE") if m in allowed)
            return self._error(SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not "
                                               f"allowed. Allowed are {methods}"), {"Allow": methods})
        return self._error(SalesforceError(404, "NOT_FOUND", _NOT_FOUND))

    def rate_limit_response(self, retry_after: float) -> Response:
        """The spent API allocation: 403 REQUEST_LIMIT_EXCEEDED, no Retry-After (Salesforce sends none).

        The login service is not metered by the API allocation; there the same fault is an overloaded 503.
        """
        api = JSONResponse([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                           status_code=403, headers={"Sforce-Limit-Info": self._limit_info()})
        oauth = JSONResponse({"error": "server_error", "error_description": "Service temporarily unavailable"},
                             status_code=503)
        return _ByPath(api, oauth)

    def _limit_info(self) -> str:
        return f"api-usage={self.api_usage}/{API_USAGE_LIMIT}"

    @staticmethod
    def _error(exc: SalesforceError, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse([exc.item()], status_code=exc.status, headers=headers)

    # -- test controls ----------------------------------------------------------------------------------------
    def expire_sessions(self, after_requests: int = 0) -> None:
        """End every session now, or after `after_requests` more API calls (an admin's "revoke", a timeout)."""
        with self._lock:
            if after_requests <= 0:
                self.sessions.clear()
                self._sessions_left = None
            else:
                self._sessions_left = after_requests

    def revoke_refresh_tokens(self) -> None:
        """The user's connected-app access was revoked: refresh tokens and sessions stop working."""
        with self._lock:
            self.refresh_tokens.clear()
            self.sessions.clear()

    def hide_field(self, sobject: str, field_name: str) -> None:
        """Field-level security takes a field away from the integration user: SOQL naming it fails."""
        self.hidden_fields.add((sobject, field_name))

    def connect(self, scope: str = DEFAULT_SCOPE,
                permissions: str | Mapping[str, frozenset[str] | set[str]] = "integration") -> str:
        """A user authorizes the connected app with these OAuth scopes, running as a user with these object
        permissions (a name in PERMISSION_SETS, or object → {read, create, edit, delete}); returns the grant's
        refresh token."""
        chosen = PERMISSION_SETS[permissions] if isinstance(permissions, str) else {
            _OBJECT_BY_LOWER.get(k.lower(), k): frozenset(v) for k, v in permissions.items()}
        with self._lock:
            refresh = f"FAKE-sandbox-salesforce-refresh-{token(self.world.seed, 'grant', len(self.grants), length=24)}"
            self.grants[refresh] = Grant(" ".join(scope.split()), chosen)
            self.refresh_tokens.add(refresh)
        return refresh

    @staticmethod
    def _require(sobject: str, action: str) -> None:
        """Raise Salesforce's refusal when the request's user lacks `action` on `sobject` (no check outside a
        request)."""
        error = _access_error(sobject, action)
        if error is not None:
            raise error

    # -- routes -------------------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        data = "/services/data/v{version}"
        return [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            Route("/services/data", self._versions, methods=["GET"]),
            Route("/services/data/", self._versions, methods=["GET"]),
            Route(f"{data}/query", self._api(self._query), methods=["GET"]),
            Route(f"{data}/query/", self._api(self._query), methods=["GET"]),
            Route(f"{data}/queryAll", self._api(self._query), methods=["GET"]),
            Route(f"{data}/queryAll/", self._api(self._query), methods=["GET"]),
            Route(f"{data}/query/{{locator}}", self._api(self._query_more), methods=["GET"]),
            Route(f"{data}/queryAll/{{locator}}", self._api(self._query_more), methods=["GET"]),
            Route(f"{data}/sobjects", self._api(self._describe_global), methods=["GET"]),
            Route(f"{data}/sobjects/", self._api(self._describe_global), methods=["GET"]),
            Route(f"{data}/sobjects/{{sobject}}", self._api(self._create), methods=["GET", "POST"]),
            Route(f"{data}/sobjects/{{sobject}}/", self._api(self._create), methods=["GET", "POST"]),
            Route(f"{data}/sobjects/{{sobject}}/describe", self._api(self._describe), methods=["GET"]),
            Route(f"{data}/sobjects/{{sobject}}/describe/", self._api(self._describe), methods=["GET"]),
            Route(f"{data}/sobjects/{{sobject}}/{{record_id}}", self._api(self._by_id),
                  methods=["GET", "PATCH", "DELETE"]),
            Route(f"{data}/sobjects/{{sobject}}/{{ext_field}}/{{ext_value}}", self._api(self._by_external_id),
                  methods=["GET", "PATCH", "DELETE"]),
            Route(f"{data}/composite/sobjects", self._api(self._collection_create), methods=["POST"]),
            Route(f"{data}/composite/sobjects/{{sobject}}/{{ext_field}}", self._api(self._collection_upsert),
                  methods=["PATCH"]),
        ]

    async def _versions(self, request: Request) -> Response:
        return JSONResponse([{"label": f"v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                             for v in range(MIN_VERSION, MAX_VERSION + 1)])

    def _api(self, handler: Callable[[Request, str], Any]) -> Callable[[Request], Any]:
        """Every data call: a known API version, a live session, usage counted and reported."""

        async def endpoint(request: Request) -> Response:
            version = request.path_params["version"]
            match = re.fullmatch(r"(\d+)\.0", version)
            if match is None or not MIN_VERSION <= int(match.group(1)) <= MAX_VERSION:
                return self._error(SalesforceError(404, "NOT_FOUND", _NOT_FOUND))
            denied = self._authorize(request)
            if denied is not None:
                return denied
            with self._lock:
                self.api_usage += 1
            try:
                response = await handler(request, version)
            except SalesforceError as exc:
                response = self._error(exc)
            response.headers["Sforce-Limit-Info"] = self._limit_info()
            return response

        return endpoint

    def _authorize(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        with self._lock:
            if self._sessions_left is not None:
                self._sessions_left -= 1
                if self._sessions_left < 0:
                    self.sessions.clear()
                    self._sessions_left = None
            valid = scheme.lower() in {"bearer", "oauth"} and credential.strip() in self.sessions
            grant = self.session_grants.get(credential.strip()) if valid else None
        if not valid:
            return self._error(SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid"))
        if grant is not None and not grant.rest_api:
            return self._error(SalesforceError(401, "INVALID_SESSION_ID", NOT_FOR_REST))
        _CURRENT_GRANT.set(grant)
        return None

    # -- OAuth ------------------------------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._oauth_error("invalid_client", "invalid client credentials")
        grant = form.get("grant_type")
        if grant not in {"refresh_token", "client_credentials"}:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        if client_id != self.client_id:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if not client_secret or not hmac.compare_digest(client_secret, self.client_secret):
            return self._oauth_error("invalid_client", "invalid client credentials")
        if grant == "refresh_token" and form.get("refresh_token") not in self.refresh_tokens:
            return self._oauth_error("invalid_grant", "expired access/refresh token")
        with self._lock:
            # client credentials run as the app's configured run-as user: the integration user
            granted = self.grants.get(form.get("refresh_token", "")) if grant == "refresh_token" else None
            granted = granted or Grant(DEFAULT_SCOPE, PERMISSION_SETS["integration"])
            self.tokens_issued += 1
            access = f"{self.org_id[:15]}!AQ{token(self.world.seed, 'session', self.tokens_issued, length=40)}"
            self.sessions.add(access)
            self.session_grants[access] = granted
        instance = str(request.base_url).rstrip("/")
        identity = f"{instance}/id/{self.org_id}/{self.user_id}"
        issued_at = str(int(self.now() * 1000))
        signature = base64.b64encode(
            hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return JSONResponse({"access_token": access, "signature": signature, "scope": granted.scope,
                             "instance_url": instance, "id": identity, "token_type": "Bearer",
                             "issued_at": issued_at})

    @staticmethod
    def _oauth_error(error: str, description: str) -> Response:
        return JSONResponse({"error": error, "error_description": description}, status_code=400)

    # -- queries -------------------------------------------------------------------------------------------------
    async def _query(self, request: Request, version: str) -> Response:
        text = request.query_params.get("q")
        if text is None:
            raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query = self._compile(text)
        rows = self._run(query, include_deleted="/queryAll" in request.url.path)
        if query.count_only:
            return JSONResponse({"totalSize": len(rows), "done": True, "records": []})
        projected = [self._shape(query.sobject, record, version, query.fields) for record in rows]
        endpoint = "queryAll" if "/queryAll" in request.url.path else "query"
        return self._batch(_Cursor(projected, self._batch_size(request), endpoint), 0, version, None)

    async def _query_more(self, request: Request, version: str) -> Response:
        locator = request.path_params["locator"]
        cursor_id, _, offset = locator.rpartition("-")
        with self._lock:
            cursor = self._cursors.get(cursor_id)
        if cursor is None or not offset.isdigit() or int(offset) >= len(cursor.rows):
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._batch(cursor, int(offset), version, cursor_id)

    def _batch(self, cursor: _Cursor, offset: int, version: str, cursor_id: str | None) -> Response:
        end = offset + cursor.batch_size
        body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if not body["done"]:
            with self._lock:
                if cursor_id is None:
                    self._serial += 1
                    cursor_id = sf_id("01g", self.world.seed, "cursor", self._serial)
                    self._cursors[cursor_id] = cursor
                    while len(self._cursors) > OPEN_CURSORS:
                        self._cursors.popitem(last=False)
            body["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{cursor_id}-{end}"
        body["records"] = cursor.rows[offset:end]
        return JSONResponse(body)

    @staticmethod
    def _batch_size(request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        if match is None:
            return MAX_BATCH
        return max(1, min(MAX_BATCH, int(match.group(1))))

    def _compile(self, text: str) -> Query:
        """Parse, then resolve the object and every field against the schema, as Salesforce's compiler does."""
        query, positions = SoqlParser(text).parse()
        sobject = _OBJECT_BY_LOWER.get(query.sobject.lower())
        if sobject is not None and _access_error(sobject, "read") is not None:
            sobject = None  # an object the user may not read does not exist for them
        if sobject is None:
            raise SalesforceError(400, "INVALID_TYPE", _caret(
                text, positions[":object"].pos,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                "call for the appropriate names."))

        def resolve(name: str) -> str:
            """The field path in the schema's spelling (`account.name` → `Account.Name`), through parents."""
            *relationships, last = name.split(".")
            current, canonical = sobject, []
            for rel in relationships:
                reference = _relationship(current, rel)
                if reference is None or reference.reference_to not in SCHEMA:
                    reason = (f"Didn't understand relationship '{rel}' in field path. If you are attempting to use "
                              "a custom relationship, be sure to append the '__r' after the custom relationship "
                              "name. Please reference your WSDL or the describe call for the appropriate names.")
                    raise SalesforceError(400, "INVALID_FIELD", _caret(text, positions[name].pos, reason))
                canonical.append(_relationship_name(reference))
                current = str(reference.reference_to)
            definition = _field(current, last)
            if definition is None or (current, definition.name) in self.hidden_fields:
                reason = (f"No such column '{last}' on entity '{current}'. If you are attempting to use a "
                          "custom field, be sure to append the '__c' after the custom field name. Please "
                          "reference your WSDL or the describe call for the appropriate names.")
                raise SalesforceError(400, "INVALID_FIELD", _caret(text, positions[name].pos, reason))
            return ".".join([*canonical, definition.name])

        query.sobject = sobject
        query.fields = [resolve(name) for name in query.fields]
        duplicates = sorted({f for f in query.fields if query.fields.count(f) > 1})
        if duplicates:
            raise SalesforceError(400, "MALFORMED_QUERY", f"duplicate field selected: {duplicates[0]}")
        query.order = [(resolve(name), desc, nulls) for name, desc, nulls in query.order]
        query.where = self._resolve_condition(sobject, query.where, resolve)
        return query

    def _resolve_condition(self, sobject: str, node: Any, resolve: Callable[[str], str]) -> Any:
        if node is None:
            return None
        kind = node[0]
        if kind in {"and", "or"}:
            return (kind, [self._resolve_condition(sobject, n, resolve) for n in node[1]])
        if kind == "not":
            return ("not", self._resolve_condition(sobject, node[1], resolve))
        path = resolve(node[1])
        definition = _path_field(sobject, path)
        if kind == "like":
            if definition.soql_type != "string" or node[2].kind != "string":
                raise SalesforceError(400, "INVALID_FIELD", f"invalid operator on {definition.type} field: LIKE")
            return ("like", definition, _like(_unescape(node[2].text)), path)
        if kind == "in":
            for tok in node[2]:
                _check_literal(definition, tok)
            return ("in", definition, [_comparable(definition, _literal_value(t)) for t in node[2]], node[3], path)
        _check_literal(definition, node[3])
        return ("cmp", definition, node[2], _comparable(definition, _literal_value(node[3])), path)

    def _value(self, sobject: str, record: dict[str, Any], path: str) -> Any:
        """A field's value, following parent relationships (`Account.Name`); null when a parent is missing."""
        *relationships, last = path.split(".")
        current, row = sobject, record
        for rel in relationships:
            reference = _relationship(current, rel)
            parent = self._live(str(reference.reference_to), row.get(reference.name)) if reference else None
            if parent is None:
                return None
            current, row = str(reference.reference_to), parent  # type: ignore[union-attr]
        return row.get(last)

    def _live(self, sobject: str, record_id: Any) -> dict[str, Any] | None:
        """The record with this id unless it is missing or in the recycle bin."""
        if not isinstance(record_id, str) or sobject not in self.records:
            return None
        record = self._find(sobject, record_id)
        return None if record is None or record["IsDeleted"] else record

    def _matches(self, sobject: str, record: dict[str, Any], node: Any) -> bool:
        if node is None:
            return True
        kind = node[0]
        if kind == "and":
            return all(self._matches(sobject, record, n) for n in node[1])
        if kind == "or":
            return any(self._matches(sobject, record, n) for n in node[1])
        if kind == "not":
            return not self._matches(sobject, record, node[1])
        definition: FieldDef = node[1]
        raw = self._value(sobject, record, node[-1])
        value = _comparable(definition, raw)
        if kind == "like":
            return value is not None and node[2].fullmatch(str(raw)) is not None
        if kind == "in":
            return (value in node[2]) != node[3]
        op, bound = node[2], node[3]
        if op == "=":
            return value == bound
        if op == "!=":
            return value != bound
        if value is None or bound is None:
            return False
        return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]

    def _run(self, query: Query, include_deleted: bool = False) -> list[dict[str, Any]]:
        sobject = query.sobject
        with self._lock:
            rows = [r for r in self.records[sobject].values()
                    if (include_deleted or not r["IsDeleted"]) and self._matches(sobject, r, query.where)]
        rows.sort(key=lambda r: r["Id"])  # SOQL promises no order without ORDER BY; ids make it stable
        for name, descending, nulls_first in reversed(query.order):
            definition = _path_field(sobject, name)
            present = [r for r in rows if self._value(sobject, r, name) is not None]
            missing = [r for r in rows if self._value(sobject, r, name) is None]
            present.sort(key=lambda r, d=definition, n=name: _comparable(d, self._value(sobject, r, n)),
                         reverse=descending)
            rows = missing + present if nulls_first else present + missing
        rows = rows[query.offset:]
        return rows[: query.limit] if query.limit is not None else rows

    def _shape(self, sobject: str, record: dict[str, Any], version: str, fields: list[str] | None = None) -> dict:
        """A record as the API returns it: `attributes` first, then the selected fields in query order; a parent
        path (`Account.Name`) becomes the nested parent record (its own `attributes`), or null without one."""
        shaped: dict[str, Any] = {
            "attributes": {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"}
        }
        groups: dict[str, list[str] | None] = {}
        for name in fields or list(SCHEMA[sobject]):
            head, dot, rest = name.partition(".")
            if not dot:
                groups[head] = None
            else:
                groups.setdefault(head, []).append(rest)  # type: ignore[union-attr]
        for head, inner in groups.items():
            if inner is None:
                shaped[head] = record.get(head)
                continue
            reference = _relationship(sobject, head)
            assert reference is not None and reference.reference_to is not None
            parent = self._live(reference.reference_to, record.get(reference.name))
            shaped[head] = None if parent is None else self._shape(reference.reference_to, parent, version, inner)
        return shaped

    # -- sObject rows --------------------------------------------------------------------------------------------
    @staticmethod
    def _sobject(request: Request) -> str:
        sobject = _OBJECT_BY_LOWER.get(request.path_params["sobject"].lower())
        if sobject is None:
            raise SalesforceError(404, "NOT_FOUND", _NOT_FOUND)
        return sobject

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character at [line:1, column:{exc}]") \
                from exc

    async def _body(self, request: Request) -> dict[str, Any]:
        body = await self._json(request)
        if not isinstance(body, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR",
                                  "Cannot deserialize instance of sObject from a value that is not an object")
        return body

    async def _by_id(self, request: Request, version: str) -> Response:
        sobject = self._sobject(request)
        record = self._find(sobject, request.path_params["record_id"])
        if record is None:
            raise SalesforceError(404, "NOT_FOUND", _NOT_FOUND)
        if record["IsDeleted"]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        self._require(sobject, {"GET": "read", "DELETE": "delete"}.get(request.method, "edit"))
        if request.method == "GET":
            return JSONResponse(self._shape(sobject, record, version, self._fields_param(sobject, request)))
        if request.method == "DELETE":
            self.delete(sobject, record["Id"])
            return Response(status_code=204)
        values = await self._body(request)
        with self._lock:
            self._raise_first(self._validate(sobject, values, creating=False, record=record))
            self._apply(sobject, record, values)
        return Response(status_code=204)

    @staticmethod
    def _fields_param(sobject: str, request: Request) -> list[str] | None:
        """`GET …/sobjects/<Object>/<id>?fields=A,B`: only those fields (each must exist on the object)."""
        given = request.query_params.get("fields")
        if not given:
            return None
        names = []
        for raw in given.split(","):
            definition = _field(sobject, raw.strip())
            if definition is None:
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{raw.strip()}' on sobject of type "
                                      f"{sobject}")
            names.append(definition.name)
        return names

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin: `IsDeleted` true, SystemModstamp now; `query` no longer sees it,
        `queryAll` does. Children that look it up keep the (now dangling) id, as Salesforce's lookups do."""
        with self._lock:
            record = self._find(sobject, record_id)
            if record is None or record["IsDeleted"]:
                raise SalesforceError(404, "ENTITY_IS_DELETED" if record else "NOT_FOUND",
                                      "entity is deleted" if record else _NOT_FOUND, [] if record else None)
            moment = stamp(self._now())
            record.update(IsDeleted=True, LastModifiedDate=moment, SystemModstamp=moment)

    # -- describe -----------------------------------------------------------------------------------------------
    async def _describe_global(self, request: Request, version: str) -> Response:
        return JSONResponse({"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION,
                             "sobjects": [self._object_summary(name, version) for name in SCHEMA]})

    @staticmethod
    def _object_summary(sobject: str, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{sobject}"
        return {"name": sobject, "label": sobject, "labelPlural": f"{sobject}s", "keyPrefix": KEY_PREFIX[sobject],
                "custom": False, "createable": True, "updateable": True, "deletable": True, "queryable": True,
                "retrieveable": True, "searchable": True, "layoutable": True,
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}

    async def _describe(self, request: Request, version: str) -> Response:
        sobject = self._sobject(request)
        fields = []
        for definition in SCHEMA[sobject].values():
            if (sobject, definition.name) in self.hidden_fields:
                continue
            fields.append({
                "name": definition.name, "label": definition.name, "type": definition.type,
                "createable": definition.writable, "updateable": definition.writable,
                "nillable": not definition.required and definition.name != "Id",
                "externalId": definition.external_id, "unique": definition.external_id,
                "referenceTo": [definition.reference_to] if definition.reference_to else [],
                "relationshipName": _relationship_name(definition) if definition.reference_to else None,
                "restrictedPicklist": bool(definition.restricted),
                "picklistValues": [{"active": True, "defaultValue": False, "label": v, "value": v}
                                   for v in definition.restricted],
            })
        return JSONResponse({**self._object_summary(sobject, version), "fields": fields, "childRelationships": []})

    async def _by_external_id(self, request: Request, version: str) -> Response:
        sobject = self._sobject(request)
        ext_field = request.path_params["ext_field"]
        definition = _field(sobject, ext_field)
        if definition is None or not definition.external_id:
            raise SalesforceError(404, "NOT_FOUND",
                                  f"Provided external ID field does not exist or is not accessible: {ext_field}")
        value = request.path_params["ext_value"]
        body = await self._body(request) if request.method == "PATCH" else {}
        with self._lock:
            existing = self._by_external(sobject, definition.name, value)
            self._require(sobject, {"GET": "read", "DELETE": "delete"}.get(
                request.method, "edit" if existing is not None else "create"))
            if request.method in ("GET", "DELETE"):
                if existing is None:
                    raise SalesforceError(404, "NOT_FOUND", _NOT_FOUND)
                if request.method == "DELETE":
                    self.delete(sobject, existing["Id"])
                    return Response(status_code=204)
                return JSONResponse(self._shape(sobject, existing, version))
            values = {k: v for k, v in body.items() if k.lower() != definition.name.lower()}
            values[definition.name] = value
            self._raise_first(self._validate(sobject, values, creating=existing is None, record=existing))
            record = self._write(sobject, values, existing)
        if existing is None:
            return JSONResponse({"id": record["Id"], "success": True, "errors": [], "created": True}, status_code=201)
        if int(version.split(".")[0]) < 46:
            return Response(status_code=204)
        return JSONResponse({"id": record["Id"], "success": True, "errors": [], "created": False})

    async def _create(self, request: Request, version: str) -> Response:
        sobject = self._sobject(request)
        if request.method == "GET":  # sObject Basic Information
            return JSONResponse({"objectDescribe": self._object_summary(sobject, version), "recentItems": []})
        self._require(sobject, "create")
        values = await self._body(request)
        with self._lock:
            self._raise_first(self._validate(sobject, values, creating=True, record=None))
            record = self._write(sobject, values, None)
        return JSONResponse({"id": record["Id"], "success": True, "errors": []}, status_code=201)

    async def _collection_body(self, request: Request) -> tuple[list[dict[str, Any]], bool]:
        body = await self._body(request)
        records = body.get("records")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "The request must contain a 'records' list of sObjects")
        if len(records) > MAX_COLLECTION:
            raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 "
                                  "records into this call")
        for record in records:
            kind = (record.get("attributes") or {}).get("type")
            if not kind or kind.lower() not in _OBJECT_BY_LOWER:
                raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        return records, bool(body.get("allOrNone", False))

    async def _collection_create(self, request: Request, version: str) -> Response:
        records, all_or_none = await self._collection_body(request)
        types = {_OBJECT_BY_LOWER[raw["attributes"]["type"].lower()] for raw in records}
        if types and all(_access_error(sobject, "create") for sobject in types):
            self._require(sorted(types)[0], "create")  # nothing in the call could be created: refused whole
        with self._lock:
            plans = []
            for raw in records:
                sobject = _OBJECT_BY_LOWER[raw["attributes"]["type"].lower()]
                values = {k: v for k, v in raw.items() if k != "attributes"}
                denied = _access_error(sobject, "create")
                if denied is not None:
                    plans.append((sobject, values, None, [denied]))
                    continue
                errors = self._validate(sobject, values, creating=True, record=None)
                if "Id" in values or "id" in values:
                    errors.append(SalesforceError(400, "INVALID_FIELD", "cannot specify Id in an insert call",
                                                  ["Id"]))
                plans.append((sobject, values, None, errors))
            return JSONResponse(self._commit(plans, all_or_none, with_created=False))

    async def _collection_upsert(self, request: Request, version: str) -> Response:
        sobject = self._sobject(request)
        ext_field = request.path_params["ext_field"]
        definition = _field(sobject, ext_field)
        if definition is None or not definition.external_id:
            raise SalesforceError(400, "INVALID_FIELD",
                                  f"Field name provided, {ext_field} is not an External ID or indexed field for "
                                  f"{sobject}")
        if _access_error(sobject, "create") and _access_error(sobject, "edit"):
            self._require(sobject, "edit")  # the user can neither create nor edit these: refused whole
        records, all_or_none = await self._collection_body(request)
        with self._lock:
            plans = []
            seen: set[str] = set()
            for raw in records:
                values = {k: v for k, v in raw.items() if k != "attributes"}
                key = next((v for k, v in values.items() if k.lower() == definition.name.lower()), None)
                if raw["attributes"]["type"].lower() != sobject.lower():
                    errors = [SalesforceError(400, "INVALID_TYPE", f"Record type must be {sobject}", [])]
                    plans.append((sobject, values, None, errors))
                    continue
                if key in (None, ""):
                    errors = [SalesforceError(400, "MISSING_ARGUMENT", f"{definition.name} not specified", [])]
                    plans.append((sobject, values, None, errors))
                    continue
                if str(key).lower() in seen:
                    errors = [SalesforceError(400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: "
                                              f"{key}", [definition.name])]
                    plans.append((sobject, values, None, errors))
                    continue
                seen.add(str(key).lower())
                existing = self._by_external(sobject, definition.name, str(key))
                denied = _access_error(sobject, "edit" if existing is not None else "create")
                errors = [denied] if denied is not None else self._validate(
                    sobject, values, creating=existing is None, record=existing)
                plans.append((sobject, values, existing, errors))
            return JSONResponse(self._commit(plans, all_or_none, with_created=True))

    def _commit(self, plans: list[tuple[str, dict[str, Any], dict[str, Any] | None, list[SalesforceError]]],
                all_or_none: bool, *, with_created: bool) -> list[dict[str, Any]]:
        """Apply a collection in order; per-record results (`statusCode` in each error, as collections do)."""
        failed = any(errors for *_, errors in plans)
        results: list[dict[str, Any]] = []
        for sobject, values, existing, errors in plans:
            if errors:
                results.append({"success": False, "errors": [e.item("statusCode") for e in errors]})
                continue
            if failed and all_or_none:
                results.append({"success": False, "errors": [{
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the request was using "
                    "AllOrNone header", "fields": []}]})
                continue
            # a duplicate inside the same call is only visible once the earlier record is written
            duplicate = self._unique_errors(sobject, values, existing)
            if duplicate:
                results.append({"success": False, "errors": [e.item("statusCode") for e in duplicate]})
                continue
            record = self._write(sobject, values, existing)
            result: dict[str, Any] = {"id": record["Id"], "success": True, "errors": []}
            if with_created:
                result["created"] = existing is None
            results.append(result)
        return results

    # -- validation and writes -------------------------------------------------------------------------------
    @staticmethod
    def _raise_first(errors: list[SalesforceError]) -> None:
        if errors:
            raise errors[0]

    def _find(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        records = self.records[sobject]
        if len(record_id) == 15:
            record_id = to18(record_id)
        return records.get(record_id)

    def _by_external(self, sobject: str, field_name: str, value: str) -> dict[str, Any] | None:
        wanted = value.lower()  # unique external ids match case-insensitively by default
        return next((r for r in self.records[sobject].values() if not r["IsDeleted"]
                     and r.get(field_name) is not None and str(r[field_name]).lower() == wanted), None)

    def _validate(self, sobject: str, values: dict[str, Any], *, creating: bool,
                  record: dict[str, Any] | None) -> list[SalesforceError]:
        errors: list[SalesforceError] = []
        resolved: dict[str, Any] = {}
        for key, value in values.items():
            if key in {"attributes", "Id", "id"}:
                continue
            definition = _field(sobject, key)
            if definition is None:
                errors.append(SalesforceError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type "
                                              f"{sobject}", [key]))
                continue
            if not definition.writable:
                errors.append(SalesforceError(
                    400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {definition.name}. "
                    "Please check the security settings of this field and verify that it is read/write for your "
                    "profile or permission set.", [definition.name]))
                continue
            problem = self._type_problem(definition, value)
            if problem:
                errors.append(problem)
                continue
            resolved[definition.name] = value
        if errors:
            return errors
        merged = {**(record or {}), **resolved}
        missing = [d.name for d in SCHEMA[sobject].values() if d.required and merged.get(d.name) in (None, "")]
        if missing and (creating or any(name in resolved for name in missing)):
            message = f"Required fields are missing: [{', '.join(missing)}]"
            return [SalesforceError(400, "REQUIRED_FIELD_MISSING", message, missing)]
        for name, value in resolved.items():
            definition = SCHEMA[sobject][name]
            if definition.restricted and value is not None and value not in definition.restricted:
                label = "Stage" if name == "StageName" else name
                errors.append(SalesforceError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                              f"{label}: bad value for restricted picklist field: {value}", [name]))
            if definition.type == "reference" and value not in (None, "") and definition.reference_to in self.records:
                target = self._live(definition.reference_to, str(value))
                prefix = KEY_PREFIX[definition.reference_to]
                if not str(value).startswith(prefix) or len(str(value)) not in (15, 18):
                    errors.append(SalesforceError(400, "MALFORMED_ID", f"{definition.reference_to} ID: id value of "
                                                  f"incorrect type: {value}", [name]))
                elif target is None:
                    errors.append(SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id",
                                                  [name]))
        return errors or self._unique_errors(sobject, resolved, record)

    def _unique_errors(self, sobject: str, values: dict[str, Any], record: dict[str, Any] | None) -> list:
        for name, value in values.items():
            definition = _field(sobject, name)
            if definition is None or not definition.external_id or value in (None, ""):
                continue
            holder = self._by_external(sobject, definition.name, str(value))
            if holder is not None and (record is None or holder["Id"] != record["Id"]):
                return [SalesforceError(400, "DUPLICATE_VALUE", f"duplicate value found: {definition.name} "
                                        f"duplicates value on record with id: {holder['Id']}", [])]
        return []

    @staticmethod
    def _type_problem(definition: FieldDef, value: Any) -> SalesforceError | None:
        if value is None:
            return None
        kind, ok = definition.type, True
        if kind in _NUMBER:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind == "date":
            try:
                date.fromisoformat(str(value))
            except ValueError:
                ok = False
        elif kind == "datetime":
            try:
                parse_stamp(str(value))
            except ValueError:
                ok = False
        else:
            ok = isinstance(value, str)
        if ok:
            return None
        return SalesforceError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {definition.type} from "
                               f"value {json.dumps(value)} for field {definition.name}", [definition.name])

    def _write(self, sobject: str, values: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        if existing is not None:
            self._apply(sobject, existing, values)
            return existing
        self._serial += 1
        record = self._blank(sobject, sf_id(KEY_PREFIX[sobject], self.world.seed, "created", self._serial))
        if sobject == "Case":
            record["CaseNumber"] = self._next_case_number()
        now = self._now()
        record["CreatedDate"] = stamp(now)
        self.records[sobject][record["Id"]] = record
        self._apply(sobject, record, values, now)
        return record

    def _apply(self, sobject: str, record: dict[str, Any], values: dict[str, Any],
               now: datetime | None = None) -> None:
        for key, value in values.items():
            definition = _field(sobject, key)
            if definition is not None and definition.writable:
                if definition.type == "reference" and isinstance(value, str) and len(value) == 15:
                    value = to18(value)
                record[definition.name] = value
        if sobject == "Opportunity" and any(k.lower() == "stagename" for k in values) and \
                not any(k.lower() == "probability" for k in values):
            record["Probability"] = None  # follows the new stage's default
        moment = stamp(now or self._now())
        record.update(LastModifiedDate=moment, SystemModstamp=moment)
        self._derive(sobject, record)

    # -- ground truth -------------------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        sobject = STREAM_OBJECTS[stream]
        with self._lock:
            rows = sorted((r for r in self.records[sobject].values() if not r["IsDeleted"]),
                          key=lambda r: (r["SystemModstamp"], r["Id"]))
            return [self._shape(sobject, r, API_VERSION) for r in rows]

    def touch(self, stream: str, count: int) -> list[str]:
        """Edit the `count` least recently changed records as a user would; their SystemModstamp becomes now."""
        sobject = STREAM_OBJECTS[stream]
        touched = []
        with self._lock:
            rows = sorted((r for r in self.records[sobject].values() if not r["IsDeleted"]),
                          key=lambda r: (r["SystemModstamp"], r["Id"]))[:count]
            for record in rows:
                changes: dict[str, Any]
                if sobject == "Account":
                    changes = {"NumberOfEmployees": (record["NumberOfEmployees"] or 0) + 1}
                elif sobject == "Contact":
                    changes = {"Title": "Head of Purchasing" if record["Title"] != "Head of Purchasing" else "Buyer"}
                elif sobject == "Opportunity":
                    if record["IsClosed"]:
                        changes = {"Amount": (record["Amount"] or 0) + 1000}
                    else:
                        stages = list(STAGES)
                        changes = {"StageName": stages[stages.index(record["StageName"]) + 1]}
                else:
                    position = CASE_STATUSES.index(record["Status"])
                    if position + 1 < len(CASE_STATUSES):
                        changes = {"Status": CASE_STATUSES[position + 1]}
                    else:
                        changes = {"Priority": "High" if record["Priority"] != "High" else "Medium"}
                self._apply(sobject, record, changes)
                touched.append(record["Id"])
        return touched


EMULATOR = SalesforceEmulator
