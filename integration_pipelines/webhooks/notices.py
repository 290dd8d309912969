"""Change notices that carry no object, and the streams they say have changed.

HubSpot, Xero, QuickBooks, Salesforce (outbound messages without all fields) and Odoo send "this record
changed" rather than the record. The event lane answers such a notice by reading the named stream through the
system's own read spec (an incremental read from the stream's cursor, or today's window for a stream partitioned
by day), so an event-driven scenario works for every provider that sends events, not only for those that
send whole objects. The maps below are the providers' documented vocabularies:

- HubSpot: `subscriptionType` `contact.*`, `company.*`, `deal.*` (a contact deletion or merge also archives; a
  contact or company notice other than a `propertyChange` also re-reads the contacts' company associations).
- Xero: `eventCategory` `INVOICE`, `CONTACT` (Xero's webhooks send only these two).
- QuickBooks: entity `name` (classic `eventNotifications`) or the CloudEvents `type` `qbo.<entity>.<op>.v1`; a
  deletion also reads ChangeDataCapture.
- Salesforce: the outbound message's `sObject` type.
- Odoo: the automated action's `_model`.

NetSuite, SAP and the legacy ERP send nothing; the change poll (`change_poll.py`) asks them what changed and lands
its own notice, `{"source": "change_poll", "stream": <stream>, …}` under the ERP's name, which names the stream to
read (only streams that poll watches: `CHANGE_POLLED`).
"""

from __future__ import annotations

from typing import Any

from ..connectors import legacy_erp, netsuite, sap

#: a deal notice (`deal.creation`, `deal.propertyChange`, `deal.associationChange`, ...) also re-reads the deals'
#: contact associations, which the incremental deal read cannot return
HUBSPOT = {"contact": ("contacts",), "company": ("companies",), "deal": ("deals", "deal_contacts")}
#: a contact or company notice that can move a contact → company association (`associationChange`, `creation`,
#: `deletion`, `merge`, `restore`, `privacyDeletion`: every kind but `propertyChange`, the most frequent by far)
#: re-reads `contact_companies`, the association list that the incremental contact read cannot return. It is a full
#: list of contacts (100 per request), so a property edit, which moves no association, does not pay for it.
HUBSPOT_ASSOCIATIONS = {"contact": "contact_companies", "company": "contact_companies"}
HUBSPOT_ARCHIVE = {"contact.deletion", "contact.merge", "contact.restore", "contact.privacyDeletion"}
XERO = {"INVOICE": ("invoices",), "CONTACT": ("contacts",)}
QUICKBOOKS = {"invoice": ("invoices",), "payment": ("payments",), "customer": ("customers",)}
#: a deleted transaction leaves QuickBooks' queries: its `Delete` notice (CloudEvents `qbo.<entity>.deleted.v1`) also
#: reads ChangeDataCapture, the one read that reports it
QUICKBOOKS_DELETIONS = {"invoice": "invoice_changes", "payment": "payment_changes"}
SALESFORCE = {"account": ("accounts",), "contact": ("contacts",), "opportunity": ("opportunities",),
              "case": ("cases",)}
ODOO = {"res.partner": ("partners",), "sale.order": ("sale_orders",), "purchase.order": ("purchase_orders",),
        "product.product": ("products",), "product.template": ("products",), "stock.quant": ("products",),
        "stock.move": ("products",)}
#: the ERPs the change poll watches (they have no webhooks): system → the streams its probes answer for
CHANGE_POLLED: dict[str, tuple[str, ...]] = {
    module.SYSTEM.name: tuple(module.CHANGE_PROBES) for module in (netsuite, legacy_erp, sap)}


def streams_for_notice(provider: str, notice: dict[str, Any]) -> set[tuple[str, str]]:
    """The (system, stream) pairs one notice says have changed; empty when it names nothing we read."""
    if provider == "hubspot":
        kind = str(notice.get("subscriptionType", ""))
        object_type, _, change = kind.partition(".")
        found = set(HUBSPOT.get(object_type, ()))
        if object_type in HUBSPOT_ASSOCIATIONS and change != "propertyChange":
            found.add(HUBSPOT_ASSOCIATIONS[object_type])
        if kind in HUBSPOT_ARCHIVE:
            found.add("archived_contacts")
    elif provider == "xero":
        found = set(XERO.get(str(notice.get("eventCategory", "")).upper(), ()))
    elif provider == "quickbooks":
        entity, operation = str(notice.get("name") or ""), str(notice.get("operation") or "")
        if not entity and str(notice.get("type", "")).startswith("qbo."):
            entity, operation = [*str(notice["type"]).split("."), "", ""][1:3]
        found = set(QUICKBOOKS.get(entity.lower(), ()))
        if operation.lower() in ("delete", "deleted") and entity.lower() in QUICKBOOKS_DELETIONS:
            found.add(QUICKBOOKS_DELETIONS[entity.lower()])
    elif provider == "salesforce":
        found = set(SALESFORCE.get(str((notice.get("sObject") or {}).get("type", "")).lower(), ()))
    elif provider == "odoo":
        found = set(ODOO.get(str(notice.get("_model", "")), ()))
    elif provider in CHANGE_POLLED and notice.get("source") == "change_poll":
        stream = str(notice.get("stream", ""))
        found = {stream} if stream in CHANGE_POLLED[provider] else set()
    else:
        found = set()
    return {(provider, stream) for stream in found}
