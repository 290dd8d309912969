"""How a provider's payload is parsed, identified, and turned into rows for the raw tables.

Why here and not in the receiver: the receiver only needs a payload's id and type (to land it once); the ingest
run needs to know which object snapshots an event carries. Both read the same functions, so a payload the
receiver accepted can always be applied. Events that carry the whole object (Stripe `data.object`, Shopify's
body, Square's `data.object.<type>`) upsert `raw_<system>.<stream>` with the same keys as extraction; events that
only name a change (HubSpot, Xero, QuickBooks, Salesforce, Odoo) go to `raw_<provider>.events` for a later API
fetch. Every event also becomes one row of `raw_webhooks.events`.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from ..connectors.registry import discover_systems
from ..warehouse.batches import canonical_json

PROVIDERS = ("stripe", "standard", "square", "hubspot", "shopify", "xero", "quickbooks", "salesforce", "forms",
             "odoo")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class MalformedPayload(ValueError):
    """The body passed verification but is not what this provider sends."""


# -- parsing --------------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_salesforce(body: bytes) -> dict[str, Any]:
    """A Salesforce outbound message (SOAP `notifications`) as a dict. No DTDs or entities: untrusted XML, read
    before the org id is known. Salesforce sends UTF-8; the body is decoded first and the parser gets text, so an
    encoding declaration (or UTF-16 without a byte order mark, which is valid UTF-8 full of NULs) cannot switch expat
    to another encoding and slip a DTD past the check below."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("an outbound message must be UTF-8 XML") from None
    if "\x00" in text:
        raise MalformedPayload("an outbound message must be UTF-8 XML (it holds NUL bytes)")
    if _DTD.search(text):
        raise MalformedPayload("XML with a DTD or entity declarations is refused")
    try:
        parser = ET.XMLParser(encoding="utf-8")  # overrides whatever encoding the document declares
        parser.feed(text.encode("utf-8"))
        root = parser.close()
    except ET.ParseError as exc:
        raise MalformedPayload(f"not XML: {exc}") from None
    notifications = next((el for el in root.iter() if _local(el.tag) == "notifications"), None)
    if notifications is None:
        raise MalformedPayload("no <notifications> element")
    out: dict[str, Any] = {"notifications": []}
    for child in notifications:
        name = _local(child.tag)
        if name == "Notification":
            item: dict[str, Any] = {"sObject": {}}
            for part in child:
                if _local(part.tag) == "Id":
                    item["Id"] = (part.text or "").strip()
                elif _local(part.tag) == "sObject":
                    item["sObject"] = {"type": (part.get(XSI_TYPE) or "").split(":")[-1],
                                       **{_local(f.tag): f.text for f in part}}
            out["notifications"].append(item)
        elif name != "SessionId":  # a live session token when "Send Session ID" is on: never kept
            out[name] = (child.text or "").strip()
    if not out.get("OrganizationId"):
        raise MalformedPayload("no OrganizationId")
    return out


def parse_body(provider: str, body: bytes, content_type: str = "") -> Any:
    """The payload as Python data; raises MalformedPayload. Called only after the signature is verified."""
    if provider == "salesforce":
        return parse_salesforce(body)
    if provider == "forms" and "application/x-www-form-urlencoded" in content_type:
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            raise MalformedPayload("bad form encoding") from None
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload("body is not JSON") from None
    except RecursionError:  # `[[[[…` a few thousand deep: the decoder recurses per level
        raise MalformedPayload("JSON nested too deeply") from None
    if not isinstance(payload, dict | list):
        raise MalformedPayload("JSON body must be an object or an array")
    return payload


def _digest(value: Any) -> str:
    data = value if isinstance(value, bytes) else canonical_json(value).encode()
    return hashlib.sha256(data).hexdigest()[:40]


def _batch_id(ids: list[str], fallback: Any) -> str:
    """One event → its own id; a batch → a digest of its sorted ids (a redelivered batch keeps it)."""
    ids = [i for i in ids if i]
    if len(ids) == 1:
        return ids[0]
    return "b-" + _digest(sorted(ids) if ids else fallback)


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    """`value` as a list of JSON objects, or MalformedPayload naming what was expected."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedPayload(f"{what} must be an array of objects")
    return value


def _object_or_absent(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be an object")
    return value


def _check_shapes(provider: str, payload: Any) -> None:
    """What `rows_for` walks must have the shape it expects, so every acknowledged event can be applied: a
    validly signed but oddly shaped body is refused here (400, nothing landed) instead of failing at ingest."""
    if provider == "stripe":
        data = _object_or_absent(payload.get("data"), "a Stripe event's data")
        _object_or_absent(data.get("object"), "a Stripe event's data.object")
    elif provider == "square":
        data = _object_or_absent(payload.get("data"), "a Square event's data")
        obj = _object_or_absent(data.get("object"), "a Square event's data.object")
        if str(data.get("type", "")) == "inventory" or "inventory_counts" in obj:
            counts = _objects(obj.get("inventory_counts") or [], "a Square event's data.object.inventory_counts")
            key = _spec_keys().get(("square", "inventory_counts"), ("catalog_object_id", None))[0]
            if any(c.get(key) in (None, "") for c in counts):  # else every such count would upsert the key "None"
                raise MalformedPayload(f"a Square inventory count has no {key}")
    elif provider == "xero":
        _objects(payload.get("events"), "a Xero notification's events")
    elif provider == "quickbooks" and isinstance(payload, dict) and "eventNotifications" in payload:
        for note in _objects(payload["eventNotifications"], "QuickBooks eventNotifications"):
            change = _object_or_absent(note.get("dataChangeEvent"), "a QuickBooks dataChangeEvent")
            _objects(change.get("entities", []), "a QuickBooks dataChangeEvent's entities")


def identify(provider: str, headers: Mapping[str, str], payload: Any, body: bytes) -> tuple[str, str]:
    """(the provider's event id, event type) used to dedupe and name the landed file."""
    event_id, kind = _identify(provider, headers, payload, body)
    _check_shapes(provider, payload)
    return event_id, kind


def _identify(provider: str, headers: Mapping[str, str], payload: Any, body: bytes) -> tuple[str, str]:
    if provider == "stripe":
        if not isinstance(payload, dict) or not payload.get("id") or not payload.get("type"):
            raise MalformedPayload("a Stripe event has id and type")
        return str(payload["id"]), str(payload["type"])
    if provider == "standard":
        kind = payload.get("type", "") if isinstance(payload, dict) else ""
        return headers.get("webhook-id") or headers.get("svix-id") or _digest(body), str(kind)
    if provider == "square":
        if not isinstance(payload, dict) or not payload.get("event_id"):
            raise MalformedPayload("a Square event has event_id")
        return str(payload["event_id"]), str(payload.get("type", ""))
    if provider == "hubspot":
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(e, dict) for e in events):
            raise MalformedPayload("HubSpot sends an array of event objects")
        kinds = sorted({str(e.get("subscriptionType", "")) for e in events})
        return _batch_id([str(e.get("eventId", "")) for e in events], payload), ",".join(kinds)
    if provider == "shopify":
        webhook_id = headers.get("x-shopify-webhook-id") or headers.get("x-shopify-event-id")
        if not webhook_id:
            raise MalformedPayload("missing X-Shopify-Webhook-Id")
        return webhook_id, headers.get("x-shopify-topic", "")
    if provider == "xero":
        if not isinstance(payload, dict):
            raise MalformedPayload("a Xero notification has an events array")
        _objects(payload.get("events"), "a Xero notification's events")
        kinds = sorted({f"{e.get('eventCategory', '')}.{e.get('eventType', '')}" for e in payload["events"]})
        return "b-" + _digest(body), ",".join(kinds)
    if provider == "quickbooks":
        if isinstance(payload, dict) and isinstance(payload.get("eventNotifications"), list):
            _check_shapes(provider, payload)
            kinds = sorted({f"{ent.get('name')}.{ent.get('operation')}" for n in payload["eventNotifications"]
                            for ent in (n.get("dataChangeEvent") or {}).get("entities", [])})
            return "b-" + _digest(body), ",".join(kinds)
        events = payload if isinstance(payload, list) else [payload]
        if not events or not all(isinstance(e, dict) and e.get("specversion") and e.get("id") for e in events):
            raise MalformedPayload("neither eventNotifications nor CloudEvents")
        return _batch_id([str(e["id"]) for e in events], payload), ",".join(sorted({str(e.get("type"))
                                                                                   for e in events}))
    if provider == "salesforce":
        ids = [n.get("Id", "") for n in payload["notifications"]]
        kinds = sorted({n["sObject"].get("type", "") for n in payload["notifications"]})
        return _batch_id(ids, payload), ",".join(kinds)
    if provider == "forms":
        given = headers.get("idempotency-key") or headers.get("x-request-id")
        if not given and isinstance(payload, dict):
            given = payload.get("submission_id") or payload.get("id")
        return str(given) if given else "b-" + _digest(body), "form.submitted"
    if provider == "odoo":
        if not isinstance(payload, dict) or "_model" not in payload:
            raise MalformedPayload("an Odoo webhook carries _model")
        return "b-" + _digest(body), f"{payload.get('_model')}.{payload.get('_action', 'changed')}"
    raise MalformedPayload(f"unknown provider {provider}")


# -- snapshots ----------------------------------------------------------------------------------------
@dataclass
class Row:
    """A record for `raw_<system>.<stream>`, with its primary key and change cursor."""

    system: str
    stream: str
    pk: str
    record: dict[str, Any]
    cursor: str | None = None
    version: datetime | None = None  # when the snapshot was true at the provider; None = when it was applied


@dataclass
class Applied:
    rows: list[Row] = field(default_factory=list)


def _spec_keys() -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(s.name, st.name): (st.primary_key, st.cursor_field) for s in discover_systems() for st in s.streams}


def _snapshot(system: str, stream: str, record: dict[str, Any], default_pk: str = "id",
              cursor_field: str | None = None) -> Row:
    pk_field, spec_cursor = _spec_keys().get((system, stream), (default_pk, cursor_field))
    pk = record.get(pk_field)
    if pk is None:
        raise MalformedPayload(f"{system}.{stream} snapshot has no {pk_field}")
    cursor = record.get(spec_cursor) if spec_cursor else None
    return Row(system, stream, str(pk), record, None if cursor is None else str(cursor))


def _moment(value: Any, fmt: str) -> datetime | None:
    """A provider's timestamp as an aware datetime, or None when absent or unreadable: an event without a usable
    time is applied as of its arrival (the version guard then treats it as new), never refused for it."""
    if value in (None, ""):
        return None
    try:
        if fmt == "unix":
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _versioned(row: Row, version: datetime | None) -> Row:
    row.version = version
    return row


def _event_row(provider: str, pk: str, record: dict[str, Any]) -> Row:
    return Row(provider, "events", pk, record)


def _stripe_streams() -> dict[str, str]:
    """Stripe's object type → stream, from the Stripe spec's change feed: a webhook and the Events API carry the
    same events, so both apply them to the same tables."""
    from ..connectors.registry import get_system

    try:
        feeds = [s.snapshots for s in get_system("stripe").streams if s.snapshots is not None]
    except KeyError:  # no Stripe spec in this deployment: its events are kept as notices
        feeds = []
    return dict(feeds[0].streams) if feeds else {}


STRIPE_STREAMS = _stripe_streams()
SHOPIFY_STREAMS = {"orders": "orders", "products": "products", "customers": "customers",
                   "inventory_levels": "inventory_levels", "refunds": "refunds", "fulfillments": "fulfillments"}


def _spec_key(system: str, stream: str, record: dict[str, Any]) -> str:
    """The key the extract uses for this stream (its spec's primary key), so events and reads upsert alike."""
    from ..connectors.http import json_path
    from ..connectors.registry import get_system

    return str(json_path(record, get_system(system).stream(stream).primary_key))


def rows_for(provider: str, event_id: str, headers: Mapping[str, str], payload: Any) -> list[Row]:
    """The raw-table rows one landed event yields (besides its `raw_webhooks.events` row)."""
    if provider == "stripe":
        obj = (payload.get("data") or {}).get("object")
        stream = STRIPE_STREAMS.get(str((obj or {}).get("object", "")))
        if stream and isinstance(obj, dict) and obj.get("id"):
            return [_versioned(_snapshot("stripe", stream, obj), _moment(payload.get("created"), "unix"))]
        return [_event_row("stripe", event_id, payload)]
    if provider == "square":
        data = payload.get("data") or {}
        kind = str(data.get("type", ""))
        obj = (data.get("object") or {}).get(kind)
        if isinstance(obj, dict) and obj.get("id"):
            version = _moment(obj.get("updated_at"), "iso") or _moment(payload.get("created_at"), "iso")
            return [_versioned(_snapshot("square", f"{kind}s", obj), version)]
        if kind == "inventory" or isinstance((data.get("object") or {}).get("inventory_counts"), list):
            counts = (data.get("object") or {}).get("inventory_counts") or []
            return [Row("square", "inventory_counts", _spec_key("square", "inventory_counts", c), c,
                        c.get("calculated_at"), _moment(c.get("calculated_at"), "iso")) for c in counts]
        return [_event_row("square", event_id, payload)]
    if provider == "shopify":
        topic = headers.get("x-shopify-topic", "")
        triggered = _moment(headers.get("x-shopify-triggered-at"), "iso")
        stream = SHOPIFY_STREAMS.get(topic.split("/")[0])
        if stream == "inventory_levels" and isinstance(payload, dict):
            # the extract keys levels by Shopify's own id for the (item, location) pair; build it when absent
            payload.setdefault("admin_graphql_api_id", f"gid://shopify/InventoryLevel/{payload.get('location_id')}"
                                                       f"?inventory_item_id={payload.get('inventory_item_id')}")
            return [Row("shopify", stream, _spec_key("shopify", stream, payload), payload, payload.get("updated_at"),
                        _moment(payload.get("updated_at"), "iso") or triggered)]
        if stream and isinstance(payload, dict) and payload.get("id") is not None:
            return [_versioned(_snapshot("shopify", stream, payload, cursor_field="updated_at"),
                               _moment(payload.get("updated_at"), "iso") or triggered)]
        return [_event_row("shopify", event_id, {"topic": topic, "payload": payload})]
    if provider == "hubspot":
        events = payload if isinstance(payload, list) else [payload]
        return [_event_row("hubspot", str(e.get("eventId") or _digest(e)), e) for e in events]
    if provider == "xero":
        return [_event_row("xero", _digest(e), e) for e in payload["events"]]
    if provider == "quickbooks":
        if isinstance(payload, dict) and "eventNotifications" in payload:
            rows = []
            for note in payload["eventNotifications"]:
                for entity in (note.get("dataChangeEvent") or {}).get("entities", []):
                    record = {"realmId": note.get("realmId"), **entity}
                    rows.append(_event_row("quickbooks", _digest(record), record))
            return rows
        events = payload if isinstance(payload, list) else [payload]
        return [_event_row("quickbooks", str(e["id"]), e) for e in events]
    if provider == "salesforce":
        return [_event_row("salesforce", n.get("Id") or _digest(n),
                           {"OrganizationId": payload.get("OrganizationId"), "ActionId": payload.get("ActionId"),
                            **n}) for n in payload["notifications"]]
    if provider == "forms":
        record = payload if isinstance(payload, dict) else {"items": payload}
        return [Row("forms", "submissions", event_id, record)]
    if provider == "odoo":
        return [_event_row("odoo", event_id, payload)]
    return [_event_row(provider, event_id, payload if isinstance(payload, dict) else {"items": payload})]
