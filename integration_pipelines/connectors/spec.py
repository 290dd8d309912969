"""Declarative system specs: everything vendor-specific about reading a system is data in one of these.

A spec names its real base URL, the environment variables it needs (and the obviously fake values its sandbox
twin accepts), its auth scheme, and its streams: request templates, where the records are, their primary key,
their change cursor, and how to paginate. The engine (`http.py`, `pagination.py`, `reader.py`) knows no vendor.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigurationError
from .pagination import Paginator, SinglePage


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# System and stream names become Dagster asset keys and groups, DuckDB schema and table names, and folder names
# of the run spool (`<spool>/<run>/<system>/<stream>`, which is removed with rmtree before a rerun): only a plain
# identifier is safe in all of them, so `../x` or `a/b` can never point a spool (or a schema) elsewhere.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _check_identifier(kind: str, value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{kind} name {value!r} must be lowercase ASCII letters, digits and underscores, starting with a "
            "letter (at most 63 characters): it becomes an asset key, a warehouse table and a folder name"
        )
    return value


class EnvValue(_Spec):
    """A value read from the environment only. `sandbox` is what the local emulator accepts (fake)."""

    env: str
    sandbox: str
    secret: bool = True
    description: str = ""


class BearerAuthSpec(_Spec):
    kind: Literal["bearer"] = "bearer"
    token: str = Field(description="name of the value holding the token")


class HeaderAuthSpec(_Spec):
    kind: Literal["header"] = "header"
    header: str
    value: str
    prefix: str = ""


class BasicAuthSpec(_Spec):
    kind: Literal["basic"] = "basic"
    username: str
    password: str


class OAuth2AuthSpec(_Spec):
    kind: Literal["oauth2"] = "oauth2"
    grant_type: Literal["refresh_token", "client_credentials"]
    token_url: str = Field(description="the real token endpoint; rebased onto the sandbox in sandbox mode")
    client_id: str
    client_secret: str
    refresh_token: str | None = None
    scope: str | None = None
    client_auth: Literal["basic", "body"] = "basic"
    instance_url_field: str | None = Field(
        default=None,
        description="a token-response field naming the API host for this tenant (Salesforce `instance_url`)",
    )


class NoAuthSpec(_Spec):
    kind: Literal["none"] = "none"


AuthSpec = Annotated[
    BearerAuthSpec | HeaderAuthSpec | BasicAuthSpec | OAuth2AuthSpec | NoAuthSpec, Field(discriminator="kind")
]


class RequestTemplate(_Spec):
    """One request, with `{placeholders}` in the path, param values and body strings.

    A string that is exactly one placeholder is replaced by the raw value (so `"limit": "{page_size}"` in a
    JSON body stays a number). Known variables: page_size, offset, page, window_start_*/window_end_* and
    cursor_* in iso/unix/ms/date forms, and every non-secret value of the system (realm_id, tenant_id ...).
    """

    method: Literal["GET", "POST"] = "GET"
    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    body_format: Literal["json", "form", "text"] = "json"
    text_body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


# -- SOAP (connectors/soap.py): a SOAP system is a System whose `soap` is set -------------------------
class TokenPassportAuthSpec(_Spec):
    """NetSuite Token-Based Auth: a `tokenPassport` SOAP header signed per request with HMAC-SHA256 over
    `account&consumerKey&token&nonce&timestamp`, key `consumerSecret&tokenSecret`. Values name `values` keys."""

    kind: Literal["token_passport"] = "token_passport"
    account: str
    consumer_key: str
    consumer_secret: str
    token: str
    token_secret: str
    header: str = Field(default="tokenPassport", description="the header part name in the WSDL binding")


class UsernameTokenAuthSpec(_Spec):
    """WS-Security UsernameToken (OASIS WSS 1.0), as plain text or as a password digest."""

    kind: Literal["username_token"] = "username_token"
    username: str
    password: str
    digest: bool = False


SoapAuthSpec = Annotated[
    TokenPassportAuthSpec | UsernameTokenAuthSpec | NoAuthSpec, Field(discriminator="kind")
]


class SoapPaginator(_Spec):
    """How a SOAP search continues: `single`, or `page_index` (NetSuite `searchMoreWithId(searchId, pageIndex)`,
    or the same operation again with `{page_index}` incremented) until `total_pages_path` says it is over.

    `capture` maps a template variable to a path in the first answer (`search_id: searchResult.searchId`);
    `next_operation`/`next_arguments` (templates) make the follow-up call; without them the first call is
    repeated with `{page_index}` + 1.
    """

    type: Literal["single", "page_index"] = "single"
    start: int = 1
    total_pages_path: str | None = None
    capture: dict[str, str] = Field(default_factory=dict)
    next_operation: str | None = None
    next_arguments: dict[str, Any] | None = None


class SoapCall(_Spec):
    """One SOAP stream read: an operation, its arguments (templates; a dict with `_type: "{ns}Name"` becomes
    that XSD type, for `xsi:type` polymorphism), SOAP headers, and where the records are in the answer.

    `success_path` / `messages_path` catch the vendor's in-band failure (NetSuite `status isSuccess="false"`
    with `statusDetail` codes); a SOAP Fault is handled by the engine for every system.
    """

    operation: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    incremental_arguments: dict[str, Any] | None = Field(
        default=None, description="used once a cursor is stored (`{cursor_iso}` ...); `arguments` reads everything"
    )
    soap_headers: dict[str, Any] = Field(default_factory=dict)
    records_path: str
    success_path: str | None = None
    messages_path: str | None = None
    paginator: SoapPaginator = Field(default_factory=SoapPaginator)


class SoapWriter(_Spec):
    """A SOAP write (NetSuite `upsert`, an ERP's `CreatePurchaseOrder`). `arguments` is a template in which
    the string `"{record}"` is replaced by the record (with `record_type` as its XSD type). `key_field` is the
    business key the target deduplicates on (NetSuite `externalId`), so a retried write leaves one record."""

    name: str
    description: str = ""
    operation: str
    record_type: str | None = None
    arguments: dict[str, Any] = Field(default_factory=lambda: {"record": "{record}"})
    soap_headers: dict[str, Any] = Field(default_factory=dict)
    key_field: str
    success_path: str | None = None
    messages_path: str | None = None
    id_path: str | None = None


class SoapSystem(_Spec):
    """What makes a system SOAP: its WSDL (a file next to the package, a path, or a URL; remote imports are
    refused), the endpoint path appended to the base URL, its SOAP-level auth, and the fault codes that mean
    'slow down' (retried with backoff like a 429)."""

    wsdl: str = Field(description="`package:<path inside integration_pipelines>`, a file path, or a URL")
    endpoint_path: str
    service: str | None = None
    port: str | None = None
    auth: SoapAuthSpec = Field(default_factory=NoAuthSpec)
    transient_faults: tuple[str, ...] = ()
    max_response_bytes: int = Field(default=20_000_000, ge=1024)
    writers: tuple[SoapWriter, ...] = ()

    def writer(self, name: str) -> SoapWriter:
        for writer in self.writers:
            if writer.name == name:
                return writer
        raise KeyError(f"no SOAP writer {name!r}; known: {[w.name for w in self.writers]}")


class SnapshotFeed(_Spec):
    """A change feed whose records are events that each carry the whole changed object (Stripe's Events API).

    Why: an API that lists objects only by creation time (Stripe's `created[gte]`) never shows a change to an old
    object (a refund ten days after the charge); its event feed does. Extraction applies each event's snapshot to
    the stream that holds that object type, by version (the event's time), so the feed, the webhooks and the
    list reads agree and a late event never undoes a newer read.
    """

    object_path: str = Field(description="dotted path to the snapshot inside an event, e.g. data.object")
    type_path: str = Field(description="dotted path to the snapshot's object type, e.g. data.object.object")
    streams: dict[str, str] = Field(description="object type → name of the stream (same system) that holds it")
    version_field: str = Field(description="the event's field saying when the change happened")
    version_format: Literal["iso", "unix", "ms", "dotnet"] = "unix"
    newest_first: bool = Field(
        default=False, description="the feed lists newest first, so of two events stamped alike the one read "
        "first is the later (Stripe's times are whole seconds)")


class Stream(_Spec):
    name: str
    description: str = ""
    request: RequestTemplate
    incremental_request: RequestTemplate | None = Field(
        default=None, description="used once a cursor is stored; `request` reads everything"
    )
    records_path: str = Field(default="", description="dotted path to the record list; '' = the body")
    envelope_path: str | None = Field(
        default=None, description="a key that must exist in every page; its absence means a malformed page"
    )
    primary_key: str
    cursor_field: str | None = None
    cursor_format: Literal["iso", "unix", "ms", "dotnet"] = Field(
        default="iso", description="dotnet = Microsoft JSON dates `/Date(1767225600000+0000)/` (Xero, SAP OData)"
    )
    lookback_seconds: int = 0
    max_history_seconds: int | None = Field(
        default=None, ge=1, description="how far back the API serves changes (QuickBooks ChangeDataCapture: 30 "
        "days): an older cursor, or none, asks from that far back instead of being refused")
    partitioned: Literal["daily"] | None = None
    paginator: Paginator = Field(default_factory=SinglePage)
    page_size: int = 100
    max_pages: int = 100_000
    soap: SoapCall | None = Field(default=None, description="set for streams of a SOAP system (`System.soap`)")
    snapshots: SnapshotFeed | None = Field(
        default=None, description="the records are events carrying snapshots of other streams' objects")

    @property
    def incremental(self) -> bool:
        """True when a stored cursor changes what is read (a REST incremental request or SOAP arguments)."""
        return self.incremental_request is not None or (
            self.soap is not None and self.soap.incremental_arguments is not None
        )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier("stream", value)


class Idempotency(_Spec):
    """How the target recognises a retried write: a header, a query param, a body field, or nothing
    (then the sync ledger and an upsert-by-key endpoint are the only protection)."""

    location: Literal["header", "query", "body", "none"] = "none"
    name: str = ""
    max_length: int = 255


class LoginStep(_Spec):
    """A request made once per client before any other (JSON-RPC `common.login` for a uid), whose answer
    provides template variables for every later request: `variables` maps a name to a dotted path."""

    request: RequestTemplate
    variables: dict[str, str]


class WriterLookup(_Spec):
    """How to find the record an unkeyed create may have made when its answer was lost (a 5xx, a cut connection).

    A read request (templated like a writer's: system and login values, plus `variables`, each taken from the
    payload that was sent by a dotted path) that searches a field the create fills with a unique business reference
    (Odoo `client_order_ref`): one match is the record, none means it was not created, more is for a person."""

    request: RequestTemplate
    variables: dict[str, str] = Field(description="template variable → dotted path in the payload that was sent")
    results_path: str = Field(default="", description="where the list of matches is in the answer")
    id_path: str = Field(default="id", description="the id within one match")


class Writer(_Spec):
    """One kind of write an outbound sync can make: create, update, upsert, archive ...

    `batch_envelope` wraps a batch of records (`{"inputs": [...]}` for HubSpot, `{"Invoices": [...]}` for Xero);
    without it the writer takes one record per request. `id_path` finds the created record's id in the answer
    (for a batch, relative to each element of `results_path`).
    """

    name: str
    description: str = ""
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    body_format: Literal["json", "form"] = "json"
    batch_envelope: str | None = None
    batch_size: int = 1
    results_path: str | None = None
    id_path: str = "id"
    idempotency: Idempotency = Field(default_factory=Idempotency)
    creates: bool = Field(
        default=False,
        description="each accepted request makes a new record (a JSON-RPC create, an email): without an idempotency "
        "key such a request is never repeated once it may have reached the target (see `replay_safe`)",
    )
    lookup: WriterLookup | None = Field(
        default=None, description="finds the record a create in doubt may have made (the engine links it)")
    headers: dict[str, str] = Field(default_factory=dict)
    csrf_fetch_path: str | None = Field(
        default=None,
        description="GET this path with `X-CSRF-Token: Fetch` first and send the token back (SAP OData)",
    )

    @property
    def replay_safe(self) -> bool:
        """Whether repeating a request whose outcome is unknown leaves one record: true with an idempotency key,
        and for writes that do not create (upserts by a unique key, absolute sets, updates by id)."""
        return self.idempotency.location != "none" or not self.creates


class Scopes(_Spec):
    """The least privileges a system's credentials need, in the vendor's own names (OAuth scopes, restricted-key
    permissions, roles): `read` for the extract credentials (`<SYSTEM>_READ_*`), `write` for the sync credentials
    (`<SYSTEM>_WRITE_*`), and per writer what each one needs (a sync needs those of the writers it uses). Rendered
    in docs/systems.md and docs/sync-catalog.md."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    writers: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="writer name → what it needs")
    note: str = Field(default="", description="how to grant them at the vendor, or why there is no finer grain")
    implies: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="a granted scope → the scopes it covers too (Xero's "
        "`accounting.transactions` covers `accounting.transactions.read`; Salesforce's `full` covers `api`)")

    def for_writer(self, name: str) -> tuple[str, ...]:
        return self.writers.get(name, self.write)

    def not_granted(self, needed: tuple[str, ...], granted: tuple[str, ...]) -> list[str]:
        """The OAuth scopes of `needed` that a token granted with `granted` lacks. Entries with a space are not
        OAuth scopes (a scope token cannot contain one, RFC 6749 §3.3) but permissions set at the vendor (a
        Salesforce permission set, a Stripe key's resources), which no token reports: they are left out."""
        have = set(granted).union(*(self.implies.get(scope, ()) for scope in granted))
        return [scope for scope in needed if " " not in scope and scope not in have]


def check_web_url(url: str, where: str) -> str:
    """`url` if it is an http(s) URL with a host (template values in the host are allowed), else a
    ConfigurationError naming `where` (the variable or field it came from)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if scheme.lower() not in ("http", "https") or not host:
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise ConfigurationError(
            f"{where} must be an http:// or https:// URL with a host, not {shown!r}: other schemes (file://, "
            "ftp://, a bare path) are refused so that a setting cannot point a connector at local files or "
            "non-web services.")
    return url


class System(_Spec):
    name: str
    title: str
    category: str
    base_url: str = Field(
        description="the real service's base URL; may hold values, e.g. `https://{shop}.myshopify.com`"
    )
    docs_url: str = ""
    values: dict[str, EnvValue]
    auth: AuthSpec
    headers: dict[str, str] = Field(default_factory=dict)
    streams: tuple[Stream, ...]
    requests_per_second: float = 10.0
    burst: int = 10
    max_attempts: int = 6
    extra_retry_statuses: tuple[int, ...] = ()
    error_message_paths: tuple[str, ...] = ("error.message", "message", "error")
    rate_limit_markers: tuple[tuple[int, str], ...] = Field(
        default=(), description="(status, body substring) pairs that mean 'slow down' (Salesforce 403 "
        "REQUEST_LIMIT_EXCEEDED): retried with backoff like a 429"
    )
    body_error_path: str | None = Field(
        default=None, description="where an error hides in a 200 answer (JSON-RPC `error`)"
    )
    writers: tuple[Writer, ...] = ()
    login: LoginStep | None = None
    soap: SoapSystem | None = Field(default=None, description="set for SOAP systems; read by connectors/soap.py")
    source_file: str | None = Field(
        default=None, description="the YAML file a custom system was declared in (connectors/custom.py)"
    )
    scopes: Scopes | None = Field(default=None, description="least privileges of the read and write credentials")

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier("system", value)

    @field_validator("base_url")
    @classmethod
    def _web_base_url(cls, value: str) -> str:
        """`https://…` (or `http://`), or a template whose first part is a value (`{base_url}`, checked once it is
        rendered): a `file://` or other scheme would let a spec read local files or reach non-web services."""
        if not value.startswith("{"):
            try:
                check_web_url(value, "base_url")
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None  # pydantic names the system (and custom.py its file, line)
        return value

    @model_validator(mode="after")
    def _scoped_writers_exist(self) -> System:
        if self.scopes is not None:
            known = {w.name for w in self.writers} | {w.name for w in (self.soap.writers if self.soap else ())}
            unknown = sorted(set(self.scopes.writers) - known)
            if unknown:
                raise ValueError(f"scopes.writers names {unknown}, which are not writers of {self.name}; "
                                 f"its writers: {sorted(known)}")
        return self

    def writer(self, name: str) -> Writer:
        for writer in self.writers:
            if writer.name == name:
                return writer
        raise KeyError(f"{self.name} has no writer {name!r}; it has {[w.name for w in self.writers]}")

    @property
    def env_prefix(self) -> str:
        return self.name.upper()

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(f"{self.name} has no stream {name!r}; it has {[s.name for s in self.streams]}")

    def credential_hint(self) -> str:
        names = ", ".join(v.env for v in self.values.values() if v.secret)
        return f"Check {names} (see docs/systems.md for how to create them), or unset them to use the sandbox."


# -- templates --------------------------------------------------------------------------------------
_FORMATTER = string.Formatter()


def render_template(value: Any, variables: dict[str, Any], *, where: str) -> Any:
    """Fill `{placeholders}` in strings, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: render_template(v, variables, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [render_template(v, variables, where=where) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    fields = [name for _, name, _, _ in _FORMATTER.parse(value) if name]
    missing = [name for name in fields if name not in variables]
    if missing:
        raise ConfigurationError(
            f"{where}: template {value!r} uses {missing}, which is not known here; known: {sorted(variables)}"
        )
    if len(fields) == 1 and value == "{" + fields[0] + "}":
        return variables[fields[0]]
    return value.format_map(variables)


def time_variables(prefix: str, moment: datetime) -> dict[str, Any]:
    """The forms APIs want a timestamp in: ISO 8601 UTC, unix seconds, milliseconds, date."""
    moment = moment.astimezone(UTC)
    return {
        f"{prefix}_iso": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{prefix}_iso_offset": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        f"{prefix}_unix": int(moment.timestamp()),
        f"{prefix}_ms": int(moment.timestamp() * 1000),
        f"{prefix}_date": moment.strftime("%Y-%m-%d"),
        f"{prefix}_http": format_datetime(moment, usegmt=True),
    }
