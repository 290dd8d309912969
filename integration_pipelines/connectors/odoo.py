"""Odoo (ERP) over the external JSON-RPC API: `POST /jsonrpc`, `common.login` once for a uid, then
`object.execute_kw(db, uid, api_key, model, method, args, kwargs)` for every read and write.

Why the spec looks the way it does:
- Auth is database + login + API key (Preferences → Account Security → New API Key). The key is sent in
  the body of every call, never in a header, so there is no `auth` scheme: the `login` step asks
  `common.login` for the user id and every request template carries `{db}`, `{uid}` and `{api_key}`. A wrong
  key makes `login` answer `"result": false`, which the engine turns into an AuthError naming ODOO_API_KEY.
- Base URL: one full URL in ODOO_BASE_URL (`https://mycompany.odoo.com` for Odoo Online, any scheme, port
  or path prefix for a self-hosted server), the same variable the engine reads as every system's base-URL
  override, so the two can never disagree. Like ODOO_DB and ODOO_LOGIN it is required in live mode.
- Errors arrive inside HTTP 200 answers: `{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message":
  "Odoo Server Error", "data": {"name": "odoo.exceptions.AccessError", "debug": "<traceback>", "message":
  "You are not allowed to access ...", "arguments": [...], "context": {}}}}`. `body_error_path` points at
  `error.data.message`, the sentence meant for a person: the engine prints the value found there, and the
  whole `error` object would be cut at 500 characters inside the traceback (`debug` comes before `message`).
  Odoo fills `data` for every server error (code 200, 100 session expired, 404), so nothing is missed.
- Reads are `search_read` with an explicit `fields` list (Odoo otherwise returns every field, binary images
  included), `offset`/`limit` from the offset paginator, and `order: "id asc"`. The id order is deliberate:
  ids never change, so a record edited while we page moves nowhere; ordered by `write_date`, it would jump to
  the end and shift every later record one position back, and offset paging would skip one. The cursor is the
  maximum `write_date` over everything read, so the order does not affect it.
- Incremental reads filter the domain on `write_date` (which every write moves; `create_date` would miss
  updates). Odoo compares datetime domain values as naive UTC `"YYYY-MM-DD HH:MM:SS"`, and expands a bare
  `"YYYY-MM-DD"` to midnight. No engine template variable renders the former (`cursor_iso` has the `T` and
  the `Z`; Odoo's datetime parser, `fields.Datetime.to_datetime`, is a strptime with the server format and
  refuses them wherever a value goes through it), so the domain uses `{cursor_date}`: the read
  restarts at midnight UTC of the cursor's day (after the lookback). Up to a day of changes is re-read and
  upserted unchanged; nothing is missed. The lookback covers long transactions: Odoo stamps `write_date`
  with the transaction's start time, so a slow import can commit rows older than ones already read.
- Many2one fields come back as `[id, "display name"]` or `false`, one2many as lists of ids; they are landed
  as Odoo sends them (the raw JSON keeps the shape).
- `search_read` drops archived records (`active = False`) unless told otherwise; partners and products send
  `context: {"active_test": false}` so an archived contact updates its row instead of vanishing from reads.
- Stock levels (`qty_available`) are computed from `stock.quant` and do not move `product.product`'s
  `write_date`; the products' incremental domain also matches `stock_quant_ids.write_date`, so a stock
  change is seen without a full refresh.
- Sale and purchase orders are daily-partitioned by their business date `date_order` (`>= day`, `< next
  day`, both bare dates, which Odoo expands to midnight), and within a partition read incrementally.
- Odoo has no page-size cap (`limit: false` returns everything) and publishes no rate limit for the
  external API; Odoo Online answers abusive clients with HTTP 429. 10 requests/s is a polite default.

Writes: Odoo has no idempotency key. `execute_kw` bodies carry db, uid and key, and the engine's `Writer`
cannot template a body (a writer sends the record as the body), so `writer_record` builds the JSON-RPC
envelope for a writer from `WRITE_CALLS` and the record is sent with `send_write` unchanged. Idempotency is
by business key instead: `create_purchase_order_once` searches `purchase.order` by its unique `origin`
before creating, and Odoo databases used this way enforce `origin` uniqueness with an SQL constraint, so a
racing duplicate is refused with a ValidationError rather than stored twice; `create_sale_order` (a
quotation per paid card payment) does the same with a unique `client_order_ref`. Stock is set with `stock.quant`
in inventory mode (`inventory_quantity_auto_apply`), an absolute quantity: replaying it is harmless.
`send_write` does not look for `error` in a 200 answer either, so `raise_for_rpc_error` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ApiError
from .http import HttpClient, json_path
from .pagination import OffsetPaginator
from .reader import login_variables
from .redaction import redact
from .runtime import ResolvedSystem
from .spec import (
    EnvValue,
    Idempotency,
    LoginStep,
    NoAuthSpec,
    RequestTemplate,
    Scopes,
    Stream,
    System,
    Writer,
    WriterLookup,
)
from .writer import WriteResult, send_write

RPC_PATH = "/jsonrpc"
PAGE_SIZE = 200
LOOKBACK_SECONDS = 3600

#: stream name → Odoo model
MODELS: dict[str, str] = {
    "partners": "res.partner",
    "sale_orders": "sale.order",
    "products": "product.product",
    "purchase_orders": "purchase.order",
}

#: Every field a stream lands, requested explicitly (search_read always adds `id`).
FIELDS: dict[str, tuple[str, ...]] = {
    "partners": (
        "name", "display_name", "is_company", "parent_id", "commercial_partner_id", "email", "phone", "street",
        "city", "zip", "country_id", "website", "ref", "vat", "active", "customer_rank", "supplier_rank",
        "create_date", "write_date",
    ),
    "sale_orders": (
        "name", "partner_id", "client_order_ref", "date_order", "state", "invoice_status", "currency_id",
        "amount_untaxed", "amount_tax", "amount_total", "order_line", "user_id", "note", "create_date",
        "write_date",
    ),
    "products": (
        "name", "display_name", "default_code", "type", "categ_id", "uom_id", "list_price", "standard_price",
        "qty_available", "virtual_available", "product_tmpl_id", "barcode", "active", "create_date", "write_date",
    ),
    "purchase_orders": (
        "name", "partner_id", "partner_ref", "origin", "date_order", "date_planned", "state", "currency_id",
        "amount_untaxed", "amount_total", "order_line", "product_id", "create_date", "write_date",
    ),
}

CHANGED_SINCE: list[Any] = ["write_date", ">=", "{cursor_date}"]
#: Stock moves write `stock.quant`, not the product: follow the one2many to see them.
STOCK_CHANGED_SINCE: list[Any] = ["stock_quant_ids.write_date", ">=", "{cursor_date}"]
IN_PARTITION: list[list[Any]] = [["date_order", ">=", "{window_start_date}"], ["date_order", "<", "{window_end_date}"]]


def rpc_body(service: str, method: str, args: list[Any]) -> dict[str, Any]:
    """A JSON-RPC 2.0 call as Odoo's `/jsonrpc` route expects it (`method` is always "call")."""
    return {"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": 1}


def execute_kw(model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`object.execute_kw` with the credentials as template placeholders (`{uid}` stays an int)."""
    return rpc_body("object", "execute_kw", ["{db}", "{uid}", "{api_key}", model, method, args, kwargs or {}])


def _search_read(stream: str, domain: list[Any], *, include_archived: bool) -> RequestTemplate:
    kwargs: dict[str, Any] = {"fields": list(FIELDS[stream]), "offset": "{offset}", "limit": "{page_size}",
                              "order": "id asc"}
    if include_archived:
        kwargs["context"] = {"active_test": False}
    return RequestTemplate(method="POST", path=RPC_PATH, body=execute_kw(MODELS[stream], "search_read", [domain],
                                                                        kwargs))


def _stream(name: str, description: str, *, incremental_domain: list[Any], partitioned: bool = False,
            include_archived: bool = False) -> Stream:
    window = IN_PARTITION if partitioned else []
    return Stream(
        name=name,
        description=description,
        request=_search_read(name, window, include_archived=include_archived),
        incremental_request=_search_read(name, [*window, *incremental_domain], include_archived=include_archived),
        records_path="result",
        envelope_path="result",  # an answer without `result` (and without `error`) is not a JSON-RPC answer
        primary_key="id",
        cursor_field="write_date",
        cursor_format="iso",  # "YYYY-MM-DD HH:MM:SS", naive UTC: parse_cursor reads it as UTC
        lookback_seconds=LOOKBACK_SECONDS,
        partitioned="daily" if partitioned else None,
        paginator=OffsetPaginator(start=0),
        page_size=PAGE_SIZE,
    )


#: writer name → (model, method, kwargs) of the execute_kw call it makes; see `writer_record`.
WRITE_CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "create_purchase_order": ("purchase.order", "create", {}),
    "update_purchase_order": ("purchase.order", "write", {}),
    "create_sale_order": ("sale.order", "create", {}),
    "set_stock_quantity": ("stock.quant", "create", {"context": {"inventory_mode": True}}),
}


def _writer(name: str, description: str, id_path: str = "result", *, unique_ref: str | None = None) -> Writer:
    """A JSON-RPC writer. `unique_ref` makes it a create (never repeated blindly: Odoo has no idempotency key) that
    the sync engine can check after a lost answer, by searching that unique field for the value the create sent."""
    lookup = None
    if unique_ref is not None:
        model = WRITE_CALLS[name][0]
        lookup = WriterLookup(
            request=RequestTemplate(method="POST", path=RPC_PATH, body=execute_kw(
                model, "search_read", [[[unique_ref, "=", "{ref}"]]], {"fields": ["id"], "limit": 2})),
            variables={"ref": f"params.args.5.0.{unique_ref}"}, results_path="result", id_path="id")
    return Writer(name=name, description=description, method="POST", path=RPC_PATH, id_path=id_path,
                  idempotency=Idempotency(location="none"), creates=unique_ref is not None, lookup=lookup)


SYSTEM = System(
    name="odoo",
    title="Odoo",
    category="erp",
    base_url="{base_url}",
    docs_url="https://www.odoo.com/documentation/17.0/developer/reference/external_api.html",
    values={
        "base_url": EnvValue(
            env="ODOO_BASE_URL",
            sandbox="https://FAKE-sandbox.odoo.com",
            secret=False,
            description="the server's URL: https://mycompany.odoo.com for Odoo Online, or a self-hosted "
            "server's own, e.g. http://odoo.internal:8069",
        ),
        "db": EnvValue(
            env="ODOO_DB",
            sandbox="FAKE-sandbox-db",
            secret=False,
            description="the database name (Odoo Online: usually the subdomain; see /web/database/selector)",
        ),
        "login": EnvValue(
            env="ODOO_LOGIN",
            sandbox="FAKE-sandbox-integration@example.com",
            secret=False,
            description="the login (email) of the user the integration acts as",
        ),
        "api_key": EnvValue(
            env="ODOO_API_KEY",
            sandbox="FAKE-sandbox-odoo-api-key-0000000000000000",
            description="an API key of that user (Preferences → Account Security → New API Key)",
        ),
    },
    auth=NoAuthSpec(),
    login=LoginStep(
        request=RequestTemplate(method="POST", path=RPC_PATH,
                                body=rpc_body("common", "login", ["{db}", "{login}", "{api_key}"])),
        variables={"uid": "result"},
    ),
    requests_per_second=10.0,
    burst=10,
    error_message_paths=("error.data.message", "error.message", "message"),
    body_error_path="error.data.message",
    scopes=Scopes(
        read=("Sales: User: Own Documents Only (read)", "Purchase: User (read)", "Inventory: User (read)"),
        write=("Purchase: User", "Sales: User: All Documents", "Inventory: Administrator (stock quantities)"),
        writers={"create_purchase_order": ("Purchase: User",), "update_purchase_order": ("Purchase: User",),
                 "create_sale_order": ("Sales: User: All Documents",),
                 "set_stock_quantity": ("Inventory: Administrator",)},
        note="Odoo API keys carry the rights of their user: give the read key to a user whose access rights are "
        "read-only on these models, the write key to a user in the groups listed.",
    ),
    streams=(
        _stream("partners", "Contacts and companies (customers, vendors), archived ones included",
                incremental_domain=[CHANGED_SINCE], include_archived=True),
        _stream("sale_orders", "Sales orders with customer, totals and state, by order date",
                incremental_domain=[CHANGED_SINCE], partitioned=True),
        _stream("products", "Product variants: SKU (default_code), price and on-hand quantity",
                incremental_domain=["|", CHANGED_SINCE, STOCK_CHANGED_SINCE], include_archived=True),
        _stream("purchase_orders", "Purchase orders to vendors (replenishment of low stock), by order date",
                incremental_domain=[CHANGED_SINCE], partitioned=True),
    ),
    writers=(
        _writer("create_purchase_order", "purchase.order create(vals) → the new id. No idempotency key: use "
                "create_purchase_order_once (search by the unique `origin` first).", unique_ref="origin"),
        _writer("update_purchase_order", "purchase.order write([ids], vals) → true (no id in the answer: the "
                "sync keeps the id it wrote to)", id_path="result.id"),
        _writer("create_sale_order", "sale.order create(vals) → the new id (a quotation). No idempotency key: "
                "`client_order_ref` carries the business key; search it (or read raw_odoo.sale_orders) first.",
                unique_ref="client_order_ref"),
        _writer("set_stock_quantity", "stock.quant create in inventory mode with inventory_quantity_auto_apply: "
                "sets the absolute on-hand quantity of a product at a location; replays are harmless"),
    ),
)


# -- writes ------------------------------------------------------------------------------------------
def rpc_variables(client: HttpClient, resolved: ResolvedSystem) -> dict[str, Any]:
    """db, uid and key for a hand-built call (logging in once per client, like the reader)."""
    return {**resolved.values, **login_variables(client, resolved)}


def _filled(model: str, method: str, args: list[Any], kwargs: dict[str, Any], variables: dict[str, Any]) -> dict:
    return rpc_body("object", "execute_kw",
                    [variables["db"], variables["uid"], variables["api_key"], model, method, args, kwargs])


def writer_record(client: HttpClient, resolved: ResolvedSystem, writer_name: str, args: list[Any]) -> dict[str, Any]:
    """The JSON-RPC body for one writer call, to send with `send_write(..., [record])`.

    `args` are the method's positional arguments: `[vals]` for create, `[[ids], vals]` for write. Needed
    because a `Writer` cannot template its body; with a body template in the engine this would be data.
    """
    model, method, kwargs = WRITE_CALLS[writer_name]
    return _filled(model, method, args, kwargs, rpc_variables(client, resolved))


def raise_for_rpc_error(resolved: ResolvedSystem, writer_name: str, result: WriteResult) -> WriteResult:
    """Turn an `error` inside a 200 answer into an ApiError carrying Odoo's readable message."""
    error = json_path(result.body, "error")
    if error is None:
        return result
    model, method, _ = WRITE_CALLS.get(writer_name, ("?", writer_name, {}))
    kind = json_path(error, "data.name") or "error"
    message = json_path(error, "data.message") or json_path(error, "message") or str(error)[:300]
    raise ApiError(resolved.system.title,
                   f"{resolved.system.title} refused {model}.{method} (writer {writer_name}): {kind}: {message}",
                   status=result.status, body=redact(str(result.body))[:2000])


def write(client: HttpClient, resolved: ResolvedSystem, writer_name: str, args: list[Any]) -> WriteResult:
    """One writer call: build the envelope, send it through `send_write`, raise Odoo's error if any."""
    record = writer_record(client, resolved, writer_name, args)
    result = send_write(client, resolved, resolved.system.writer(writer_name), [record])
    return raise_for_rpc_error(resolved, writer_name, result)


def search_ids(client: HttpClient, resolved: ResolvedSystem, model: str, domain: Sequence[Any],
               *, limit: int = 2) -> list[int]:
    """`search` for record ids (used to look a business key up before creating)."""
    body = _filled(model, "search", [list(domain)], {"limit": limit}, rpc_variables(client, resolved))
    answer = client.request("POST", RPC_PATH, json=body).json()
    if "error" in answer:
        message = json_path(answer, "error.data.message") or json_path(answer, "error.message")
        raise ApiError(resolved.system.title, f"{resolved.system.title} refused {model}.search: {message}",
                       status=200, body=redact(str(answer))[:2000])
    return [int(i) for i in answer.get("result") or []]


def create_purchase_order_once(client: HttpClient, resolved: ResolvedSystem, vals: dict[str, Any]) -> tuple[int, bool]:
    """Create a purchase order unless one with the same `origin` exists: (id, created).

    The idempotent create Odoo lacks: a retried sync finds the order its first attempt made. Two writers
    racing past the search both try to create; the database's unique `origin` constraint refuses the second
    with a ValidationError (raised here as an ApiError), never a duplicate order.
    """
    origin = vals.get("origin")
    if not origin:
        raise ValueError("create_purchase_order_once needs vals['origin'], the order's unique business key")
    found = search_ids(client, resolved, "purchase.order", [["origin", "=", origin]])
    if len(found) > 1:
        raise ApiError(resolved.system.title, f"{len(found)} purchase orders share origin {origin!r}; "
                       "fix them in Odoo before syncing (origin must identify one order)")
    if found:
        return found[0], False
    result = write(client, resolved, "create_purchase_order", [vals])
    return int(result.body["result"]), True
