"""SAP S/4HANA Cloud's OData V2 APIs as a client sees them, on the real paths under `/sap/opu/odata/sap/`.

What is emulated, because the connector (and any OData V2 client) depends on it:
- Verbose JSON `{"d": {"results": [...], "__count": "N", "__next": "…"}}` with `$format=json` or
  `Accept: application/json`, Atom XML otherwise; `__metadata {id, uri, type}` built from the request's host,
  as SAP does; navigation properties as `{"__deferred": {"uri"}}` unless `$expand`ed (`{"results": [...]}`).
- `$top`/`$skip` (client-driven paging), server-driven paging with `__next` + `$skiptoken` when a request asks
  for more than `max_page_size` (or sets no `$top` and more remain), `$inlinecount=allpages`, `$orderby`,
  `$select`, `$expand`, `/$count`, single entities by key predicate, and a typed `$filter` (eq ne gt ge lt le,
  and/or/not, parentheses, substringof/startswith/endswith) that refuses a literal of the wrong EDM type
  (`datetime'…'` against an `Edm.DateTimeOffset` property) with SAP's `/IWBEP/CM_MGW_RT/022` error.
- Dates as SAP writes them: `Edm.DateTime` `/Date(ms)/`, `Edm.DateTimeOffset` `/Date(ms+0000)/`, `Edm.Time`
  `PT10H00M00S`, decimals as strings; a business partner's `LastChangeDate` is null until it is first changed.
- Basic auth (401 with the ICF's HTML logon page and `WWW-Authenticate`), the CSRF handshake (a GET with
  `X-CSRF-Token: Fetch` returns a token and a session cookie; a POST without both is a 403 with
  `X-CSRF-Token: Required`), 429 with Retry-After, 502/503 from the Web Dispatcher as HTML.
- Creating a sales order with items (deep insert), refusing a second order with the same customer purchase
  order number for the same sold-to party: OData has no idempotency key, this business key is the protection.
- Creating a purchase order (`API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder`) with items and schedule lines (deep
  insert), for a supplier of `A_Supplier` in company code / purchasing organisation 1010, group 001. Like SAP, a
  purchase order's references (`CorrespncInternalReference`) are not unique: a create sent twice is two orders.

The data derives from the shared world: every person and company is a business partner (persons are the
customers, as everywhere else in the world), every product is a product (`Product` = SKU), stock of physical
products sums to the world's stock per SKU (split over storage locations for some), and every invoice of the
world has the sales order it was billed from (same customer, day, lines and amount).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..connectors.sap import ODATA_ROOT, STOCK_KEY, SYSTEM
from .base import Emulator
from .world import World

SAP_CLIENT = "100"
SESSION_COOKIE = f"SAP_SESSIONID_FAK_{SAP_CLIENT}"
MAX_PAGE_SIZE = 5000
"""Server-driven paging cuts pages here and answers `__next` (unconfirmed: SAP's cap varies by service)."""

PLANT = "1010"
SALES_AREA = ("1010", "10", "00")
SERVICE_SKUS = {"SERVICE-HR", "SUPPORT-Y"}


class ODataError(Exception):
    """An error SAP Gateway answers as `{"error": {"code", "message": {"lang", "value"}}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Navigation:
    target: str  # the entity set it leads to
    links: tuple[tuple[str, str], ...]  # (parent property, child property) pairs


@dataclass(frozen=True)
class EntitySet:
    service: str
    name: str
    type_name: str
    keys: tuple[str, ...]
    types: dict[str, str]
    navigation: dict[str, Navigation] = field(default_factory=dict)
    creatable: bool = False

    @property
    def qualified_type(self) -> str:
        return f"{self.service}.{self.type_name}"


# -- SAP's value formats ---------------------------------------------------------------------------------
def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def edm_datetime(moment: datetime | None) -> str | None:
    """`Edm.DateTime` holding a date: midnight UTC of that day."""
    if moment is None:
        return None
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return f"/Date({_ms(day)})/"


def edm_datetimeoffset(moment: datetime) -> str:
    return f"/Date({_ms(moment)}+0000)/"


def edm_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return f"PT{moment.hour:02d}H{moment.minute:02d}M{moment.second:02d}S"


def _amount(minor: int) -> str:
    return f"{Decimal(minor) / 100:.2f}"


_DATE_VALUE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")
_TIME_VALUE = re.compile(r"PT(\d+)H(\d+)M(\d+)S")


# -- $filter -------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<typed>(?:datetimeoffset|datetime|guid|time)'[^']*')|(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?\d+(?:\.\d+)?[mMdDlLfF]?)|(?P<ident>[A-Za-z_][A-Za-z0-9_/]*)|(?P<punct>[(),]))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}
_LITERAL_FOR = {  # a property's EDM type → the literal type SAP accepts against it
    "Edm.DateTime": "Edm.DateTime", "Edm.DateTimeOffset": "Edm.DateTimeOffset", "Edm.String": "Edm.String",
    "Edm.Decimal": "number", "Edm.Int32": "number", "Edm.Boolean": "Edm.Boolean", "Edm.Guid": "Edm.Guid",
    "Edm.Time": "Edm.Time",
}
Predicate = Callable[[dict[str, Any]], bool]


def _parse_timestamp(text: str, *, offset: bool) -> int:
    text = text.strip()
    if offset:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})", text):
            raise ValueError(text)
        return _ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?", text):
        raise ValueError(text)
    return _ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def property_value(edm_type: str, value: Any) -> Any:
    """A record's value in comparable form (milliseconds, seconds, Decimal ...)."""
    if value is None:
        return None
    if edm_type in ("Edm.DateTime", "Edm.DateTimeOffset"):
        match = _DATE_VALUE.fullmatch(str(value))
        return int(match.group(1)) if match else None
    if edm_type == "Edm.Time":
        match = _TIME_VALUE.fullmatch(str(value))
        return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + int(match.group(3)) if match else None
    if edm_type in ("Edm.Decimal", "Edm.Int32"):
        return Decimal(str(value))
    return value


class FilterParser:
    """Recursive descent over OData V2 `$filter`, typed against the entity's properties."""

    def __init__(self, text: str, entity: EntitySet) -> None:
        self.text, self.entity = text, entity
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                self.fail(f"unexpected character at position {position}")
            assert match is not None
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def fail(self, why: str) -> None:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/022", f"Invalid filter expression: '{self.text}' ({why})")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            self.fail("unexpected end")
        assert token is not None
        self.index += 1
        return token

    def expect(self, value: str) -> None:
        _kind, got = self.take()
        if got != value:
            self.fail(f"expected '{value}', found '{got}'")

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            self.fail(f"unexpected '{self.peek()[1]}'")  # type: ignore[index]
        return predicate

    def _keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "ident" and token[1] == word:
            self.index += 1
            return True
        return False

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self._keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self._keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def unary(self) -> Predicate:
        if self._keyword("not"):
            inner = self.unary()
            return lambda r: not inner(r)
        token = self.peek()
        if token == ("punct", "("):
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        if token and token[0] == "ident" and token[1] in ("substringof", "startswith", "endswith"):
            return self.function()
        return self.comparison()

    def function(self) -> Predicate:
        name = self.take()[1]
        self.expect("(")
        first = self.operand()
        self.expect(",")
        second = self.operand()
        self.expect(")")
        (kind_a, a), (kind_b, b) = first, second
        if name == "substringof":
            (needle_kind, needle), (prop_kind, prop) = (kind_a, a), (kind_b, b)
        else:
            (prop_kind, prop), (needle_kind, needle) = (kind_a, a), (kind_b, b)
        if prop_kind != "property" or needle_kind != "Edm.String":
            self.fail(f"{name} takes a string property and a string literal")
        test = {"substringof": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[name]

        def predicate(record: dict[str, Any]) -> bool:
            value = record.get(prop)
            return isinstance(value, str) and test(value, needle)

        if self._keyword("eq"):
            wanted = self.take()[1]
            if wanted not in ("true", "false"):
                self.fail("a function result compares with true or false")
            return predicate if wanted == "true" else (lambda r: not predicate(r))
        return predicate

    def operand(self) -> tuple[str, Any]:
        """('property', name) or (literal type, comparable value)."""
        kind, text = self.take()
        if kind == "ident":
            if text in ("true", "false"):
                return "Edm.Boolean", text == "true"
            if text == "null":
                return "null", None
            if text not in self.entity.types:
                self.fail(f"property '{text}' not found in type '{self.entity.qualified_type}'")
            return "property", text
        if kind == "string":
            return "Edm.String", text[1:-1].replace("''", "'")
        if kind == "number":
            return "number", Decimal(text.rstrip("mMdDlLfF"))
        if kind == "typed":
            prefix, _, rest = text.partition("'")
            raw = rest[:-1]
            try:
                if prefix == "datetime":
                    return "Edm.DateTime", _parse_timestamp(raw, offset=False)
                if prefix == "datetimeoffset":
                    return "Edm.DateTimeOffset", _parse_timestamp(raw, offset=True)
                if prefix == "time":
                    return "Edm.Time", property_value("Edm.Time", raw)
                return "Edm.Guid", str(uuid.UUID(raw))
            except ValueError:
                self.fail(f"malformed {prefix} literal {text}")
        self.fail(f"unexpected '{text}'")
        raise AssertionError  # unreachable

    def comparison(self) -> Predicate:
        left = self.operand()
        kind, op = self.take()
        if kind != "ident" or op not in _COMPARE:
            self.fail(f"expected a comparison operator, found '{op}'")
        right = self.operand()
        if left[0] != "property" and right[0] == "property":
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if left[0] != "property":
            self.fail("a comparison needs a property")
        prop = left[1]
        edm_type = self.entity.types[prop]
        if right[0] == "property":
            self.fail("comparing two properties is not supported")
        if right[0] != "null" and _LITERAL_FOR.get(edm_type) != right[0]:
            self.fail(f"operator '{op}' incompatible with operand types '{edm_type}' and '{right[0]}'")
        if right[0] == "null" and op not in ("eq", "ne"):
            self.fail(f"operator '{op}' cannot compare with null")
        literal, compare = right[1], _COMPARE[op]

        def predicate(record: dict[str, Any]) -> bool:
            value = property_value(edm_type, record.get(prop))
            if value is None or literal is None:
                return compare(value, literal) if op in ("eq", "ne") else False
            return compare(value, literal)

        return predicate


# -- the entity model ------------------------------------------------------------------------------------
def _types(strings: str, **typed: str) -> dict[str, str]:
    out = dict.fromkeys(strings.split(), "Edm.String")
    out.update(typed)
    return out


BP = EntitySet(
    "API_BUSINESS_PARTNER", "A_BusinessPartner", "A_BusinessPartnerType", ("BusinessPartner",),
    _types(
        "BusinessPartner Customer Supplier AcademicTitle AuthorizationGroup BusinessPartnerCategory "
        "BusinessPartnerFullName BusinessPartnerGrouping BusinessPartnerName CorrespondenceLanguage CreatedByUser "
        "FirstName FormOfAddress Industry IsFemale IsMale IsNaturalPerson Language LastChangedByUser LastName "
        "LegalForm OrganizationBPName1 OrganizationBPName2 SearchTerm1 SearchTerm2",
        BusinessPartnerUUID="Edm.Guid", CreationDate="Edm.DateTime", CreationTime="Edm.Time",
        LastChangeDate="Edm.DateTime", LastChangeTime="Edm.Time", BusinessPartnerIsBlocked="Edm.Boolean",
        IsMarkedForArchiving="Edm.Boolean",
    ),
    navigation={"to_BusinessPartnerAddress": Navigation("A_BusinessPartnerAddress", ())},
)
PRODUCT = EntitySet(
    "API_PRODUCT_SRV", "A_Product", "A_ProductType", ("Product",),
    _types(
        "Product ProductType CrossPlantStatus CreatedByUser LastChangedByUser ProductOldID ProductGroup BaseUnit "
        "WeightUnit ItemCategoryGroup Division CountryOfOrigin Brand",
        CreationDate="Edm.DateTime", LastChangeDate="Edm.DateTime", LastChangeDateTime="Edm.DateTimeOffset",
        IsMarkedForDeletion="Edm.Boolean", GrossWeight="Edm.Decimal", NetWeight="Edm.Decimal",
    ),
    navigation={"to_Description": Navigation("A_ProductDescription", (("Product", "Product"),)),
                "to_Plant": Navigation("A_ProductPlant", ())},
)
PRODUCT_DESCRIPTION = EntitySet(
    "API_PRODUCT_SRV", "A_ProductDescription", "A_ProductDescriptionType", ("Product", "Language"),
    _types("Product Language ProductDescription"),
)
STOCK = EntitySet(
    "API_MATERIAL_STOCK_SRV", "A_MatlStkInAcctMod", "A_MatlStkInAcctModType", STOCK_KEY,
    _types(" ".join(STOCK_KEY) + " MaterialBaseUnit", MatlWrhsStkQtyInMatlBaseUnit="Edm.Decimal"),
)
SALES_ORDER = EntitySet(
    "API_SALES_ORDER_SRV", "A_SalesOrder", "A_SalesOrderType", ("SalesOrder",),
    _types(
        "SalesOrder SalesOrderType SalesOrganization DistributionChannel OrganizationDivision SalesGroup "
        "SalesOffice SalesDistrict SoldToParty CreatedByUser PurchaseOrderByCustomer CustomerPurchaseOrderType "
        "TransactionCurrency SDDocumentReason ShippingCondition IncotermsClassification CustomerPaymentTerms "
        "HeaderBillingBlockReason DeliveryBlockReason OverallSDProcessStatus TotalCreditCheckStatus "
        "OverallTotalDeliveryStatus OverallSDDocumentRejectionSts",
        CreationDate="Edm.DateTime", LastChangeDate="Edm.DateTime", LastChangeDateTime="Edm.DateTimeOffset",
        SalesOrderDate="Edm.DateTime", PricingDate="Edm.DateTime", RequestedDeliveryDate="Edm.DateTime",
        CustomerPurchaseOrderDate="Edm.DateTime", TotalNetAmount="Edm.Decimal",
    ),
    navigation={"to_Item": Navigation("A_SalesOrderItem", (("SalesOrder", "SalesOrder"),)),
                "to_Partner": Navigation("A_SalesOrderHeaderPartner", ())},
    creatable=True,
)
SALES_ORDER_ITEM = EntitySet(
    "API_SALES_ORDER_SRV", "A_SalesOrderItem", "A_SalesOrderItemType", ("SalesOrder", "SalesOrderItem"),
    _types(
        "SalesOrder SalesOrderItem HigherLevelItem SalesOrderItemCategory SalesOrderItemText Material "
        "RequestedQuantityUnit TransactionCurrency MaterialGroup Plant",
        RequestedQuantity="Edm.Decimal", NetAmount="Edm.Decimal",
    ),
)
SUPPLIER = EntitySet(
    "API_BUSINESS_PARTNER", "A_Supplier", "A_SupplierType", ("Supplier",),
    _types("Supplier SupplierName SupplierAccountGroup CreatedByUser",
           CreationDate="Edm.DateTime", PostingIsBlocked="Edm.Boolean", PurchasingIsBlocked="Edm.Boolean"),
)
PURCHASE_ORDER = EntitySet(
    "API_PURCHASEORDER_PROCESS_SRV", "A_PurchaseOrder", "A_PurchaseOrderType", ("PurchaseOrder",),
    _types(
        "PurchaseOrder CompanyCode PurchaseOrderType PurchasingDocumentDeletionCode PurchasingProcessingStatus "
        "CreatedByUser Supplier Language PaymentTerms PurchasingOrganization PurchasingGroup DocumentCurrency "
        "CorrespncExternalReference CorrespncInternalReference SupplierRespSalesPersonName",
        CreationDate="Edm.DateTime", LastChangeDateTime="Edm.DateTimeOffset", PurchaseOrderDate="Edm.DateTime",
    ),
    navigation={"to_PurchaseOrderItem": Navigation("A_PurchaseOrderItem", (("PurchaseOrder", "PurchaseOrder"),))},
    creatable=True,
)
PURCHASE_ORDER_ITEM = EntitySet(
    "API_PURCHASEORDER_PROCESS_SRV", "A_PurchaseOrderItem", "A_PurchaseOrderItemType",
    ("PurchaseOrder", "PurchaseOrderItem"),
    _types("PurchaseOrder PurchaseOrderItem PurchaseOrderItemText Plant Material PurchaseOrderQuantityUnit "
           "DocumentCurrency PurchaseOrderItemCategory",
           OrderQuantity="Edm.Decimal", NetPriceAmount="Edm.Decimal", NetPriceQuantity="Edm.Decimal"),
    navigation={"to_ScheduleLine": Navigation("A_PurchaseOrderScheduleLine", (
        ("PurchaseOrder", "PurchasingDocument"), ("PurchaseOrderItem", "PurchasingDocumentItem")))},
)
PURCHASE_ORDER_SCHEDULE_LINE = EntitySet(
    "API_PURCHASEORDER_PROCESS_SRV", "A_PurchaseOrderScheduleLine", "A_PurchaseOrderScheduleLineType",
    ("PurchasingDocument", "PurchasingDocumentItem", "ScheduleLine"),
    _types("PurchasingDocument PurchasingDocumentItem ScheduleLine",
           ScheduleLineDeliveryDate="Edm.DateTime", ScheduleLineOrderQuantity="Edm.Decimal"),
)
#: the suppliers the sandbox's company buys from (kept in A_Supplier only, so the world's business partners, which
#: the connector reads as customers, stay as they are)
SUPPLIERS = (("17300001", "Northwind Supplies"), ("17300002", "Contoso Components"), ("17300003", "Fabrikam Parts"))
PURCHASING = {"CompanyCode": "1010", "PurchasingOrganization": "1010", "PurchasingGroup": "001"}
ENTITY_SETS: dict[str, dict[str, EntitySet]] = {}
for _set in (BP, PRODUCT, PRODUCT_DESCRIPTION, STOCK, SALES_ORDER, SALES_ORDER_ITEM, SUPPLIER, PURCHASE_ORDER,
             PURCHASE_ORDER_ITEM, PURCHASE_ORDER_SCHEDULE_LINE):
    ENTITY_SETS.setdefault(_set.service, {})[_set.name] = _set

#: stream name → (entity set, the `$expand` the connector asks for, so `dump` matches what it reads)
STREAMS: dict[str, tuple[EntitySet, tuple[str, ...]]] = {
    "business_partners": (BP, ()),
    "products": (PRODUCT, ("to_Description",)),
    "material_stock": (STOCK, ()),
    "sales_orders": (SALES_ORDER, ("to_Item",)),
}


def _sort_value(value: Any) -> tuple[int, Any]:
    """SAP keys are stored zero-padded (ALPHA), so numeric strings sort as numbers; null sorts first."""
    if value is None:
        return (0, "")
    if isinstance(value, str) and value.isdigit():
        return (1, value.zfill(20))
    if isinstance(value, str) and (match := _DATE_VALUE.fullmatch(value)):
        return (1, f"{int(match.group(1)):020d}")
    return (1, str(value))


def _key_predicate(entity: EntitySet, record: dict[str, Any]) -> str:
    def literal(value: Any) -> str:
        return "'" + str(value).replace("'", "''") + "'"

    if len(entity.keys) == 1:
        return f"({literal(record[entity.keys[0]])})"
    return "(" + ",".join(f"{k}={literal(record[k])}" for k in entity.keys) + ")"


def _uuid(*parts: object) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:16]))


class SapEmulator(Emulator):
    name = "sap"
    prefixes = (f"{ODATA_ROOT}/",)
    streams = tuple(STREAMS)

    def __init__(self, world: World, sandbox: Any) -> None:
        super().__init__(world, sandbox)
        self.username = SYSTEM.values["username"].sandbox
        self.password = SYSTEM.values["password"].sandbox
        self.max_page_size = MAX_PAGE_SIZE
        self.root = f"https://{SYSTEM.values['host'].sandbox}"  # replaced by the host of each request
        self.sessions: dict[str, str] = {}  # session cookie → CSRF token
        self.data: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {
            name: {} for sets in ENTITY_SETS.values() for name in sets
        }
        self._seed(world)

    # -- the world, as SAP holds it -----------------------------------------------------------------
    def _put(self, entity: EntitySet, record: dict[str, Any]) -> None:
        self.data[entity.name][tuple(str(record[k]) for k in entity.keys)] = record

    def _seed(self, world: World) -> None:
        rng = world.rng("sap")
        self.bp_of_person: dict[int, str] = {}
        for company in world.companies:
            created = world.start + timedelta(seconds=rng.randrange(3600, 86_400))
            changed = created + timedelta(hours=rng.randint(1, 40)) if rng.random() < 0.5 else None
            number = str(10100000 + company.key)
            self._put(BP, self._partner(number, created, changed, category="2", organisation=company.name,
                                        search=company.name.split()[0].upper()))
        for person in world.people:
            number = str(10300000 + person.key)
            self.bp_of_person[person.key] = number
            changed = person.updated_at if rng.random() < 0.85 else None  # never changed: no LastChangeDate
            self._put(BP, self._partner(number, person.created_at, changed, category="1", first=person.first_name,
                                        last=person.last_name, search=person.last_name.upper()[:20]))
        for product in world.products:
            service = product.sku in SERVICE_SKUS
            changed = world.start + timedelta(seconds=rng.randrange(int((world.anchor - world.start).total_seconds())))
            self._put(PRODUCT, {
                "Product": product.sku, "ProductType": "SERV" if service else "FERT", "CrossPlantStatus": "",
                "CreationDate": edm_datetime(world.start - timedelta(days=400)), "CreatedByUser": "CB9980000010",
                "LastChangeDate": edm_datetime(changed), "LastChangedByUser": "CB9980000010",
                "LastChangeDateTime": edm_datetimeoffset(changed), "IsMarkedForDeletion": False,
                "ProductOldID": "", "GrossWeight": "0.000" if service else f"{rng.randint(100, 5000) / 1000:.3f}",
                "WeightUnit": "" if service else "KG", "NetWeight": "0.000", "ProductGroup": "P002" if service
                else "P001", "BaseUnit": "H" if product.sku == "SERVICE-HR" else "EA",
                "ItemCategoryGroup": "LEIS" if service else "NORM", "Division": "00", "CountryOfOrigin": "",
                "Brand": "",
            })
            self._put(PRODUCT_DESCRIPTION, {"Product": product.sku, "Language": "EN",
                                            "ProductDescription": product.name})
            if not service:
                self._seed_stock(product.sku, product.stock, split=rng.random() < 0.5, share=rng.random())
        self._seed_orders(world, rng)
        for number, name in SUPPLIERS:
            self._put(SUPPLIER, {"Supplier": number, "SupplierName": name, "SupplierAccountGroup": "SUPL",
                                 "CreatedByUser": "CB9980000010", "CreationDate": edm_datetime(world.start),
                                 "PostingIsBlocked": False, "PurchasingIsBlocked": False})

    def _partner(self, number: str, created: datetime, changed: datetime | None, *, category: str,
                 organisation: str = "", first: str = "", last: str = "", search: str = "") -> dict[str, Any]:
        full = organisation or f"{first} {last}"
        return {
            "BusinessPartner": number, "Customer": number, "Supplier": "", "AcademicTitle": "",
            "AuthorizationGroup": "", "BusinessPartnerCategory": category, "BusinessPartnerFullName": full,
            "BusinessPartnerGrouping": "BP02", "BusinessPartnerName": full,
            "BusinessPartnerUUID": _uuid(self.world.seed, "bp", number), "CorrespondenceLanguage": "",
            "CreatedByUser": "CB9980000010", "CreationDate": edm_datetime(created), "CreationTime": edm_time(created),
            "FirstName": first, "FormOfAddress": "0002" if category == "1" else "0003", "Industry": "",
            "IsFemale": False, "IsMale": False, "IsNaturalPerson": "X" if category == "1" else "",
            "Language": "EN", "LastChangeDate": edm_datetime(changed), "LastChangeTime": edm_time(changed),
            "LastChangedByUser": "CB9980000010" if changed else "", "LastName": last, "LegalForm": "",
            "OrganizationBPName1": organisation, "OrganizationBPName2": "", "SearchTerm1": search,
            "SearchTerm2": "", "BusinessPartnerIsBlocked": False, "IsMarkedForArchiving": False,
        }

    def _seed_stock(self, sku: str, quantity: int, *, split: bool, share: float) -> None:
        parts = [("101A", quantity)]
        if split and quantity > 1:
            moved = max(1, int(quantity * share * 0.5))
            parts = [("101A", quantity - moved), ("101B", moved)]
        for location, amount in parts:
            self._put(STOCK, {
                "Material": sku, "Plant": PLANT, "StorageLocation": location, "Batch": "", "Supplier": "",
                "Customer": "", "WBSElementInternalID": "00000000", "SDDocument": "", "SDDocumentItem": "000000",
                "InventorySpecialStockType": "", "InventoryStockType": "01", "MaterialBaseUnit": "EA",
                "MatlWrhsStkQtyInMatlBaseUnit": f"{amount:.3f}",
            })

    def _seed_orders(self, world: World, rng: Any) -> None:
        used: set[tuple[str, str]] = set()
        for invoice in world.invoices:
            party = self.bp_of_person[invoice.person.key]
            po = f"PO-{rng.randint(10000, 99999)}" if rng.random() < 0.7 else ""
            if (party, po) in used:
                po = ""
            if po:
                used.add((party, po))
            changed = min(world.anchor - timedelta(seconds=1),
                          invoice.issued_at + timedelta(minutes=rng.randint(0, 600)))
            lines = [(line.product.sku, line.quantity, line.amount) for line in invoice.lines]
            self._create_order(str(1 + invoice.key), party, po, invoice.currency, lines,
                               created=invoice.issued_at, changed=changed, completed=invoice.paid)

    def _create_order(self, number: str, party: str, po: str, currency: str, lines: list[tuple[str, int, int]],
                      *, created: datetime, changed: datetime, completed: bool,
                      header: dict[str, Any] | None = None) -> dict[str, Any]:
        organisation, channel, division = SALES_AREA
        order = {
            "SalesOrder": number, "SalesOrderType": "OR", "SalesOrganization": organisation,
            "DistributionChannel": channel, "OrganizationDivision": division, "SalesGroup": "", "SalesOffice": "",
            "SalesDistrict": "", "SoldToParty": party, "CreationDate": edm_datetime(created),
            "CreatedByUser": "CB9980000010", "LastChangeDate": edm_datetime(changed),
            "LastChangeDateTime": edm_datetimeoffset(changed), "PurchaseOrderByCustomer": po,
            "CustomerPurchaseOrderType": "", "CustomerPurchaseOrderDate": edm_datetime(created) if po else None,
            "SalesOrderDate": edm_datetime(created), "TotalNetAmount": _amount(sum(a for _, _, a in lines)),
            "TransactionCurrency": currency, "SDDocumentReason": "", "PricingDate": edm_datetime(created),
            "RequestedDeliveryDate": edm_datetime(created + timedelta(days=7)), "ShippingCondition": "01",
            "IncotermsClassification": "EXW", "CustomerPaymentTerms": "0001", "HeaderBillingBlockReason": "",
            "DeliveryBlockReason": "", "OverallSDProcessStatus": "C" if completed else "A",
            "TotalCreditCheckStatus": "", "OverallTotalDeliveryStatus": "C" if completed else "A",
            "OverallSDDocumentRejectionSts": "A",
            **(header or {}),
        }
        self._put(SALES_ORDER, order)
        for n, (sku, quantity, amount) in enumerate(lines, start=1):
            product = self.data[PRODUCT.name].get((sku,), {})
            self._put(SALES_ORDER_ITEM, {
                "SalesOrder": number, "SalesOrderItem": str(10 * n), "HigherLevelItem": "000000",
                "SalesOrderItemCategory": "TAN", "SalesOrderItemText": self._description(sku), "Material": sku,
                "RequestedQuantity": f"{quantity:.3f}", "RequestedQuantityUnit": product.get("BaseUnit", "EA"),
                "TransactionCurrency": currency, "NetAmount": _amount(amount),
                "MaterialGroup": product.get("ProductGroup", ""), "Plant": PLANT,
            })
        return order

    def _description(self, sku: str) -> str:
        found = self.data[PRODUCT_DESCRIPTION.name].get((sku, "EN"))
        return found["ProductDescription"] if found else sku

    # -- rendering ----------------------------------------------------------------------------------
    def _uri(self, entity: EntitySet, record: dict[str, Any], root: str) -> str:
        return f"{root}{ODATA_ROOT}/{entity.service}/{entity.name}{_key_predicate(entity, record)}"

    def render(self, entity: EntitySet, record: dict[str, Any], root: str, expand: tuple[str, ...] = (),
               select: tuple[str, ...] = ()) -> dict[str, Any]:
        uri = self._uri(entity, record, root)
        out: dict[str, Any] = {"__metadata": {"id": uri, "uri": uri, "type": entity.qualified_type}}
        out.update({k: v for k, v in record.items() if not select or k in select})
        for nav, link in entity.navigation.items():
            if select and nav not in select:
                continue
            if nav in expand:
                target = ENTITY_SETS[entity.service][link.target]
                children = [c for c in self.data[target.name].values()
                            if all(c[child] == record[parent] for parent, child in link.links)]
                children.sort(key=lambda c: [_sort_value(c[k]) for k in target.keys])
                out[nav] = {"results": [self.render(target, c, root) for c in children]}
            else:
                out[nav] = {"__deferred": {"uri": f"{uri}/{nav}"}}
        return out

    # -- protocol -----------------------------------------------------------------------------------
    def odata_error(self, status: int, code: str, message: str, service: str = "") -> Response:
        transaction = secrets.token_hex(16).upper()
        body = {"error": {
            "code": code, "message": {"lang": "en", "value": message},
            "innererror": {
                "application": {"component_id": "", "service_namespace": "/SAP/", "service_id": service,
                                "service_version": "0001"},
                "transactionid": transaction,
                "timestamp": datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f")[:21],
                "Error_Resolution": {
                    "SAP_Transaction": "For backend administrators: use ADT feed reader \"SAP Gateway Error Log\" "
                    "or run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search for entries "
                    "with the timestamp above for more details",
                    "SAP_Note": "See SAP Note 1797736 for error analysis "
                    "(https://service.sap.com/sap/support/notes/1797736)",
                },
                "errordetails": [{"code": code, "message": message, "propertyref": "", "severity": "error",
                                  "target": ""}],
            },
        }}
        return JSONResponse(body, status_code=status, headers={"sap-server": "true"})

    def error_response(self, status: int, message: str) -> Response:
        if status in (502, 503):  # the Web Dispatcher answers before Gateway is reached, in HTML
            html = (f"<html><head><title>{status} Service Unavailable</title></head><body><h2>{status} "
                    f"Service is not reachable</h2><p>{escape(message)}</p><p>SAP Web Dispatcher</p></body></html>")
            return Response(html, status_code=status, media_type="text/html", headers={"Retry-After": "1"})
        return self.odata_error(status, "/IWFND/CM_BEC/026", message)

    def rate_limit_response(self, retry_after: float) -> Response:
        response = self.odata_error(429, "/IWFND/CM_CONSUMER/429",
                                    "Too many requests; the tenant's request quota is exhausted, retry later")
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def _unauthorized(self) -> Response:
        html = ("<html><head><title>Logon Error Message</title></head><body><h1>401 Unauthorized</h1>"
                "<p>Logon failed. The user or password is incorrect, or the user is locked.</p>"
                "<p>Server: SAP NetWeaver Application Server / ABAP</p></body></html>")
        return Response(html, status_code=401, media_type="text/html", headers={
            "WWW-Authenticate": f'Basic realm="SAP NetWeaver Application Server [FAK/{SAP_CLIENT}]"'})

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.username) and secrets.compare_digest(password, self.password)

    def _csrf_fetch(self, request: Request, response: Response) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session not in self.sessions:
            session = secrets.token_urlsafe(24)
        token = secrets.token_urlsafe(18)
        with self.sandbox.lock:
            self.sessions[session] = token
        response.headers["X-CSRF-Token"] = token
        response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True)
        response.set_cookie("sap-usercontext", f"sap-client={SAP_CLIENT}", path="/")
        return response

    def _csrf_ok(self, request: Request) -> bool:
        session = request.cookies.get(SESSION_COOKIE, "")
        token = request.headers.get("x-csrf-token", "")
        expected = self.sessions.get(session)
        return bool(expected and token) and secrets.compare_digest(expected or "", token)

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "PUT", "PATCH", "MERGE", "DELETE"]
        return [
            Route(f"{ODATA_ROOT}/{{service}}", self._handle, methods=methods),
            Route(f"{ODATA_ROOT}/{{service}}/", self._handle, methods=methods),
            Route(f"{ODATA_ROOT}/{{service}}/{{resource:path}}", self._handle, methods=methods),
        ]

    async def _handle(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        self.root = str(request.base_url).rstrip("/")
        service = request.path_params["service"]
        if request.method != "GET" and not self._csrf_ok(request):
            return Response("CSRF token validation failed", status_code=403, media_type="text/plain",
                            headers={"X-CSRF-Token": "Required"})
        try:
            if service not in ENTITY_SETS:
                raise ODataError(404, "/IWFND/MED/170",
                                 f"No service found for namespace '/SAP/', name '{service}', version '0001'")
            resource = request.path_params.get("resource", "")
            if request.method == "GET":
                response = self._get(request, service, resource)
            elif request.method == "POST":
                response = await self._post(request, service, resource)
            else:
                raise ODataError(405, "/IWBEP/CM_MGW_RT/028", f"Method '{request.method}' not allowed here")
        except ODataError as error:
            response = self.odata_error(error.status, error.code, error.message, service)
        if request.method == "GET" and request.headers.get("x-csrf-token", "").lower() == "fetch":
            response = self._csrf_fetch(request, response)
        return response

    # -- reading ------------------------------------------------------------------------------------
    def _wants_json(self, request: Request) -> bool:
        fmt = request.query_params.get("$format")
        if fmt is not None:
            if fmt not in ("json", "xml", "atom"):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid value '{fmt}' for $format")
            return fmt == "json"
        return "application/json" in request.headers.get("accept", "")

    def _get(self, request: Request, service: str, resource: str) -> Response:
        wants_json = self._wants_json(request)
        if resource in ("", "/"):
            names = sorted(ENTITY_SETS[service])
            if wants_json:
                return JSONResponse({"d": {"EntitySets": names}})
            collections = "".join(f'<app:collection href="{n}"><atom:title>{n}</atom:title></app:collection>'
                                  for n in names)
            xml = ('<?xml version="1.0" encoding="utf-8"?><app:service xmlns:app="http://www.w3.org/2007/app" '
                   f'xmlns:atom="http://www.w3.org/2005/Atom"><app:workspace>{collections}</app:workspace>'
                   "</app:service>")
            return Response(xml, media_type="application/xml")
        match = re.fullmatch(r"(\w+)(?:\((.*)\))?(/\$count)?", resource)
        entity = ENTITY_SETS[service].get(match.group(1)) if match else None
        if match is None or entity is None:
            raise ODataError(404, "/IWBEP/CM_MGW_RT/021", f"Resource not found for segment '{resource}'")
        params = request.query_params
        expand = self._expand(entity, params.get("$expand"))
        select = tuple(s.strip() for s in params.get("$select", "").split(",") if s.strip())
        unknown = [s for s in select if s not in entity.types and s not in entity.navigation]
        if unknown:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/021",
                             f"Property '{unknown[0]}' not found in type '{entity.qualified_type}'")
        if match.group(2) is not None:
            record = self.data[entity.name].get(self._parse_key(entity, match.group(2)))
            if record is None:
                raise ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{entity.type_name}'")
            return self._answer(wants_json, entity, {"d": self.render(entity, record, self.root, expand, select)},
                                [record])
        rows = self._query(entity, params.get("$filter"), params.get("$orderby"))
        if match.group(3):
            return Response(str(len(rows)), media_type="text/plain")
        top = self._non_negative(params, "$top")
        skip = (self._non_negative(params, "$skip") or 0) + (self._non_negative(params, "$skiptoken") or 0)
        total = len(rows)
        limit = min(top if top is not None else self.max_page_size, self.max_page_size)
        page = rows[skip:skip + limit]
        wanted_end = total if top is None else min(total, skip + top)
        body: dict[str, Any] = {"d": {}}
        if params.get("$inlinecount") == "allpages":
            body["d"]["__count"] = str(total)
        elif params.get("$inlinecount") not in (None, "none"):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/004",
                             f"Invalid value '{params['$inlinecount']}' for system query option $inlinecount")
        body["d"]["results"] = [self.render(entity, r, self.root, expand, select) for r in page]
        if skip + len(page) < wanted_end:
            body["d"]["__next"] = self._next_url(request, skip + len(page), None if top is None
                                                 else wanted_end - skip - len(page))
        return self._answer(wants_json, entity, body, page)

    def _expand(self, entity: EntitySet, raw: str | None) -> tuple[str, ...]:
        names = tuple(s.strip() for s in (raw or "").split(",") if s.strip())
        for name in names:
            if name not in entity.navigation:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/021",
                                 f"Property '{name}' not found in type '{entity.qualified_type}'")
        return names

    @staticmethod
    def _non_negative(params: Any, name: str) -> int | None:
        raw = params.get(name)
        if raw is None:
            return None
        if not raw.isdigit():
            raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid value '{raw}' for system query option {name}")
        return int(raw)

    def _parse_key(self, entity: EntitySet, text: str) -> tuple[str, ...]:
        named = dict(re.findall(r"(\w+)='((?:[^']|'')*)'", text))
        if len(entity.keys) == 1 and not named:
            single = re.fullmatch(r"'((?:[^']|'')*)'", text.strip())
            named = {entity.keys[0]: single.group(1)} if single else {}
        if set(named) != set(entity.keys):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid key predicate '({text})'")
        return tuple(named[k].replace("''", "'") for k in entity.keys)

    def _query(self, entity: EntitySet, filter_text: str | None, orderby: str | None) -> list[dict[str, Any]]:
        rows = list(self.data[entity.name].values())
        if filter_text:
            predicate = FilterParser(filter_text, entity).parse()
            rows = [r for r in rows if predicate(r)]
        rows.sort(key=lambda r: [_sort_value(r[k]) for k in entity.keys])
        for part in reversed([p.strip() for p in (orderby or "").split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            direction = direction.strip().lower() or "asc"
            if name not in entity.types or direction not in ("asc", "desc"):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid $orderby expression '{part}'")
            rows.sort(key=lambda r, n=name: _sort_value(r.get(n)), reverse=direction == "desc")
        return rows

    def _next_url(self, request: Request, offset: int, remaining: int | None) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("$skip", "$skiptoken", "$top")]
        if remaining is not None:
            params.append(("$top", str(remaining)))
        params.append(("$skiptoken", str(offset)))
        query = "&".join(f"{quote(k, safe='$')}={quote(v, safe=chr(39) + ',()')}" for k, v in params)
        return f"{self.root}{request.url.path}?{query}"

    def _answer(self, wants_json: bool, entity: EntitySet, body: dict[str, Any],
                records: list[dict[str, Any]]) -> Response:
        if wants_json:
            return JSONResponse(body, headers={"dataserviceversion": "2.0"})
        entries = "".join(
            f"<entry><id>{escape(self._uri(entity, r, self.root))}</id><category term=\"{entity.qualified_type}\"/>"
            "<content type=\"application/xml\"><m:properties>"
            + "".join(f"<d:{k}>{escape('' if v is None else str(v))}</d:{k}>" for k, v in r.items())
            + "</m:properties></content></entry>"
            for r in records
        )
        xml = ('<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
               'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
               f'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"><title>{entity.name}</title>'
               f"{entries}</feed>")
        return Response(xml, media_type="application/atom+xml;type=feed", headers={"dataserviceversion": "2.0"})

    # -- writing ------------------------------------------------------------------------------------
    async def _post(self, request: Request, service: str, resource: str) -> Response:
        entity = ENTITY_SETS[service].get(resource.strip("/"))
        if entity is None or not entity.creatable:
            raise ODataError(405, "/IWBEP/CM_MGW_RT/028", f"Creating entities in '{resource}' is not supported")
        try:
            payload = await request.json()
        except ValueError:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/001", "The request body is not valid JSON") from None
        if isinstance(payload, dict) and isinstance(payload.get("d"), dict):
            payload = payload["d"]
        if not isinstance(payload, dict):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/001", "The request body must be a JSON object")
        if entity is PURCHASE_ORDER:
            with self.sandbox.lock:
                purchase = self._create_purchase_order(payload)
            rendered = self.render(PURCHASE_ORDER, purchase, self.root, ("to_PurchaseOrderItem",))
            return JSONResponse({"d": rendered}, status_code=201, headers={
                "Location": rendered["__metadata"]["uri"], "dataserviceversion": "2.0"})
        with self.sandbox.lock:
            order = self._create_from_payload(payload)
        rendered = self.render(SALES_ORDER, order, self.root, ("to_Item",))
        return JSONResponse({"d": rendered}, status_code=201, headers={"Location": rendered["__metadata"]["uri"],
                                                                      "dataserviceversion": "2.0"})

    def _create_from_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        allowed = set(SALES_ORDER.types) | set(SALES_ORDER.navigation) | {"__metadata"}
        for name in payload:
            if name not in allowed:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/021",
                                 f"Property '{name}' is invalid for type '{SALES_ORDER.qualified_type}'")
        for name in ("SalesOrderType", "SalesOrganization", "DistributionChannel", "OrganizationDivision",
                     "SoldToParty"):
            if not payload.get(name):
                raise ODataError(400, "V1/395", f"Property {name} is mandatory; enter a value")
        area = (payload["SalesOrganization"], payload["DistributionChannel"], payload["OrganizationDivision"])
        party = str(payload["SoldToParty"])
        partner = self.data[BP.name].get((party,))
        if partner is None or not partner["Customer"] or area != SALES_AREA:
            raise ODataError(400, "V1/331", f"Sold-to party {party} not maintained for sales area {'/'.join(area)}")
        po = str(payload.get("PurchaseOrderByCustomer") or "")
        if po:
            for existing in self.data[SALES_ORDER.name].values():
                if existing["SoldToParty"] == party and existing["PurchaseOrderByCustomer"] == po:
                    raise ODataError(400, "V4/115", f"Purchase order number {po} already exists for sold-to "
                                     f"party {party} (sales order {existing['SalesOrder']}); no order created")
        items = payload.get("to_Item") or []
        if isinstance(items, dict):
            items = items.get("results") or []
        if not isinstance(items, list) or not items:
            raise ODataError(400, "V1/555", "The sales document is not complete: no items (to_Item)")
        lines = []
        for item in items:
            sku = str(item.get("Material") or "")
            product = self.data[PRODUCT.name].get((sku,))
            if product is None:
                raise ODataError(400, "M3/305", f"Material {sku} does not exist")
            try:
                quantity = Decimal(str(item.get("RequestedQuantity", "")))
            except InvalidOperation:
                quantity = Decimal(0)
            if quantity <= 0:
                raise ODataError(400, "V1/080", f"Enter a requested quantity greater than zero for material {sku}")
            price = next(p.unit_price for p in self.world.products if p.sku == sku)
            lines.append((sku, int(quantity), int(price * quantity)))
        number = str(max((int(k[0]) for k in self.data[SALES_ORDER.name]), default=0) + 1)
        now = datetime.fromtimestamp(self.now(), UTC)
        header = {k: payload[k] for k in ("SalesOrderType", "CustomerPaymentTerms", "SDDocumentReason")
                  if payload.get(k)}
        return self._create_order(number, party, po, str(payload.get("TransactionCurrency") or "USD"), lines,
                                  created=now, changed=now, completed=False, header=header)

    def _create_purchase_order(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A purchase order with its items and schedule lines (deep insert). Like SAP, nothing makes a reference
        unique: a create sent twice is two orders (the client's lookup by `CorrespncInternalReference` is the
        protection)."""
        allowed = set(PURCHASE_ORDER.types) | set(PURCHASE_ORDER.navigation) | {"__metadata"}
        for name in payload:
            if name not in allowed:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/021",
                                 f"Property '{name}' is invalid for type '{PURCHASE_ORDER.qualified_type}'")
        for name in ("PurchaseOrderType", "CompanyCode", "PurchasingOrganization", "PurchasingGroup", "Supplier"):
            if not payload.get(name):
                raise ODataError(400, "ME/083", f"Property {name} is mandatory; enter a value")
        for name, value in PURCHASING.items():
            if payload[name] != value:
                raise ODataError(400, "ME/045", f"{name} {payload[name]} is not defined")
        supplier = str(payload["Supplier"])
        if (supplier,) not in self.data[SUPPLIER.name]:
            raise ODataError(400, "06/321", f"Supplier {supplier} does not exist")
        items = payload.get("to_PurchaseOrderItem") or []
        if isinstance(items, dict):
            items = items.get("results") or []
        if not isinstance(items, list) or not items:
            raise ODataError(400, "ME/039", "No items in the purchase order (to_PurchaseOrderItem)")
        number = str(max((int(k[0]) for k in self.data[PURCHASE_ORDER.name]), default=4500000000) + 1)
        currency = str(payload.get("DocumentCurrency") or "USD")
        rows, lines = [], []
        for position, item in enumerate(items, start=1):
            sku = str(item.get("Material") or "")
            if (sku,) not in self.data[PRODUCT.name]:
                raise ODataError(400, "M3/305", f"Material {sku} does not exist")
            try:
                quantity, price = Decimal(str(item.get("OrderQuantity"))), Decimal(str(item.get("NetPriceAmount")))
            except InvalidOperation:
                quantity, price = Decimal(0), Decimal(0)
            if quantity <= 0 or price < 0:
                raise ODataError(400, "ME/076", f"Enter a quantity greater than zero and a price for material {sku}")
            item_number = str(item.get("PurchaseOrderItem") or 10 * position)
            rows.append({"PurchaseOrder": number, "PurchaseOrderItem": item_number,
                         "PurchaseOrderItemText": self._description(sku), "Plant": str(item.get("Plant") or PLANT),
                         "Material": sku, "PurchaseOrderQuantityUnit": str(item.get("PurchaseOrderQuantityUnit")
                                                                           or "EA"),
                         "DocumentCurrency": currency, "PurchaseOrderItemCategory": "0",
                         "OrderQuantity": f"{quantity:.3f}", "NetPriceAmount": f"{price:.2f}",
                         "NetPriceQuantity": "1"})
            schedule = item.get("to_ScheduleLine") or []
            if isinstance(schedule, dict):
                schedule = schedule.get("results") or []
            for n, line in enumerate(schedule, start=1):
                delivery = str(line.get("ScheduleLineDeliveryDate") or "")
                if property_value("Edm.DateTime", delivery) is None:
                    raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid Edm.DateTime value '{delivery}'")
                scheduled = Decimal(str(line.get("ScheduleLineOrderQuantity") or quantity))
                lines.append({"PurchasingDocument": number, "PurchasingDocumentItem": item_number,
                              "ScheduleLine": str(n), "ScheduleLineDeliveryDate": delivery,
                              "ScheduleLineOrderQuantity": f"{scheduled:.3f}"})
        ordered = str(payload.get("PurchaseOrderDate") or "")
        now = datetime.fromtimestamp(self.now(), UTC)
        if ordered and property_value("Edm.DateTime", ordered) is None:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/004", f"Invalid Edm.DateTime value '{ordered}'")
        order = {name: "" for name, kind in PURCHASE_ORDER.types.items() if kind == "Edm.String"}
        order.update({k: payload[k] for k in PURCHASE_ORDER.types if payload.get(k) not in (None, "")})
        order.update({"PurchaseOrder": number, "PurchasingProcessingStatus": "05", "CreatedByUser": "CB9980000010",
                      "DocumentCurrency": currency, "CreationDate": edm_datetime(now),
                      "LastChangeDateTime": edm_datetimeoffset(now), "PurchaseOrderDate": ordered or edm_datetime(now),
                      "Language": str(payload.get("Language") or "EN")})
        self._put(PURCHASE_ORDER, order)
        for row in rows:
            self._put(PURCHASE_ORDER_ITEM, row)
        for line in lines:
            self._put(PURCHASE_ORDER_SCHEDULE_LINE, line)
        return order

    # -- ground truth and change --------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        entity, expand = STREAMS[stream]
        rows = sorted(self.data[entity.name].values(), key=lambda r: [_sort_value(r[k]) for k in entity.keys])
        return [self.render(entity, r, self.root, expand) for r in rows]

    def touch(self, stream: str, count: int) -> list[str]:
        entity, _ = STREAMS[stream]
        now = datetime.fromtimestamp(self.now(), UTC)
        touched = []
        with self.sandbox.lock:
            rows = sorted(self.data[entity.name].values(), key=lambda r: [_sort_value(r[k]) for k in entity.keys])
            for record in rows[:count]:
                if stream == "business_partners":
                    record["SearchTerm2"] = f"T{now.strftime('%H%M%S%f')}"[:20]
                    record.update(LastChangeDate=edm_datetime(now), LastChangeTime=edm_time(now),
                                  LastChangedByUser="CB9980000011")
                elif stream == "products":
                    record["GrossWeight"] = f"{Decimal(record['GrossWeight']) + Decimal('0.100'):.3f}"
                    record.update(LastChangeDate=edm_datetime(now), LastChangeDateTime=edm_datetimeoffset(now))
                elif stream == "material_stock":  # a goods receipt: stock has no change timestamp to move
                    quantity = Decimal(record["MatlWrhsStkQtyInMatlBaseUnit"]) + 5
                    record["MatlWrhsStkQtyInMatlBaseUnit"] = f"{quantity:.3f}"
                else:
                    moved = property_value("Edm.DateTime", record["RequestedDeliveryDate"]) + 86_400_000
                    record["RequestedDeliveryDate"] = f"/Date({moved})/"
                    record.update(LastChangeDate=edm_datetime(now), LastChangeDateTime=edm_datetimeoffset(now))
                rendered = self.render(entity, record, self.root)
                touched.append(rendered["__metadata"]["id"] if stream == "material_stock"
                               else str(record[entity.keys[0]]))
        return touched


EMULATOR = SapEmulator
