"""The older ERP platform's inventory web service: SOAP 1.2, document/literal, WS-Security UsernameToken
(plain or digest; a stale `Created` or a reused `Nonce` is refused), paged reads with `changedSince`, and an
idempotent `CreatePurchaseOrder` keyed by `poNumber`. Faults are SOAP 1.2 faults (`env:Sender` as HTTP 400,
`env:Receiver` as 500); an overloaded server answers `env:Receiver/erp:ServerBusy`.

Stock levels are the world's products in three warehouses; purchase orders derive from `world.rng("legacy_erp")`.

Stock changes: the inventory web service only reads stock (its WSDL has no operation that writes a count); people
book receipts and counts in the ERP's own screens. The sandbox stands in for those screens with a control route,
`POST /_sandbox/legacy_erp/stock_levels/simulate` with `{"sku", "warehouse", "onHand"}` (a count: the new on-hand
figure) or `{"sku", "warehouse", "adjustBy"}` (a receipt or a write-off), which moves `updatedAt` as the ERP does, so
`GetStockLevels(changedSince)` returns the row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..connectors.legacy_erp import ENDPOINT, NS, SYSTEM
from .base import Emulator
from .soapkit import (
    SOAP12,
    BadRequest,
    add_text,
    body_and_header,
    child,
    children,
    envelope,
    fault12,
    parse_datetime,
    parse_request,
    soap_response,
    text,
    wsdl_response,
)

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WAREHOUSES = ("MAIN", "EAST", "WEST")
SUPPLIERS = ("Northwind Supplies", "Contoso Components", "Fabrikam Parts", "Wide World Importers")
STOCK_FIELDS = ["id", "sku", "description", "warehouse", "onHand", "reserved", "available", "reorderPoint",
                "updatedAt"]
PO_FIELDS = ["poNumber", "supplier", "warehouse", "status", "orderDate", "currency", "total", "lines", "updatedAt"]
CREATED_TOLERANCE = 300
PREFIXES = {"wsse": WSSE, "erp": NS}


class LegacyErpEmulator(Emulator):
    name = "legacy_erp"
    prefixes = ("/ws/inventory/",)
    streams = ("stock_levels", "purchase_orders")

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        self.username = SYSTEM.values["username"].sandbox
        self.password = SYSTEM.values["password"].sandbox
        self.nonces: set[str] = set()
        self.auth_failures: list[str] = []
        self.creates = 0
        rng = world.rng("legacy_erp")
        anchor = world.anchor - timedelta(seconds=1)
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"stock_levels": {}, "purchase_orders": {}}
        for product in world.products:
            for warehouse in WAREHOUSES:
                on_hand = rng.randint(0, 300)
                reserved = rng.randint(0, min(20, on_hand))
                key = f"{warehouse}:{product.sku}"
                self.objects["stock_levels"][key] = {
                    "id": key, "sku": product.sku, "description": product.name, "warehouse": warehouse,
                    "onHand": on_hand, "reserved": reserved, "available": on_hand - reserved,
                    "reorderPoint": rng.choice([10, 25, 50]),
                    "updatedAt": min(anchor, world.start + timedelta(seconds=rng.randrange(world.days * 86400))),
                }
        for number in range(14):
            products = rng.sample(world.products, rng.randint(1, 3))
            lines = [{"sku": p.sku, "quantity": rng.randint(10, 100),
                      "unitPrice": Decimal(round(p.unit_price * 0.4)) / 100} for p in products]
            ordered = world.start + timedelta(seconds=rng.randrange(world.days * 86400))
            po = f"ERP-PO-{5001 + number}"
            self.objects["purchase_orders"][po] = {
                "poNumber": po, "supplier": rng.choice(SUPPLIERS), "warehouse": rng.choice(WAREHOUSES),
                "status": rng.choice(["OPEN", "PARTIAL", "RECEIVED"]), "orderDate": ordered.date(),
                "currency": "USD", "total": sum((ln["quantity"] * ln["unitPrice"] for ln in lines), Decimal(0)),
                "lines": lines, "updatedAt": min(anchor, ordered + timedelta(minutes=rng.randint(5, 900))),
            }

    # -- protocol -------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [Route(ENDPOINT, self._endpoint, methods=["GET", "POST"])]

    def error_response(self, status: int, message: str) -> Response:
        return fault12("env:Receiver", "erp:ServerBusy", f"The server is busy ({message}); retry later.",
                       status=status, nsmap=PREFIXES)

    def rate_limit_response(self, retry_after: float) -> Response:
        response = fault12("env:Receiver", "erp:ServerBusy", "Too many concurrent sessions; retry later.", status=503,
                           nsmap=PREFIXES)
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def _auth_fault(self, reason: str) -> Response:
        self.auth_failures.append(reason)
        return fault12("env:Sender", "wsse:FailedAuthentication",
                       "The security token could not be authenticated or authorized", nsmap=PREFIXES)

    def _verify(self, header: etree._Element | None) -> Response | None:
        security = child(header, "Security")
        token = child(security, "UsernameToken")
        if token is None:
            return self._auth_fault("no UsernameToken")
        password_node = child(token, "Password")
        given = (password_node.text or "") if password_node is not None else ""
        kind = (password_node.get("Type") or "#PasswordText") if password_node is not None else ""
        if text(token, "Username") != self.username:
            return self._auth_fault("unknown user")
        if kind.endswith("#PasswordDigest"):
            nonce, created = text(token, "Nonce") or "", text(token, "Created") or ""
            try:
                raw_nonce = base64.b64decode(nonce)
                age = abs((datetime.now(UTC) - parse_datetime(created)).total_seconds())
            except ValueError:
                return self._auth_fault("malformed nonce or created")
            digest = base64.b64encode(hashlib.sha1(raw_nonce + created.encode() + self.password.encode()).digest())
            if not hmac.compare_digest(digest.decode(), given):
                return self._auth_fault("bad password digest")
            if age > CREATED_TOLERANCE:
                return self._auth_fault("stale Created")
            with self.sandbox.lock:
                if nonce in self.nonces:
                    return self._auth_fault("reused nonce")
                self.nonces.add(nonce)
        elif not hmac.compare_digest(given, self.password):
            return self._auth_fault("bad password")
        return None

    async def _endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return wsdl_response("legacy_erp.wsdl", request, ENDPOINT)
        try:
            root, ns = parse_request(await request.body())
            operation, header = body_and_header(root, ns)
        except (BadRequest, StopIteration) as exc:
            return fault12("env:Sender", None, f"Invalid request: {exc}")
        if ns != SOAP12:
            return fault12("env:Sender", "env:VersionMismatch", "This service speaks SOAP 1.2 only.")
        denied = self._verify(header)
        if denied:
            return denied
        name = etree.QName(operation).localname
        if name == "GetStockLevels":
            return self._list(operation, "stock_levels", "stockLevels", "stockLevel", STOCK_FIELDS)
        if name == "GetPurchaseOrders":
            return self._list(operation, "purchase_orders", "purchaseOrders", "purchaseOrder", PO_FIELDS)
        if name == "CreatePurchaseOrder":
            return self._create(operation)
        return fault12("env:Sender", None, f"Unknown operation {name}")

    def _list(self, operation: etree._Element, stream: str, wrapper: str, item: str, fields: list[str]) -> Response:
        page_text, size_text = text(operation, "page") or "1", text(operation, "pageSize") or "50"
        if not page_text.isdigit() or not size_text.isdigit() or int(page_text) < 1 or not 1 <= int(size_text) <= 500:
            return fault12("env:Sender", "erp:InvalidPaging", "page must be >= 1 and pageSize between 1 and 500",
                           nsmap=PREFIXES)
        page, size = int(page_text), int(size_text)
        rows = sorted(self.objects[stream].values(), key=lambda r: str(r[fields[0]]))
        since = text(operation, "changedSince")
        if since:
            rows = [r for r in rows if r["updatedAt"] >= parse_datetime(since)]
        total_pages = max(1, math.ceil(len(rows) / size))
        response = etree.Element(f"{{{NS}}}{operation.tag.split('}')[1]}Response", nsmap={"erp": NS})
        for tag, value in (("page", page), ("pageSize", size), ("totalPages", total_pages),
                           ("totalRecords", len(rows))):
            add_text(response, f"{{{NS}}}{tag}", value)
        container = etree.SubElement(response, f"{{{NS}}}{wrapper}")
        for row in rows[(page - 1) * size:page * size]:
            container.append(self._record(item, row, fields))
        return soap_response(SOAP12, envelope(SOAP12, response))

    @staticmethod
    def _record(tag: str, row: dict[str, Any], fields: list[str]) -> etree._Element:
        node = etree.Element(f"{{{NS}}}{tag}")
        for name in fields:
            value = row.get(name)
            if value is None:
                continue
            if name == "lines":
                lines = etree.SubElement(node, f"{{{NS}}}lines")
                for line in value:
                    line_node = etree.SubElement(lines, f"{{{NS}}}line")
                    for line_field in ("sku", "quantity", "unitPrice"):
                        add_text(line_node, f"{{{NS}}}{line_field}", line[line_field])
            elif isinstance(value, date) and not isinstance(value, datetime):
                add_text(node, f"{{{NS}}}{name}", value.isoformat())
            else:
                add_text(node, f"{{{NS}}}{name}", value)
        return node

    def _create(self, operation: etree._Element) -> Response:
        order = child(operation, "purchaseOrder")
        po_number = text(order, "poNumber")
        if order is None or not po_number or not text(order, "supplier"):
            return fault12("env:Sender", "erp:ValidationFailed", "purchaseOrder needs poNumber and supplier",
                           nsmap=PREFIXES)
        with self.sandbox.lock:
            existing = self.objects["purchase_orders"].get(po_number)
            result = "exists"
            if existing is None:
                lines = [{"sku": text(ln, "sku") or "", "quantity": int(text(ln, "quantity") or 0),
                          "unitPrice": Decimal(text(ln, "unitPrice") or "0")}
                         for ln in children(child(order, "lines"), "line")]
                order_date = text(order, "orderDate")
                existing = {
                    "poNumber": po_number, "supplier": text(order, "supplier"),
                    "warehouse": text(order, "warehouse") or "MAIN", "status": "OPEN",
                    "orderDate": date.fromisoformat(order_date[:10]) if order_date else datetime.now(UTC).date(),
                    "currency": text(order, "currency") or "USD",
                    "total": sum((ln["quantity"] * ln["unitPrice"] for ln in lines), Decimal(0)), "lines": lines,
                    "updatedAt": datetime.now(UTC),
                }
                self.objects["purchase_orders"][po_number] = existing
                self.creates += 1
                result = "created"
        response = etree.Element(f"{{{NS}}}CreatePurchaseOrderResponse", nsmap={"erp": NS})
        add_text(response, f"{{{NS}}}result", result)
        response.append(self._record("purchaseOrder", existing, PO_FIELDS))
        return soap_response(SOAP12, envelope(SOAP12, response))

    # -- the ERP's own screens (the sandbox control route) -----------------------------------------------
    def simulate(self, stream: str, request: dict[str, Any]) -> dict[str, Any]:
        """A clerk books stock: `onHand` (a count, the new figure) or `adjustBy` (a receipt or a write-off) for one
        SKU in one warehouse. Answers the stock level as `GetStockLevels` now returns it."""
        if stream != "stock_levels":
            raise NotImplementedError(f"{self.name} cannot simulate {stream}")
        key = f"{request['warehouse']}:{request['sku']}"
        if ("onHand" in request) == ("adjustBy" in request):
            raise ValueError("give exactly one of onHand (a count) and adjustBy (a receipt or write-off)")
        with self.sandbox.lock:
            row = self.objects["stock_levels"][key]
            if "onHand" in request:
                row["onHand"] = int(request["onHand"])
            else:
                row["onHand"] += int(request["adjustBy"])
            row["reserved"] = min(row["reserved"], max(row["onHand"], 0))
            row["available"] = row["onHand"] - row["reserved"]
            row["updatedAt"] = max(datetime.now(UTC), row["updatedAt"] + timedelta(microseconds=1))
            return self._plain(row)

    # -- ground truth ---------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        key = "id" if stream == "stock_levels" else "poNumber"
        rows = sorted(self.objects[stream].values(), key=lambda r: r[key])
        return [self._plain(r) for r in rows]

    @staticmethod
    def _plain(row: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else str(v) if isinstance(v, Decimal) else v)
                for k, v in row.items() if k != "lines"}

    def touch(self, stream: str, count: int) -> list[str]:
        key = "id" if stream == "stock_levels" else "poNumber"
        touched = []
        for row in sorted(self.objects[stream].values(), key=lambda r: r[key])[:count]:
            if stream == "stock_levels":
                row["onHand"] += 1
                row["available"] = row["onHand"] - row["reserved"]
            else:
                row["status"] = "RECEIVED" if row["status"] != "RECEIVED" else "CLOSED"
            row["updatedAt"] = datetime.now(UTC) + timedelta(microseconds=time.time_ns() % 1000)
            touched.append(row[key])
        return touched


EMULATOR = LegacyErpEmulator
