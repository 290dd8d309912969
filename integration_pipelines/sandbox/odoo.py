"""Odoo's external JSON-RPC API as a client sees it: one route, `POST /jsonrpc`, `common.login` answering a uid
(or `false`), and `object.execute_kw(db, uid, key, model, method, args, kwargs)` for `search_read`, `search`,
`search_count`, `read`, `create` and `write`, with Odoo's domain language (Polish-notation `&`/`|`/`!`, dotted
paths through one2many fields, `active_test`), its order clause, many2one values as `[id, "display name"]` or
`false`, datetimes as naive UTC `"YYYY-MM-DD HH:MM:SS"`, and errors inside HTTP 200 answers:
`{"jsonrpc": "2.0", "id": .., "error": {"code": 200, "message": "Odoo Server Error", "data": {"name",
"debug", "message", "arguments", "context"}}}`.

The business is the shared world: companies and people become `res.partner` (contacts under their company),
invoices become confirmed `sale.order`s (client_order_ref = the invoice number), products become
`product.product` (default_code = SKU) with on-hand stock in `stock.quant`, and the storable products that run
low get replenishment `purchase.order`s to three vendors. Everything Odoo-only is drawn from
`world.rng("odoo")`, so it is the same on every run.

Deliberate choices: `purchase.order.origin` and `sale.order.client_order_ref` are unique (the SQL constraint
a database synced this way carries; stock Odoo has none), so a duplicated create is refused with a
ValidationError as Odoo words constraint violations; and stock changes go through `stock.quant` in inventory
mode and, as in Odoo, do not move the product's own `write_date`. A `sale.order` create makes a quotation
without lines (a fulfillment request from a payment).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..connectors.odoo import FIELDS, MODELS, RPC_PATH, SYSTEM
from .base import Emulator
from .world import World

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATETIME_FIELDS = frozenset({"create_date", "write_date", "date_order", "date_planned"})
BOOLEAN_FIELDS = frozenset({"is_company", "active"})
LABELS = {"res.partner": "Contact", "sale.order": "Sales Order", "product.product": "Product Variant",
          "purchase.order": "Purchase Order", "stock.quant": "Quants"}
GROUPS = {"res.partner": "Sales/User: Own Documents Only", "sale.order": "Sales/User: Own Documents Only",
          "product.product": "Inventory/User", "purchase.order": "Purchase/User", "stock.quant": "Inventory/User"}
DEFAULT_ORDER = {"res.partner": "display_name asc, id desc", "sale.order": "date_order desc, id desc",
                 "product.product": "default_code asc, name asc, id asc", "purchase.order": "id desc",
                 "stock.quant": "id asc"}
QUANT_FIELDS = ("product_id", "location_id", "quantity", "inventory_quantity", "create_date", "write_date")
#: one2many fields a domain may walk through: (model, field) → (comodel, inverse many2one)
RELATIONS = {("product.product", "stock_quant_ids"): ("stock.quant", "product_id")}
STOCK_LOCATION = [8, "WH/Stock"]
CURRENCIES = {"EUR": [1, "EUR"], "USD": [2, "USD"], "GBP": [3, "GBP"]}
COUNTRIES = {"US": [233, "United States"], "GB": [231, "United Kingdom"], "DE": [57, "Germany"]}
SALESPERSON = [2, "Mitchell Admin"]
VENDORS = ("Northwind Components Ltd", "Contoso Supply Co", "Fabrikam Industrial Inc")
SERVICES = frozenset({"SERVICE-HR", "SUPPORT-Y"})
API_UID = 6
_ORDER_TERM = re.compile(r"^\s*([a-z0-9_]+)(?:\s+(asc|desc))?(?:\s+nulls\s+(?:first|last))?\s*$", re.IGNORECASE)
_OPERATORS = frozenset({"=", "!=", "<>", "<", ">", "<=", ">=", "in", "not in", "like", "ilike", "not like",
                        "not ilike", "=like", "=ilike"})


class OdooError(Exception):
    """An exception the Odoo server would serialize into the JSON-RPC `error.data`."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_FORMAT)


def _now() -> str:
    return _fmt(datetime.now(UTC))


def _between(rng: Any, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(max(1, int((end - start).total_seconds()))))


def _invalid_field(model: str, field: str) -> OdooError:
    return OdooError("builtins.ValueError", f"Invalid field {field!r} on model {model!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_datetime_text(value: Any, operator: str) -> str:
    """What Odoo does with a datetime domain value: a bare date gets a time of day, anything else must be
    the server format exactly (`fields.Datetime.to_datetime`: strptime with "%Y-%m-%d %H:%M:%S")."""
    if not isinstance(value, str):
        raise OdooError("builtins.ValueError", f"Datetime domain value must be a string, got {value!r}")
    if len(value) == 10:
        value += " 23:59:59" if operator in (">", "<=") else " 00:00:00"
    try:
        return datetime.strptime(value, DATETIME_FORMAT[: len(value) - 2]).strftime(DATETIME_FORMAT)
    except ValueError as exc:
        raise OdooError("builtins.ValueError", str(exc)) from exc


class OdooEmulator(Emulator):
    name = "odoo"
    prefixes = (RPC_PATH,)
    streams = tuple(MODELS)

    def __init__(self, world: World, sandbox: Any) -> None:
        super().__init__(world, sandbox)
        self.db = SYSTEM.values["db"].sandbox
        self.user_login = SYSTEM.values["login"].sandbox
        self.api_key = SYSTEM.values["api_key"].sandbox
        self.records: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in (*MODELS.values(), "stock.quant")}
        self.lines: dict[int, dict[str, Any]] = {}  # purchase.order.line: {"order_id", "product_id", "qty", "price"}
        self.denied: set[str] = set()
        self.calls: list[dict[str, Any]] = []  # model, method, args/kwargs without credentials: what tests inspect
        self._next_id: dict[str, int] = {}
        self._build(world)

    # -- the seeded business --------------------------------------------------------------------
    def _new_id(self, model: str, start: int = 1) -> int:
        value = self._next_id.get(model, start)
        self._next_id[model] = value + 1
        return value

    def _build(self, world: World) -> None:
        rng = world.rng("odoo")
        start, anchor = world.start, world.anchor
        partners = self.records["res.partner"]
        company_ref: dict[int, list[Any]] = {}
        for company in world.companies:
            pid = self._new_id("res.partner", 7)
            created = _between(rng, start - timedelta(days=90), start)
            company_ref[company.key] = [pid, company.name]
            partners[pid] = self._partner(pid, company.name, company.name, True, False, [pid, company.name],
                                          f"info@{company.domain}", created, _between(rng, start, anchor),
                                          website=f"https://{company.domain}", customer_rank=1)
        person_ref: dict[int, list[Any]] = {}
        archived = rng.choice(world.people).key
        for person in world.people:
            pid = self._new_id("res.partner")
            parent = company_ref[person.company.key]
            display = f"{person.company.name}, {person.name}"
            person_ref[person.key] = [pid, display]
            partners[pid] = self._partner(
                pid, person.name, display, False, parent, parent, person.email, person.created_at, person.updated_at,
                phone=person.phone, street=person.street, city=person.city, zip_code=person.postal_code,
                country=COUNTRIES[person.country], customer_rank=1, active=person.key != archived)
        vendor_refs = []
        for n, vendor in enumerate(VENDORS):
            pid = self._new_id("res.partner")
            vendor_refs.append([pid, vendor])
            domain = vendor.split()[0].lower() + ".example.com"
            partners[pid] = self._partner(pid, vendor, vendor, True, False, [pid, vendor], f"orders@{domain}",
                                          start - timedelta(days=200 + n), _between(rng, start, anchor),
                                          website=f"https://{domain}", supplier_rank=1, ref=f"V{n + 1:03d}")

        products = self.records["product.product"]
        product_ref: dict[int, list[Any]] = {}
        for product in world.products:
            pid = self._new_id("product.product")
            display = f"[{product.sku}] {product.name}"
            product_ref[product.key] = [pid, display]
            storable = product.sku not in SERVICES
            products[pid] = {
                "id": pid, "name": product.name, "display_name": display, "default_code": product.sku,
                "type": "product" if storable else "service", "categ_id": [1, "All"], "uom_id": [1, "Units"],
                "list_price": product.unit_price / 100, "standard_price": round(product.unit_price * 0.55 / 100, 2),
                "qty_available": 0.0, "virtual_available": 0.0, "product_tmpl_id": [pid, product.name],
                "barcode": False, "active": True, "create_date": _fmt(start - timedelta(days=365)),
                "write_date": _fmt(_between(rng, start, anchor)),
            }
            if storable and product.stock:
                self._set_quant(pid, float(product.stock), _fmt(_between(rng, start, anchor)))

        orders = self.records["sale.order"]
        for invoice in world.invoices:
            oid = self._new_id("sale.order")
            total = round(invoice.amount / 100, 2)
            orders[oid] = {
                "id": oid, "name": f"S{oid:05d}", "partner_id": person_ref[invoice.person.key],
                "client_order_ref": invoice.number, "date_order": _fmt(invoice.issued_at), "state": "sale",
                "invoice_status": "invoiced", "currency_id": CURRENCIES[invoice.currency],
                "amount_untaxed": total, "amount_tax": 0.0, "amount_total": total,
                "order_line": [self._new_id("sale.order.line") for _ in invoice.lines], "user_id": SALESPERSON,
                "note": False, "create_date": _fmt(invoice.issued_at),
                "write_date": _fmt(_between(rng, invoice.issued_at, anchor)),
            }

        storable = sorted((p for p in world.products if p.sku not in SERVICES), key=lambda p: (p.stock, p.key))
        low = [p for p in storable if p.stock < 150] or storable[:2]
        plans = []  # (ordered at, product, is its latest order): ids follow time, as in a real database
        for product in low:
            history = rng.randint(1, 3)
            moments = sorted(_between(rng, start, anchor) for _ in range(history))
            plans += [(moment, product, n == history - 1) for n, moment in enumerate(moments)]
        for moment, product, latest in sorted(plans, key=lambda plan: plan[0]):
            pid = product_ref[product.key][0]
            qty = float(max(50, (200 - product.stock) // 10 * 10))
            origin = f"OP/{len(self.records['purchase.order']) + 1:05d}"  # an Odoo reordering-rule reference
            vals = {"partner_id": rng.choice(vendor_refs)[0], "origin": origin,
                    "date_order": _fmt(moment), "date_planned": _fmt(moment + timedelta(days=7)),
                    "order_line": [[0, 0, {"product_id": pid, "product_qty": qty,
                                           "price_unit": products[pid]["standard_price"]}]]}
            oid = self._create_purchase_order(vals, now=_fmt(moment))
            order = self.records["purchase.order"][oid]
            order["state"] = "draft" if latest else "purchase"  # the open RFQ for the current shortage
            order["write_date"] = _fmt(_between(rng, moment, anchor))
        self._recompute_forecast()

    @staticmethod
    def _partner(pid: int, name: str, display: str, is_company: bool, parent: Any, commercial: list[Any],
                 email: str, created: datetime, updated: datetime, *, phone: Any = False, street: Any = False,
                 city: Any = False, zip_code: Any = False, country: Any = False, website: Any = False,
                 ref: Any = False, customer_rank: int = 0, supplier_rank: int = 0, active: bool = True,
                 ) -> dict[str, Any]:
        return {
            "id": pid, "name": name, "display_name": display, "is_company": is_company, "parent_id": parent,
            "commercial_partner_id": commercial, "email": email, "phone": phone, "street": street, "city": city,
            "zip": zip_code, "country_id": country, "website": website, "ref": ref, "vat": False, "active": active,
            "customer_rank": customer_rank, "supplier_rank": supplier_rank, "create_date": _fmt(created),
            "write_date": _fmt(max(created, updated)),
        }

    # -- stock ----------------------------------------------------------------------------------
    def _quant_for(self, product_id: int) -> dict[str, Any] | None:
        return next((q for q in self.records["stock.quant"].values() if q["product_id"][0] == product_id), None)

    def _set_quant(self, product_id: int, quantity: float, when: str) -> int:
        quant = self._quant_for(product_id)
        product = self.records["product.product"][product_id]
        if quant is None:
            qid = self._new_id("stock.quant")
            quant = {"id": qid, "product_id": [product_id, product["display_name"]], "location_id": STOCK_LOCATION,
                     "quantity": 0.0, "inventory_quantity": 0.0, "create_date": when, "write_date": when}
            self.records["stock.quant"][qid] = quant
        quant.update(quantity=quantity, inventory_quantity=quantity, write_date=when)
        # qty_available is computed from the quants: the product record itself is not written.
        product["qty_available"] = quantity
        return int(quant["id"])

    def _recompute_forecast(self) -> None:
        incoming: dict[int, float] = {}
        for order in self.records["purchase.order"].values():
            if order["state"] in ("purchase", "draft", "sent", "to approve"):
                for line_id in order["order_line"]:
                    line = self.lines[line_id]
                    incoming[line["product_id"]] = incoming.get(line["product_id"], 0.0) + line["qty"]
        for pid, product in self.records["product.product"].items():
            product["virtual_available"] = product["qty_available"] + incoming.get(pid, 0.0)

    # -- protocol ---------------------------------------------------------------------------------
    def _envelope(self, req_id: Any, error: OdooError, *, code: int = 200, message: str = "Odoo Server Error",
                  status: int = 200) -> JSONResponse:
        debug = ("Traceback (most recent call last):\n"
                 '  File "/opt/odoo/odoo/http.py", line 1788, in _serve_db\n'
                 "    return service_model.retrying(self._serve_ir_http, self.env)\n"
                 '  File "/opt/odoo/odoo/service/model.py", line 133, in retrying\n'
                 "    result = func()\n"
                 f"{error.name}: {error.message}\n")
        data = {"name": error.name, "debug": debug, "message": error.message, "arguments": [error.message],
                "context": {}}
        return JSONResponse({"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message,
                                                                        "data": data}}, status_code=status)

    def error_response(self, status: int, message: str) -> Response:
        return self._envelope(None, OdooError("werkzeug.exceptions.InternalServerError", message), status=status)

    def rate_limit_response(self, retry_after: float) -> Response:
        # werkzeug's TooManyRequests page, as Odoo Online's front answers a client that calls too fast
        body = ("<!doctype html>\n<html lang=en>\n<title>429 Too Many Requests</title>\n<h1>Too Many Requests</h1>\n"
                "<p>This user has exceeded an allotted request count. Try again later.</p>\n")
        return HTMLResponse(body, status_code=429, headers={"Retry-After": f"{retry_after:g}"})

    def routes(self) -> list[Route]:
        return [Route(RPC_PATH, self._jsonrpc, methods=["POST"])]

    async def _jsonrpc(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return HTMLResponse(
                "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n"
                f"<p>Request inferred type is compatible with ['http'] but {RPC_PATH} is type=json.</p>\n",
                status_code=400)
        try:
            payload = await request.json()
        except ValueError:
            return self._envelope(None, OdooError("werkzeug.exceptions.BadRequest", "Invalid JSON data"))
        if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
            return self._envelope(None, OdooError("werkzeug.exceptions.BadRequest", "Invalid JSON-RPC data"))
        req_id, params = payload.get("id"), payload["params"]
        try:
            with self.sandbox.lock:
                result = self._dispatch(params.get("service"), params.get("method"), list(params.get("args") or []))
        except OdooError as error:
            return self._envelope(req_id, error)
        return JSONResponse({"jsonrpc": "2.0", "id": req_id, "result": result})

    def _dispatch(self, service: Any, method: Any, args: list[Any]) -> Any:
        if service == "common":
            if method == "version":
                return {"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""],
                        "server_serie": "17.0", "protocol_version": 1}
            if method in ("login", "authenticate"):
                if len(args) < 3:
                    raise OdooError("builtins.TypeError", f"{method}() missing required positional arguments")
                self._check_db(args[0])
                return API_UID if (args[1], args[2]) == (self.user_login, self.api_key) else False
            raise OdooError("builtins.NameError", f"Method not available {method}")
        if service == "object" and method in ("execute_kw", "execute"):
            if len(args) < 5:
                raise OdooError("builtins.TypeError", f"{method}() missing required positional arguments")
            db, uid, key, model, model_method = args[:5]
            self._check_db(db)
            if uid != API_UID or key != self.api_key:
                raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
            if method == "execute":
                call_args, kwargs = list(args[5:]), {}
            else:
                call_args = list(args[5]) if len(args) > 5 and args[5] else []
                kwargs = dict(args[6]) if len(args) > 6 and args[6] else {}
            return self._execute(str(model), str(model_method), call_args, kwargs)
        raise OdooError("builtins.NameError", f"Method not available {method}" if service in ("common", "object", "db")
                        else f"Service {service!r} not found")

    def _check_db(self, db: Any) -> None:
        if db != self.db:
            raise OdooError("psycopg2.OperationalError",
                            'connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: '
                            f'FATAL:  database "{db}" does not exist')

    # -- models -----------------------------------------------------------------------------------
    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if model not in self.records:
            raise OdooError("odoo.exceptions.UserError", f"Object {model} doesn't exist")
        self.calls.append({"model": model, "method": method, "args": args, "kwargs": kwargs})
        if model in self.denied:
            raise OdooError("odoo.exceptions.AccessError",
                            f"You are not allowed to access '{LABELS[model]}' ({model}) records.\n\n"
                            f"This operation is allowed for the following groups:\n\t- {GROUPS[model]}\n\n"
                            "Contact your administrator to request access if necessary.")
        handlers: dict[str, Callable[[str, list[Any], dict[str, Any]], Any]] = {
            "search_read": self._search_read, "search": self._search, "search_count": self._search_count,
            "read": self._read, "create": self._create, "write": self._write,
            "action_apply_inventory": self._apply_inventory,
        }
        handler = handlers.get(method)
        if handler is None or method.startswith("_"):
            raise OdooError("builtins.AttributeError", f"The method '{model}.{method}' does not exist")
        try:
            return handler(model, args, kwargs)
        except TypeError as exc:
            raise OdooError("builtins.TypeError", f"{model}.{method}(): {exc}") from exc

    @staticmethod
    def _arg(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
        if name in kwargs:
            return kwargs[name]
        return args[index] if len(args) > index else default

    def _fields_of(self, model: str) -> set[str]:
        if model == "stock.quant":
            return {"id", *QUANT_FIELDS}
        stream = next(s for s, m in MODELS.items() if m == model)
        return {"id", *FIELDS[stream]}

    def _search_records(self, model: str, args: list[Any], kwargs: dict[str, Any], offset_index: int
                        ) -> list[dict[str, Any]]:
        domain = self._arg(args, kwargs, 0, "domain", []) or []
        offset = self._arg(args, kwargs, offset_index, "offset", 0) or 0
        limit = self._arg(args, kwargs, offset_index + 1, "limit", None)
        order = self._arg(args, kwargs, offset_index + 2, "order", None) or DEFAULT_ORDER[model]
        context = kwargs.get("context") or {}
        if not isinstance(domain, list):
            raise OdooError("builtins.ValueError", f"Invalid domain: {domain!r}")
        if not _is_int(offset):
            raise OdooError("psycopg2.errors.InvalidTextRepresentation",
                            f'invalid input syntax for type bigint: "{offset}"')
        if offset < 0:
            raise OdooError("psycopg2.errors.InvalidRowCountInResultOffsetClause", "OFFSET must not be negative")
        if limit not in (None, False) and not _is_int(limit):
            raise OdooError("psycopg2.errors.InvalidTextRepresentation",
                            f'invalid input syntax for type bigint: "{limit}"')
        if _is_int(limit) and limit < 0:
            raise OdooError("psycopg2.errors.InvalidRowCountInLimitClause", "LIMIT must not be negative")
        normalized = self._normalize(model, domain)
        rows = list(self.records[model].values())
        if "active" in self._fields_of(model) and context.get("active_test", True) and \
                not any(isinstance(leaf, list) and leaf[0] == "active" for leaf in normalized):
            rows = [r for r in rows if r["active"]]
        rows = [r for r in rows if self._matches(model, r, normalized)]
        rows = self._sorted(model, rows, str(order))
        return rows[offset:offset + limit] if limit else rows[offset:]

    def _project(self, model: str, rows: list[dict[str, Any]], fields: Any) -> list[dict[str, Any]]:
        known = self._fields_of(model)
        for field in fields or []:
            if field not in known:
                raise _invalid_field(model, field)
        wanted = [f for f in (fields or sorted(known)) if f != "id"]  # no fields: every field, as Odoo does
        return [{"id": r["id"], **{f: r[f] for f in wanted}} for r in rows]

    def _search_read(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        fields = self._arg(args, kwargs, 1, "fields", None)
        rows = self._search_records(model, args[:1] + args[2:], kwargs, 1)
        return self._project(model, rows, fields)

    def _search(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> list[int]:
        return [r["id"] for r in self._search_records(model, args, kwargs, 1)]

    def _search_count(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> int:
        return len(self._search_records(model, args[:1], {**kwargs, "limit": None, "offset": 0}, 1))

    def _read(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        ids = self._arg(args, kwargs, 0, "ids", [])
        rows = [self._existing(model, i) for i in ([ids] if _is_int(ids) else ids)]
        return self._project(model, rows, self._arg(args, kwargs, 1, "fields", None))

    def _existing(self, model: str, rid: Any) -> dict[str, Any]:
        row = self.records[model].get(rid) if _is_int(rid) else None
        if row is None:
            raise OdooError("odoo.exceptions.MissingError", "Record does not exist or has been deleted.\n"
                            f"(Record: {model}({rid},), User: {API_UID})")
        return row

    # -- domains ----------------------------------------------------------------------------------
    def _normalize(self, model: str, domain: list[Any]) -> list[Any]:
        """Validate every leaf as Odoo does before running the query; datetimes to the server format."""
        out: list[Any] = []
        for item in domain:
            if item in ("&", "|", "!"):
                out.append(item)
                continue
            if not isinstance(item, list | tuple) or len(item) != 3 or not isinstance(item[0], str):
                raise OdooError("builtins.ValueError", f"Invalid leaf {item!r}")
            path, operator, value = item
            if operator not in _OPERATORS:
                raise OdooError("builtins.ValueError", f"Invalid leaf {tuple(item)!r}")
            head, _, rest = path.partition(".")
            target_model, field = model, head
            if rest:
                if (model, head) not in RELATIONS:
                    raise _invalid_field(model, head)
                target_model, field = RELATIONS[(model, head)][0], rest
            if field not in self._fields_of(target_model):
                raise _invalid_field(target_model, field)
            if field in DATETIME_FIELDS and value is not False:
                value = _to_datetime_text(value, operator)
            out.append([path, operator, value])
        return out

    def _matches(self, model: str, record: dict[str, Any], domain: list[Any]) -> bool:
        position = 0

        def term() -> bool:
            nonlocal position
            item = domain[position]
            position += 1
            if item == "!":
                return not term()
            if item in ("&", "|"):
                left, right = term(), term()
                return (left and right) if item == "&" else (left or right)
            return self._leaf(model, record, item)

        results = []
        while position < len(domain):
            results.append(term())
        return all(results)

    def _leaf(self, model: str, record: dict[str, Any], leaf: list[Any]) -> bool:
        path, operator, value = leaf
        head, _, rest = path.partition(".")
        if rest:
            comodel, inverse = RELATIONS[(model, head)]
            related = [r for r in self.records[comodel].values() if r[inverse] and r[inverse][0] == record["id"]]
            return any(self._leaf(comodel, r, [rest, operator, value]) for r in related)
        return self._compare(record[path], operator, value)

    @staticmethod
    def _compare(current: Any, operator: str, value: Any) -> bool:
        if isinstance(current, list) and len(current) == 2 and _is_int(current[0]):  # many2one [id, name]
            current = current[1] if operator.endswith("like") else current[0]
        if operator in ("=", "!=", "<>"):
            equal = (current in (False, None)) if value is False else current == value
            return equal if operator == "=" else not equal
        if operator in ("in", "not in"):
            values = value if isinstance(value, list) else [value]
            found = current in values or (current in (False, None) and False in values)
            return found if operator == "in" else not found
        if operator.endswith("like"):
            text, pattern = str(current or ""), str(value)
            if operator.startswith("="):
                regex = re.escape(pattern).replace("%", ".*").replace("_", ".")
                found = re.fullmatch(regex, text, re.IGNORECASE if operator == "=ilike" else 0) is not None
                return found
            found = pattern.lower() in text.lower() if "ilike" in operator else pattern in text
            return not found if operator.startswith("not") else found
        if current in (False, None) or value in (False, None):
            return False  # SQL: NULL compares to nothing
        try:
            return {"<": current < value, ">": current > value, "<=": current <= value,
                    ">=": current >= value}[operator]
        except TypeError as exc:
            raise OdooError("psycopg2.errors.UndefinedFunction", f"operator does not exist: {exc}") from exc

    def _sorted(self, model: str, rows: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
        terms = []
        for part in order.split(","):
            match = _ORDER_TERM.match(part)
            if match is None or match.group(1) not in self._fields_of(model):
                raise OdooError("builtins.ValueError", f'Invalid "order" specified ({order}). A valid "order" '
                                "specification is a comma-separated list of valid field names (optionally "
                                "followed by asc/desc for the direction)")
            terms.append((match.group(1), (match.group(2) or "asc").lower() == "desc"))
        for field, descending in reversed(terms):
            def key(row: dict[str, Any], field: str = field) -> tuple[bool, Any]:
                value = row[field]
                if isinstance(value, list) and len(value) == 2:
                    value = value[1]
                null = value is None or (value is False and field not in BOOLEAN_FIELDS)
                return (null, "" if null else value)
            rows.sort(key=key, reverse=descending)  # NULLs last ascending, first descending, as in PostgreSQL
        return rows

    # -- writes -----------------------------------------------------------------------------------
    def _create(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        vals = self._arg(args, kwargs, 0, "vals_list", None)
        if vals is None:
            vals = self._arg(args, kwargs, 0, "vals", None)
        many = isinstance(vals, list)
        vals_list = vals if many else [vals]
        if not vals_list or not all(isinstance(v, dict) for v in vals_list):
            raise OdooError("builtins.TypeError", f"{model}.create() expects a dict of values or a list of them")
        if model == "purchase.order":
            ids = [self._create_purchase_order(v, now=_now()) for v in vals_list]
            self._recompute_forecast()
        elif model == "sale.order":
            ids = [self._create_sale_order(v, now=_now()) for v in vals_list]
        elif model == "stock.quant":
            ids = [self._create_quant(v, kwargs.get("context") or {}) for v in vals_list]
        else:
            raise OdooError("odoo.exceptions.AccessError",
                            f"You are not allowed to create '{LABELS[model]}' ({model}) records in this sandbox.")
        return ids if many else ids[0]

    def _check_vals(self, model: str, vals: dict[str, Any], writable: set[str]) -> None:
        for field in vals:
            if field not in writable:
                if field in self._fields_of(model):
                    raise OdooError("odoo.exceptions.UserError",
                                    f"The field '{field}' of {model} is computed or read-only and cannot be written.")
                raise _invalid_field(model, field)

    def _constraint(self, model: str, message: str) -> OdooError:
        return OdooError("odoo.exceptions.ValidationError", f"The operation cannot be completed: {message}")

    def _not_null(self, model: str, field: str, label: str) -> OdooError:
        return OdooError("odoo.exceptions.ValidationError",
                         "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n"
                         "- Delete: another model requires the record being deleted. If possible, archive it "
                         f"instead.\n\nModel: {LABELS[model]} ({model})\nField: {label} ({field})")

    _PO_WRITABLE = {"partner_id", "partner_ref", "origin", "date_order", "date_planned", "order_line", "state",
                    "currency_id"}

    def _check_origin(self, origin: Any, own_id: int | None) -> None:
        if origin in (None, False, ""):
            return
        for order in self.records["purchase.order"].values():
            if order["origin"] == origin and order["id"] != own_id:
                raise self._constraint("purchase.order", "a purchase order with this Source Document (origin) "
                                       f"already exists: {order['name']} has origin '{origin}'.")

    def _partner_ref(self, value: Any, model: str = "purchase.order", label: str = "Vendor") -> list[Any]:
        if not _is_int(value):
            raise self._not_null(model, "partner_id", label)
        partner = self.records["res.partner"].get(value)
        if partner is None:
            raise self._not_null(model, "partner_id", label)
        return [value, partner["display_name"]]

    def _apply_lines(self, order: dict[str, Any], commands: Any) -> None:
        if not isinstance(commands, list):
            raise OdooError("builtins.ValueError", "order_line expects a list of commands like [0, 0, {values}]")
        for command in commands:
            if not isinstance(command, list) or not command or command[0] not in (0, 1, 2):
                raise OdooError("builtins.ValueError", f"Unsupported one2many command {command!r} (sandbox: 0, 1, 2)")
            if command[0] == 2:
                self.lines.pop(command[1], None)
                order["order_line"] = [i for i in order["order_line"] if i != command[1]]
                continue
            values = command[2] if len(command) > 2 and isinstance(command[2], dict) else {}
            unknown = set(values) - {"product_id", "product_qty", "price_unit", "name", "date_planned"}
            if unknown:
                raise _invalid_field("purchase.order.line", sorted(unknown)[0])
            if command[0] == 1:
                line = self.lines.get(command[1])
                if line is None or line["order_id"] != order["id"]:
                    raise OdooError("odoo.exceptions.MissingError", "Record does not exist or has been deleted.\n"
                                    f"(Record: purchase.order.line({command[1]},), User: {API_UID})")
            else:
                product_id = values.get("product_id")
                if not _is_int(product_id) or product_id not in self.records["product.product"]:
                    raise self._not_null("purchase.order.line", "product_id", "Product")
                line = {"order_id": order["id"], "product_id": product_id, "qty": 1.0,
                        "price": self.records["product.product"][product_id]["standard_price"]}
                line_id = self._new_id("purchase.order.line")
                self.lines[line_id] = line
                order["order_line"].append(line_id)
            line["qty"] = float(values.get("product_qty", line["qty"]))
            line["price"] = float(values.get("price_unit", line["price"]))
        total = round(sum(self.lines[i]["qty"] * self.lines[i]["price"] for i in order["order_line"]), 2)
        order["amount_untaxed"] = order["amount_total"] = total
        first = self.lines[order["order_line"][0]]["product_id"] if order["order_line"] else None
        order["product_id"] = ([first, self.records["product.product"][first]["display_name"]] if first else False)

    def _create_purchase_order(self, vals: dict[str, Any], *, now: str) -> int:
        model = "purchase.order"
        self._check_vals(model, vals, self._PO_WRITABLE)
        partner = self._partner_ref(vals.get("partner_id"))
        self._check_origin(vals.get("origin"), None)
        oid = self._new_id(model)
        order = {
            "id": oid, "name": f"P{oid:05d}", "partner_id": partner, "partner_ref": vals.get("partner_ref", False),
            "origin": vals.get("origin", False), "date_order": _to_datetime_text(vals.get("date_order", now), "="),
            "date_planned": _to_datetime_text(vals.get("date_planned", now), "="),
            "state": vals.get("state", "draft"), "currency_id": CURRENCIES["USD"], "amount_untaxed": 0.0,
            "amount_total": 0.0, "order_line": [], "product_id": False, "create_date": now, "write_date": now,
        }
        self._apply_lines(order, vals.get("order_line", []))
        self.records[model][oid] = order
        return oid

    _SO_WRITABLE = {"partner_id", "client_order_ref", "date_order", "note"}

    def _create_sale_order(self, vals: dict[str, Any], *, now: str) -> int:
        """A quotation (state draft) without lines: what a fulfillment request from a payment creates.

        `client_order_ref` (Customer Reference) is unique in the sandbox, the constraint a database synced
        this way carries (stock Odoo has none), so a create sent twice is refused, never stored twice.
        """
        model = "sale.order"
        self._check_vals(model, vals, self._SO_WRITABLE)
        partner = self._partner_ref(vals.get("partner_id"), model, "Customer")
        ref = vals.get("client_order_ref")
        if ref not in (None, False, ""):
            for order in self.records[model].values():
                if order["client_order_ref"] == ref:
                    raise self._constraint(model, "a sales order with this Customer Reference (client_order_ref) "
                                           f"already exists: {order['name']} has reference '{ref}'.")
        oid = self._new_id(model)
        self.records[model][oid] = {
            "id": oid, "name": f"S{oid:05d}", "partner_id": partner, "client_order_ref": ref or False,
            "date_order": _to_datetime_text(vals.get("date_order", now), "="), "state": "draft",
            "invoice_status": "no", "currency_id": CURRENCIES["USD"], "amount_untaxed": 0.0, "amount_tax": 0.0,
            "amount_total": 0.0, "order_line": [], "user_id": [API_UID, "Integration"],
            "note": vals.get("note", False), "create_date": now, "write_date": now,
        }
        return oid

    def _write(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> bool:
        ids = self._arg(args, kwargs, 0, "ids", None)
        vals = self._arg(args, kwargs, 1, "vals", None)
        if model != "purchase.order":
            raise OdooError("odoo.exceptions.AccessError",
                            f"You are not allowed to modify '{LABELS[model]}' ({model}) records in this sandbox.")
        if not isinstance(vals, dict):
            raise OdooError("builtins.TypeError", "write() expects [ids] and a dict of values")
        orders = [self._existing(model, i) for i in ([ids] if _is_int(ids) else list(ids or []))]
        self._check_vals(model, vals, self._PO_WRITABLE)
        for order in orders:
            if "origin" in vals:
                self._check_origin(vals["origin"], order["id"])
        now = _now()
        for order in orders:
            for field, value in vals.items():
                if field == "order_line":
                    self._apply_lines(order, value)
                elif field == "partner_id":
                    order["partner_id"] = self._partner_ref(value)
                elif field in DATETIME_FIELDS:
                    order[field] = _to_datetime_text(value, "=")
                else:
                    order[field] = value
            order["write_date"] = now
        self._recompute_forecast()
        return True

    def _create_quant(self, vals: dict[str, Any], context: dict[str, Any]) -> int:
        if not context.get("inventory_mode"):
            raise OdooError("odoo.exceptions.UserError", "Quant's creation is restricted, you can't do this operation.")
        self._check_vals("stock.quant", vals, {"product_id", "location_id", "inventory_quantity",
                                               "inventory_quantity_auto_apply"})
        product_id = vals.get("product_id")
        product = self.records["product.product"].get(product_id) if _is_int(product_id) else None
        if product is None:
            raise self._not_null("stock.quant", "product_id", "Product")
        if product["type"] != "product":
            raise OdooError("odoo.exceptions.ValidationError", "Quants cannot be created for consumables or services.")
        if vals.get("location_id") != STOCK_LOCATION[0]:
            raise OdooError("odoo.exceptions.UserError",
                            f"The sandbox has one internal location: {STOCK_LOCATION[1]} (id {STOCK_LOCATION[0]}).")
        if "inventory_quantity_auto_apply" in vals:
            qid = self._set_quant(product_id, float(vals["inventory_quantity_auto_apply"]), _now())
            self._recompute_forecast()
            return qid
        quant = self._quant_for(product_id)
        if quant is None:  # counted but not applied yet: a quant with no quantity
            qid = self._set_quant(product_id, 0.0, _now())
            quant = self.records["stock.quant"][qid]
        quant["inventory_quantity"] = float(vals.get("inventory_quantity", 0.0))
        return int(quant["id"])

    def _apply_inventory(self, model: str, args: list[Any], kwargs: dict[str, Any]) -> bool:
        if model != "stock.quant":
            raise OdooError("builtins.AttributeError", f"The method '{model}.action_apply_inventory' does not exist")
        ids = self._arg(args, kwargs, 0, "ids", [])
        for qid in [ids] if _is_int(ids) else ids:
            quant = self._existing(model, qid)
            self._set_quant(quant["product_id"][0], quant["inventory_quantity"], _now())
        self._recompute_forecast()
        return True

    # -- ground truth and user activity ------------------------------------------------------------
    def deny(self, model: str) -> None:
        """Take read access to `model` away from the API user (tests of Odoo's AccessError)."""
        self.denied.add(model)

    def dump(self, stream: str) -> list[dict[str, Any]]:
        with self.sandbox.lock:
            rows = sorted(self.records[MODELS[stream]].values(), key=lambda r: r["id"])
            return [{"id": r["id"], **{f: r[f] for f in FIELDS[stream]}} for r in rows]

    def touch(self, stream: str, count: int) -> list[str]:
        touched = []
        now = _now()
        with self.sandbox.lock:
            for row in sorted(self.records[MODELS[stream]].values(), key=lambda r: r["id"])[:count]:
                if stream == "partners":
                    row["phone"] = f"+1555{7000000 + row['id']}"
                elif stream == "sale_orders":
                    row["note"] = f"<p>Delivery date confirmed with the customer ({now})</p>"
                elif stream == "products":
                    row["list_price"] = round(row["list_price"] + 1.0, 2)
                else:
                    row["partner_ref"] = f"VREF-{row['id']}-{now}"
                row["write_date"] = now
                touched.append(str(row["id"]))
        return touched


EMULATOR = OdooEmulator
