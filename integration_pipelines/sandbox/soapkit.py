"""What the SOAP emulators share: a hardened request parser, envelope and fault builders, WSDL serving.

The emulators parse requests with lxml directly (not zeep): a vendor twin must judge what a client sends, so it
reads the XML the way the vendor's server would, by element names, and answers in the vendor's own shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "huge_tree": False, "load_dtd": False}


class BadRequest(Exception):
    """The request is not a SOAP envelope the emulator can read."""


def parse_request(body: bytes) -> tuple[etree._Element, str]:
    """(envelope root, SOAP namespace); refuses DTDs exactly as a careful server does."""
    try:
        root = etree.fromstring(body, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise BadRequest("DOCTYPE is not allowed")
    ns = etree.QName(root).namespace
    if ns not in (SOAP11, SOAP12) or etree.QName(root).localname != "Envelope":
        raise BadRequest("not a SOAP envelope")
    return root, ns


def local(node: etree._Element) -> str:
    return etree.QName(node).localname


def child(node: etree._Element | None, name: str) -> etree._Element | None:
    """The first child with this local name, whatever its namespace."""
    if node is None:
        return None
    for item in node:
        if isinstance(item.tag, str) and local(item) == name:
            return item
    return None


def children(node: etree._Element | None, name: str) -> list[etree._Element]:
    if node is None:
        return []
    return [item for item in node if isinstance(item.tag, str) and local(item) == name]


def text(node: etree._Element | None, name: str) -> str | None:
    found = child(node, name)
    return None if found is None or found.text is None else found.text.strip()


def body_and_header(root: etree._Element, ns: str) -> tuple[etree._Element, etree._Element | None]:
    body = root.find(f"{{{ns}}}Body")
    if body is None or len(body) == 0:
        raise BadRequest("the envelope has no Body")
    operation = next(item for item in body if isinstance(item.tag, str))
    return operation, root.find(f"{{{ns}}}Header")


def xsi_type(node: etree._Element) -> str | None:
    """The local name of an `xsi:type` (`ns5:CustomerSearchBasic` → `CustomerSearchBasic`)."""
    value = node.get(f"{{{XSI}}}type")
    return value.split(":", 1)[-1] if value else None


def xml_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def envelope(ns: str, payload: etree._Element | None = None, *, header: etree._Element | None = None) -> bytes:
    prefix = "soapenv" if ns == SOAP11 else "env"
    root = etree.Element(f"{{{ns}}}Envelope", nsmap={prefix: ns, "xsi": XSI})
    if header is not None:
        etree.SubElement(root, f"{{{ns}}}Header").append(header)
    body = etree.SubElement(root, f"{{{ns}}}Body")
    if payload is not None:
        body.append(payload)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def soap_response(ns: str, payload: bytes, status: int = 200) -> Response:
    media = "text/xml; charset=utf-8" if ns == SOAP11 else "application/soap+xml; charset=utf-8"
    return Response(payload, status_code=status, media_type=media)


def fault11(code: str, message: str, detail: etree._Element | None = None, status: int = 500) -> Response:
    """A SOAP 1.1 Fault (faultcode, faultstring, detail) as HTTP 500, as SOAP 1.1 servers send every fault."""
    fault = etree.Element(f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    if detail is not None:
        etree.SubElement(fault, "detail").append(detail)
    return soap_response(SOAP11, envelope(SOAP11, fault), status)


def fault12(code: str, subcode: str | None, message: str, detail: etree._Element | None = None,
            status: int | None = None, nsmap: dict[str, str] | None = None) -> Response:
    """A SOAP 1.2 Fault; `env:Sender` faults travel as HTTP 400, `env:Receiver` ones as 500 (SOAP 1.2 part 2).
    `nsmap` declares the prefixes a subcode QName uses (`wsse:FailedAuthentication`)."""
    fault = etree.Element(f"{{{SOAP12}}}Fault", nsmap=nsmap or {})
    code_node = etree.SubElement(fault, f"{{{SOAP12}}}Code")
    etree.SubElement(code_node, f"{{{SOAP12}}}Value").text = code
    if subcode:
        sub = etree.SubElement(code_node, f"{{{SOAP12}}}Subcode")
        etree.SubElement(sub, f"{{{SOAP12}}}Value").text = subcode
    reason = etree.SubElement(fault, f"{{{SOAP12}}}Reason")
    reason_text = etree.SubElement(reason, f"{{{SOAP12}}}Text")
    reason_text.text = message
    reason_text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    if detail is not None:
        etree.SubElement(fault, f"{{{SOAP12}}}Detail").append(detail)
    if status is None:
        status = 400 if code.endswith("Sender") else 500
    return soap_response(SOAP12, envelope(SOAP12, fault), status)


def wsdl_response(name: str, request: Request, address_path: str) -> Response:
    """Serve a packaged WSDL with its service address pointing at this sandbox."""
    document = (WSDL_DIR / name).read_bytes()
    root = etree.fromstring(document, etree.XMLParser(**_PARSER_OPTIONS))
    base = str(request.base_url).rstrip("/")
    for node in root.iter():
        if isinstance(node.tag, str) and local(node) == "address" and node.get("location"):
            node.set("location", base + address_path)
    return Response(etree.tostring(root, xml_declaration=True, encoding="utf-8"), media_type="text/xml")


def add_text(parent: etree._Element, tag: str, value: Any) -> etree._Element:
    node = etree.SubElement(parent, tag)
    if isinstance(value, bool):
        node.text = "true" if value else "false"
    elif isinstance(value, datetime):
        node.text = xml_datetime(value)
    else:
        node.text = str(value)
    return node
