"""NetSuite SuiteTalk SOAP as a client sees it: a WSDL at `…/NetSuitePort_2024_2?wsdl`, `search` paged by
`searchPreferences.pageSize` and continued with `searchMoreWithId(searchId, pageIndex)`, `add`/`upsert` keyed by
`externalId`, Token-Based Auth verified on every request (signature, ±5 min timestamp, single-use nonce), and
NetSuite's faults (`invalidCredentialsFault`, `exceededConcurrentRequestLimitFault`) as SOAP 1.1 faults.

Records come from the shared world: every person is a customer, every invoice an invoice, every product an
inventory item; purchase orders are derived with `world.rng("netsuite")`.

Stock moves as it does in NetSuite: an item's `quantityOnHand` is read-only and computed from inventory
transactions, so a stock count is an `add` of an `InventoryAdjustment` (lines of item, location, `adjustQtyBy`).
The adjustment is a transaction with its own `lastModifiedDate` (found by a `TransactionSearchBasic` of type
`_inventoryAdjustment`); the item record is not edited, so the item's `lastModifiedDate` stays where it was (NetSuite's
own connector treats "the item's inventory changed at a location" as a trigger separate from the item's
lastModifiedDate). `touch` (the sandbox control route) still bumps an item's count and its lastModifiedDate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..connectors.netsuite import ENDPOINT, SYSTEM
from .base import Emulator
from .ids import token
from .soapkit import (
    SOAP11,
    XSI,
    BadRequest,
    add_text,
    body_and_header,
    child,
    children,
    envelope,
    fault11,
    parse_datetime,
    parse_request,
    soap_response,
    text,
    wsdl_response,
    xsi_type,
)

CORE = "urn:core_2024_2.platform.webservices.netsuite.com"
MSGS = "urn:messages_2024_2.platform.webservices.netsuite.com"
FAULTS = "urn:faults_2024_2.platform.webservices.netsuite.com"
RECORD_TYPES = {  # stream → (namespace, xsi:type, prefix, NetSuite record type name)
    "customers": ("urn:relationships_2024_2.lists.webservices.netsuite.com", "Customer", "listRel", "customer"),
    "inventory_items": ("urn:accounting_2024_2.lists.webservices.netsuite.com", "InventoryItem", "listAcct",
                        "inventoryItem"),
    "invoices": ("urn:sales_2024_2.transactions.webservices.netsuite.com", "Invoice", "tranSales", "invoice"),
    "purchase_orders": ("urn:purchases_2024_2.transactions.webservices.netsuite.com", "PurchaseOrder", "tranPurch",
                        "purchaseOrder"),
    "inventory_adjustments": ("urn:inventory_2024_2.transactions.webservices.netsuite.com", "InventoryAdjustment",
                              "tranInvt", "inventoryAdjustment"),
}
FIELDS = {  # schema order of each record type (the WSDL's xsd:sequence)
    "customers": ["entityId", "companyName", "firstName", "lastName", "email", "phone", "subsidiary", "currency",
                  "balance", "dateCreated", "lastModifiedDate"],
    "inventory_items": ["itemId", "displayName", "cost", "basePrice", "quantityOnHand", "quantityAvailable",
                        "isInactive", "lastModifiedDate"],
    "invoices": ["tranId", "entity", "tranDate", "dueDate", "currency", "status", "subTotal", "total", "amountPaid",
                 "amountRemaining", "memo", "lastModifiedDate", "itemList"],
    "purchase_orders": ["tranId", "entity", "tranDate", "currency", "status", "total", "memo", "lastModifiedDate",
                        "itemList"],
    "inventory_adjustments": ["tranId", "tranDate", "account", "adjLocation", "memo", "createdDate",
                              "lastModifiedDate", "inventoryList"],
}
LINE_FIELDS = ["item", "quantity", "rate", "amount"]
ADJUSTMENT_LINE_FIELDS = ["item", "location", "adjustQtyBy", "memo"]
#: sublist field → (its line element, the line's fields in schema order)
SUBLISTS = {"itemList": ("item", LINE_FIELDS), "inventoryList": ("inventory", ADJUSTMENT_LINE_FIELDS)}
SEARCH_STREAMS = {"CustomerSearchBasic": "customers", "ItemSearchBasic": "inventory_items"}
TRANSACTION_TYPES = {"_invoice": "invoices", "_purchaseOrder": "purchase_orders",
                     "_inventoryAdjustment": "inventory_adjustments"}
CURRENCIES = {"USD": "1", "GBP": "2", "EUR": "4"}
VENDORS = [("801", "Northwind Supplies"), ("802", "Contoso Components"), ("803", "Fabrikam Parts")]
LOCATIONS = {"1": "Main Warehouse"}  # the account's one inventory location (internalId → name)
ADJUSTMENT_ACCOUNT = "212"  # "Inventory Adjustments" in the sandbox's chart of accounts
TIMESTAMP_TOLERANCE = 300


def _ref(internal_id: str, name: str | None = None) -> dict[str, Any]:
    return {"internalId": internal_id, "name": name}


class NetSuiteEmulator(Emulator):
    name = "netsuite"
    prefixes = ("/services/NetSuitePort",)
    streams = ("customers", "invoices", "inventory_items", "purchase_orders", "inventory_adjustments")

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        values = {k: v.sandbox for k, v in SYSTEM.values.items()}
        self.account, self.consumer_key, self.token_id = (
            values["account_id"], values["consumer_key"], values["token_id"])
        self.signing_key = f"{values['consumer_secret']}&{values['token_secret']}".encode()
        self.nonces: set[str] = set()
        self.auth_failures: list[str] = []
        self.searches: dict[str, tuple[str, list[str], int]] = {}
        self.next_id = 100_000
        self.objects: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in self.streams}
        self._seed()

    # -- the world, as NetSuite holds it ------------------------------------------------------------
    def _seed(self) -> None:
        world, rng = self.world, self.world.rng("netsuite")
        anchor = world.anchor - timedelta(seconds=1)
        subsidiaries = {"US": "1", "GB": "2", "DE": "3"}
        for person in world.people:
            rid = str(1000 + person.key)
            unpaid = sum(i.amount for i in world.invoices if i.person is person and not i.paid)
            self.objects["customers"][rid] = {
                "internalId": rid, "externalId": None, "entityId": f"CUST{person.key:05d}",
                "companyName": person.company.name, "firstName": person.first_name, "lastName": person.last_name,
                "email": person.email, "phone": person.phone,
                "subsidiary": _ref(subsidiaries[person.country], person.subsidiary),
                "currency": _ref(CURRENCIES[person.currency], person.currency),
                "balance": unpaid / 100, "dateCreated": person.created_at,
                "lastModifiedDate": min(anchor, person.updated_at + timedelta(minutes=rng.randint(0, 90))),
            }
        for product in world.products:
            rid = str(200 + product.key)
            reserved = rng.randint(0, min(10, product.stock))
            self.objects["inventory_items"][rid] = {
                "internalId": rid, "externalId": None, "itemId": product.sku, "displayName": product.name,
                "cost": round(product.unit_price * 0.45) / 100, "basePrice": product.unit_price / 100,
                "quantityOnHand": float(product.stock), "quantityAvailable": float(product.stock - reserved),
                "isInactive": False,
                "lastModifiedDate": world.start + timedelta(seconds=rng.randrange(world.days * 86400)),
            }
        for invoice in world.invoices:
            rid = str(5000 + invoice.key)
            total = invoice.amount / 100
            self.objects["invoices"][rid] = {
                "internalId": rid, "externalId": None, "tranId": invoice.number,
                "entity": _ref(str(1000 + invoice.person.key), invoice.person.company.name),
                "tranDate": invoice.issued_at, "dueDate": invoice.due_at,
                "currency": _ref(CURRENCIES[invoice.currency], invoice.currency),
                "status": "Paid In Full" if invoice.paid else "Open", "subTotal": total, "total": total,
                "amountPaid": total if invoice.paid else 0.0, "amountRemaining": 0.0 if invoice.paid else total,
                "memo": None,
                "lastModifiedDate": min(anchor, invoice.issued_at + timedelta(minutes=rng.randint(1, 600))),
                "itemList": [self._line(line.product.key, line.product.name, line.quantity, line.product.unit_price)
                             for line in invoice.lines],
            }
        for number in range(max(6, len(world.products) * 2)):
            rid = str(7000 + number)
            vendor = rng.choice(VENDORS)
            products = rng.sample(world.products, rng.randint(1, 3))
            lines = [self._line(p.key, p.name, rng.randint(5, 50), round(p.unit_price * 0.45)) for p in products]
            ordered = world.start + timedelta(seconds=rng.randrange(world.days * 86400))
            self.objects["purchase_orders"][rid] = {
                "internalId": rid, "externalId": None, "tranId": f"PO{1001 + number}", "entity": _ref(*vendor),
                "tranDate": ordered, "currency": _ref("1", "USD"),
                "status": rng.choice(["Pending Receipt", "Pending Bill", "Fully Billed"]),
                "total": round(sum(line["amount"] for line in lines), 2), "memo": None,
                "lastModifiedDate": min(anchor, ordered + timedelta(minutes=rng.randint(1, 600))),
                "itemList": lines,
            }

    @staticmethod
    def _line(product_key: int, name: str, quantity: int, unit_minor: int) -> dict[str, Any]:
        return {"item": _ref(str(200 + product_key), name), "quantity": float(quantity),
                "rate": f"{unit_minor / 100:.2f}", "amount": round(quantity * unit_minor / 100, 2)}

    # -- protocol -------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [Route(ENDPOINT, self._endpoint, methods=["GET", "POST"])]

    def error_response(self, status: int, message: str) -> Response:
        return self._fault("UNEXPECTED_ERROR", f"An unexpected error occurred. ({message})", "unexpectedErrorFault",
                           status=status)

    def rate_limit_response(self, retry_after: float) -> Response:
        return self._fault("WS_REQUEST_BLOCKED", "Request blocked: the account has exceeded its concurrent request "
                           "limit. Retry later.", "exceededConcurrentRequestLimitFault")

    @staticmethod
    def _fault(code: str, message: str, kind: str, status: int = 500) -> Response:
        detail = etree.Element(f"{{{FAULTS}}}{kind}", nsmap={"platformFaults": FAULTS})
        etree.SubElement(detail, f"{{{FAULTS}}}code").text = code
        etree.SubElement(detail, f"{{{FAULTS}}}message").text = message
        return fault11("soapenv:Server.userException", message, detail, status=status)

    def _login_fault(self, reason: str) -> Response:
        self.auth_failures.append(reason)
        return self._fault("INVALID_LOGIN_ATTEMPT", "Invalid login attempt.", "invalidCredentialsFault")

    def _verify_passport(self, header: etree._Element | None) -> Response | None:
        passport = child(header, "tokenPassport")
        if passport is None:
            return self._login_fault("no tokenPassport header")
        fields = {name: text(passport, name) or "" for name in
                  ("account", "consumerKey", "token", "nonce", "timestamp", "signature")}
        signature_node = child(passport, "signature")
        algorithm = signature_node.get("algorithm") if signature_node is not None else None
        if algorithm != "HMAC-SHA256":
            return self._login_fault(f"unsupported signature algorithm {algorithm!r}")
        if (fields["account"], fields["consumerKey"], fields["token"]) != (
                self.account, self.consumer_key, self.token_id):
            return self._login_fault("unknown account, consumer key or token")
        base = "&".join(fields[k] for k in ("account", "consumerKey", "token", "nonce", "timestamp"))
        expected = base64.b64encode(hmac.new(self.signing_key, base.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, fields["signature"]):
            return self._login_fault("bad signature")
        if not fields["timestamp"].isdigit() or abs(time.time() - int(fields["timestamp"])) > TIMESTAMP_TOLERANCE:
            return self._login_fault("stale timestamp")
        with self.sandbox.lock:
            if fields["nonce"] in self.nonces:
                return self._login_fault("reused nonce")
            self.nonces.add(fields["nonce"])
        return None

    async def _endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            return wsdl_response("netsuite.wsdl", request, ENDPOINT)
        try:
            root, ns = parse_request(await request.body())
            operation, header = body_and_header(root, ns)
        except (BadRequest, StopIteration) as exc:
            return fault11("soapenv:Client", f"Invalid request: {exc}")
        denied = self._verify_passport(header)
        if denied:
            return denied
        name = etree.QName(operation).localname
        if name == "search":
            return self._search(operation, header)
        if name == "searchMoreWithId":
            return self._search_more(operation)
        if name in ("add", "upsert"):
            return self._write(name, operation)
        return fault11("soapenv:Client", f"Unsupported operation {name}")

    # -- search ---------------------------------------------------------------------------------------
    def _search(self, operation: etree._Element, header: etree._Element | None) -> Response:
        criteria = child(operation, "searchRecord")
        if criteria is None:
            return fault11("soapenv:Client", "search requires a searchRecord")
        kind = xsi_type(criteria)
        streams: list[str] = []
        if kind in SEARCH_STREAMS:
            streams = [SEARCH_STREAMS[kind]]
        elif kind == "TransactionSearchBasic":
            wanted = [v.text for v in children(child(criteria, "type"), "searchValue")]
            streams = [TRANSACTION_TYPES[w] for w in wanted if w in TRANSACTION_TYPES] or list(
                TRANSACTION_TYPES.values())
        else:
            return self._result("searchResponse", self._status(False, "INVALID_SRCH_TYPE",
                                                                f"Unsupported search type {kind}"))
        rows = [(s, r) for s in streams for r in self.objects[s].values()]
        modified = child(criteria, "lastModifiedDate")
        if modified is not None:
            rows = [(s, r) for s, r in rows if self._matches(r["lastModifiedDate"], modified)]
        rows.sort(key=lambda sr: int(sr[1]["internalId"]))
        size_text = text(child(header, "searchPreferences"), "pageSize")
        page_size = min(1000, max(5, int(size_text))) if size_text and size_text.isdigit() else 1000
        search_id = f"WEBSERVICES_{self.account}_{token(time.time_ns(), length=24)}"
        with self.sandbox.lock:
            self.searches[search_id] = (streams[0], [f"{s}:{r['internalId']}" for s, r in rows], page_size)
        return self._page("searchResponse", search_id, 1)

    @staticmethod
    def _matches(value: datetime, field: etree._Element) -> bool:
        operator = field.get("operator", "")
        first, second = text(field, "searchValue"), text(field, "searchValue2")
        a = parse_datetime(first) if first else None
        b = parse_datetime(second) if second else None
        tests = {"onOrAfter": lambda: a is not None and value >= a, "after": lambda: a is not None and value > a,
                 "onOrBefore": lambda: a is not None and value <= a, "before": lambda: a is not None and value < a,
                 "within": lambda: a is not None and b is not None and a <= value <= b}
        return tests.get(operator, lambda: False)()

    def _search_more(self, operation: etree._Element) -> Response:
        search_id, index = text(operation, "searchId"), text(operation, "pageIndex")
        if not search_id or search_id not in self.searches:
            return self._result("searchMoreWithIdResponse",
                                self._status(False, "INVALID_SEARCH", "The search has expired or does not exist."))
        if not index or not index.isdigit():
            return fault11("soapenv:Client", "pageIndex must be an integer")
        return self._page("searchMoreWithIdResponse", search_id, int(index))

    def _page(self, response_name: str, search_id: str, index: int) -> Response:
        _, keys, page_size = self.searches[search_id]
        total_pages = max(1, math.ceil(len(keys) / page_size))
        if index < 1 or index > total_pages:
            return self._result(response_name, self._status(
                False, "INVALID_PAGE_INDEX", f"pageIndex must be between 1 and {total_pages}"))
        result = etree.Element(f"{{{CORE}}}searchResult", nsmap={"platformCore": CORE})
        result.append(self._status(True))
        for tag, value in (("totalRecords", len(keys)), ("pageSize", page_size), ("totalPages", total_pages),
                           ("pageIndex", index), ("searchId", search_id)):
            add_text(result, f"{{{CORE}}}{tag}", value)
        record_list = etree.SubElement(result, f"{{{CORE}}}recordList")
        for key in keys[(index - 1) * page_size:index * page_size]:
            stream, rid = key.split(":", 1)
            record = self.objects[stream].get(rid)
            if record is not None:
                record_list.append(self._record_xml(stream, record))
        return self._result(response_name, result)

    # -- writes ---------------------------------------------------------------------------------------
    def _write(self, name: str, operation: etree._Element) -> Response:
        node = child(operation, "record")
        response_name = f"{name}Response"
        if node is not None and xsi_type(node) == "InventoryAdjustment" and name == "add":
            return self._add_adjustment(node, response_name)
        if node is None or xsi_type(node) != "PurchaseOrder":
            return self._write_result(response_name, self._status(
                False, "INVALID_RCRD_TYPE", "The sandbox writes PurchaseOrder records (add, upsert) and "
                "InventoryAdjustment records (add) only."), None)
        external_id = node.get("externalId")
        if name == "upsert" and not external_id:
            return self._write_result(response_name, self._status(
                False, "USER_ERROR", "upsert requires the record's externalId."), None)
        fields = self._read_record(node)
        with self.sandbox.lock:
            existing = next((r for r in self.objects["purchase_orders"].values()
                             if external_id and r.get("externalId") == external_id), None)
            if existing is not None and name == "add":
                return self._write_result(response_name, self._status(
                    False, "DUP_RCRD", f"A record with externalId {external_id} already exists."), None)
            if existing is None:
                self.next_id += 1
                existing = {"internalId": str(self.next_id), "externalId": external_id,
                            "tranId": f"PO{self.next_id}", "status": "Pending Receipt", "currency": _ref("1", "USD"),
                            "memo": None, "itemList": []}
                self.objects["purchase_orders"][existing["internalId"]] = existing
            existing.update({k: v for k, v in fields.items() if v is not None})
            existing.setdefault("tranDate", datetime.now(UTC))
            existing["total"] = round(sum(line.get("amount") or 0 for line in existing["itemList"]), 2)
            existing["lastModifiedDate"] = datetime.now(UTC)
        ref = {"internalId": existing["internalId"], "externalId": external_id, "type": "purchaseOrder"}
        return self._write_result(response_name, self._status(True), ref)

    def _add_adjustment(self, node: etree._Element, response_name: str) -> Response:
        """A stock count or correction: each line moves one item's on-hand quantity at a location by `adjustQtyBy`.
        The item record itself is not edited (its lastModifiedDate stays); the adjustment is the change."""
        def refused(code: str, message: str) -> Response:
            return self._write_result(response_name, self._status(False, code, message), None)

        external_id = node.get("externalId")
        account = child(node, "account")
        if account is None or not account.get("internalId"):
            return refused("USER_ERROR", "Please enter value(s) for: Adjustment Account")
        header_location = child(node, "adjLocation")
        lines = []
        for line in children(child(node, "inventoryList"), "inventory"):
            item, location = child(line, "item"), child(line, "location")
            by = text(line, "adjustQtyBy")
            item_id = item.get("internalId") if item is not None else None
            location_id = (location.get("internalId") if location is not None else None) or (
                header_location.get("internalId") if header_location is not None else None)
            if not item_id:
                return refused("USER_ERROR", "Please enter value(s) for: Item")
            if item_id not in self.objects["inventory_items"]:
                return refused("INVALID_KEY_OR_REF", f"Invalid item reference key {item_id}.")
            if location_id not in LOCATIONS:
                return refused("INVALID_KEY_OR_REF", f"Invalid location reference key {location_id}.")
            try:
                quantity = float(by or "")
            except ValueError:
                return refused("USER_ERROR", "Please enter value(s) for: Adjust Qty. By")
            lines.append({"item": _ref(item_id, self.objects["inventory_items"][item_id]["displayName"]),
                          "location": _ref(location_id, LOCATIONS[location_id]), "adjustQtyBy": quantity,
                          "memo": text(line, "memo")})
        if not lines:
            return refused("USER_ERROR", "You must enter at least one line item for this transaction.")
        now = datetime.now(UTC)
        with self.sandbox.lock:
            if external_id and any(r.get("externalId") == external_id
                                   for r in self.objects["inventory_adjustments"].values()):
                return refused("DUP_RCRD", f"A record with externalId {external_id} already exists.")
            self.next_id += 1
            rid = str(self.next_id)
            tran_date = text(node, "tranDate")
            self.objects["inventory_adjustments"][rid] = {
                "internalId": rid, "externalId": external_id, "tranId": f"ADJ{rid}",
                "tranDate": parse_datetime(tran_date) if tran_date else now,
                "account": _ref(account.get("internalId") or "", text(account, "name")),
                "adjLocation": _ref(header_location.get("internalId") or "", text(header_location, "name"))
                if header_location is not None else None,
                "memo": text(node, "memo"), "createdDate": now, "lastModifiedDate": now, "inventoryList": lines,
            }
            for line in lines:
                item = self.objects["inventory_items"][line["item"]["internalId"]]
                item["quantityOnHand"] = float(item["quantityOnHand"]) + line["adjustQtyBy"]
                item["quantityAvailable"] = float(item["quantityAvailable"]) + line["adjustQtyBy"]
        ref = {"internalId": rid, "externalId": external_id, "type": "inventoryAdjustment"}
        return self._write_result(response_name, self._status(True), ref)

    def _read_record(self, node: etree._Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in FIELDS["purchase_orders"]:
            field = child(node, name)
            if field is None:
                continue
            if name == "itemList":
                out[name] = [self._read_line(item) for item in children(field, "item")]
            elif name in ("entity", "currency"):
                out[name] = _ref(field.get("internalId") or "", text(field, "name"))
            elif name == "tranDate":
                out[name] = parse_datetime(field.text or "")
            elif name == "total":
                continue
            else:
                out[name] = field.text
        return out

    @staticmethod
    def _read_line(item: etree._Element) -> dict[str, Any]:
        ref = child(item, "item")
        quantity = float(text(item, "quantity") or 0)
        rate = text(item, "rate") or "0"
        return {"item": _ref(ref.get("internalId") or "", text(ref, "name")) if ref is not None else None,
                "quantity": quantity, "rate": rate, "amount": round(quantity * float(rate), 2)}

    # -- XML ------------------------------------------------------------------------------------------
    @staticmethod
    def _status(ok: bool, code: str | None = None, message: str | None = None) -> etree._Element:
        status = etree.Element(f"{{{CORE}}}status", nsmap={"platformCore": CORE})
        status.set("isSuccess", "true" if ok else "false")
        if code:
            detail = etree.SubElement(status, f"{{{CORE}}}statusDetail", type="ERROR")
            add_text(detail, f"{{{CORE}}}code", code)
            add_text(detail, f"{{{CORE}}}message", message or code)
        return status

    def _result(self, response_name: str, content: etree._Element) -> Response:
        wrapper = etree.Element(f"{{{MSGS}}}{response_name}", nsmap={"platformMsgs": MSGS})
        if content.tag == f"{{{CORE}}}status":  # an in-band failure: an empty searchResult with its status
            result = etree.SubElement(wrapper, f"{{{CORE}}}searchResult", nsmap={"platformCore": CORE})
            result.append(content)
        else:
            wrapper.append(content)
        return soap_response(SOAP11, envelope(SOAP11, wrapper))

    def _write_result(self, response_name: str, status: etree._Element, ref: dict[str, Any] | None) -> Response:
        wrapper = etree.Element(f"{{{MSGS}}}{response_name}", nsmap={"platformMsgs": MSGS})
        write = etree.SubElement(wrapper, f"{{{MSGS}}}writeResponse")
        write.append(status)
        if ref is not None:
            base = etree.SubElement(write, f"{{{MSGS}}}baseRef", nsmap={"platformCore": CORE})
            base.set(f"{{{XSI}}}type", "platformCore:RecordRef")
            for key, value in ref.items():
                if value:
                    base.set(key, value)
        return soap_response(SOAP11, envelope(SOAP11, wrapper))

    def _record_xml(self, stream: str, record: dict[str, Any]) -> etree._Element:
        ns, type_name, prefix, _ = RECORD_TYPES[stream]
        node = etree.Element(f"{{{CORE}}}record", nsmap={prefix: ns, "xsi": XSI})
        node.set(f"{{{XSI}}}type", f"{prefix}:{type_name}")
        node.set("internalId", record["internalId"])
        if record.get("externalId"):
            node.set("externalId", record["externalId"])
        for name in FIELDS[stream]:
            value = record.get(name)
            if value is None:
                continue
            if name in SUBLISTS:
                line_tag, line_fields = SUBLISTS[name]
                item_list = etree.SubElement(node, f"{{{ns}}}{name}")
                for line in value:
                    item = etree.SubElement(item_list, f"{{{ns}}}{line_tag}")
                    for line_field in line_fields:
                        if line.get(line_field) is not None:
                            self._field(item, ns, line_field, line[line_field])
            else:
                self._field(node, ns, name, value)
        return node

    @staticmethod
    def _field(parent: etree._Element, ns: str, name: str, value: Any) -> None:
        if isinstance(value, dict):  # RecordRef
            ref = etree.SubElement(parent, f"{{{ns}}}{name}", internalId=value["internalId"])
            if value.get("name"):
                add_text(ref, f"{{{CORE}}}name", value["name"])
            return
        add_text(parent, f"{{{ns}}}{name}", value)

    # -- ground truth ---------------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        rows = sorted(self.objects[stream].values(), key=lambda r: int(r["internalId"]))
        return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]

    def touch(self, stream: str, count: int) -> list[str]:
        touched = []
        for record in sorted(self.objects[stream].values(), key=lambda r: int(r["internalId"]))[:count]:
            if stream == "inventory_items":
                record["quantityOnHand"] = float(record["quantityOnHand"]) + 1
            elif stream == "customers":
                record["balance"] = round(float(record["balance"]) + 1, 2)
            else:
                record["memo"] = f"touched {time.time_ns()}"
            record["lastModifiedDate"] = datetime.now(UTC)
            touched.append(record["internalId"])
        return touched


EMULATOR = NetSuiteEmulator
