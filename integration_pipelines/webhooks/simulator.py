"""The sandbox's activity simulator: business events, delivered to the receiver signed as the vendors sign them.

It changes the sandbox's world through its control API (`POST /_sandbox/<system>/<stream>/touch`, then `GET
/_sandbox/<system>/<stream>` for the changed records), builds the vendor's event around each change (payment
succeeded, Stripe and Square refunds, new lead from a web form, contact/invoice changes, stock change, now and then
a subscription that changes status at Stripe or Square), signs it with the same fake secrets the receiver accepts by
default, and retries non-2xx answers with the vendor's kind of exponential backoff, bounded in attempts and to
loopback addresses only (it is a demo tool, not a sender).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer

from .config import WebhookSecrets, WebhookSettings, load_webhook_secrets, load_webhook_settings

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Delivery:
    provider: str
    path: str
    body: bytes
    headers: dict[str, str]


def _b64_hmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


class Signer:
    """Signs a body as each vendor does (the project's own signer; tests also use the vendors' SDKs)."""

    def __init__(self, secrets: WebhookSecrets, config: WebhookSettings) -> None:
        self.secrets = secrets
        self.config = config

    def sign(self, provider: str, body: bytes, *, now: float | None = None, event_id: str = "",
             topic: str = "") -> Delivery:
        now = time.time() if now is None else now
        s = self.secrets.primary
        path = f"/webhooks/{provider}"
        headers = {"content-type": "application/json"}
        if provider == "stripe":
            t = int(now)
            digest = hmac.new(s("stripe_webhook_secret").encode(), f"{t}.".encode() + body, hashlib.sha256)
            headers["stripe-signature"] = f"t={t},v1={digest.hexdigest()}"
        elif provider == "standard":
            raw = s("standard_webhook_secret").removeprefix("whsec_")
            key = base64.b64decode(raw + "=" * (-len(raw) % 4))
            msg_id = event_id or f"msg_{uuid.uuid4().hex}"
            headers |= {"webhook-id": msg_id, "webhook-timestamp": str(int(now)),
                        "webhook-signature": "v1," + _b64_hmac(key, f"{msg_id}.{int(now)}.".encode() + body)}
        elif provider == "square":
            url = self.config.endpoint_url(path).encode()
            headers["x-square-hmacsha256-signature"] = _b64_hmac(s("square_webhook_signature_key"), url + body)
        elif provider == "hubspot":
            stamp = str(int(now * 1000))
            message = b"POST" + self.config.endpoint_url(path).encode() + body + stamp.encode()
            headers |= {"x-hubspot-signature-v3": _b64_hmac(s("hubspot_webhook_secret"), message),
                        "x-hubspot-request-timestamp": stamp}
        elif provider == "shopify":
            headers |= {"x-shopify-hmac-sha256": _b64_hmac(s("shopify_webhook_secret"), body),
                        "x-shopify-topic": topic, "x-shopify-webhook-id": event_id or str(uuid.uuid4()),
                        "x-shopify-shop-domain": "sandbox-shop.myshopify.com", "x-shopify-api-version": "2025-10",
                        "x-shopify-triggered-at": datetime.fromtimestamp(now, UTC).isoformat()}
        elif provider == "xero":
            headers["x-xero-signature"] = _b64_hmac(s("xero_webhook_key"), body)
        elif provider == "quickbooks":
            headers["intuit-signature"] = _b64_hmac(s("quickbooks_webhook_verifier_token"), body)
        elif provider in ("forms", "odoo"):
            path = f"/webhooks/{provider}/{s(f'{provider}_webhook_token')}"
        elif provider == "salesforce":
            headers["content-type"] = "text/xml; charset=utf-8"
            headers["soapaction"] = '""'
        return Delivery(provider, path, body, headers)


def deliver(client: httpx.Client, base_url: str, delivery: Delivery, *, attempts: int = 5, base_delay: float = 0.5,
            sleep: Callable[[float], None] = time.sleep) -> int:
    """POST with the vendors' retry behaviour: on non-2xx or a connection error, exponential backoff with
    jitter, at most `attempts` tries. Returns the last status (0 = never connected)."""
    host = urlsplit(base_url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError("the simulator only delivers to a loopback receiver")
    status = 0
    for attempt in range(attempts):
        try:
            status = client.post(base_url.rstrip("/") + delivery.path, content=delivery.body,
                                 headers=delivery.headers).status_code
            if 200 <= status < 300:
                return status
        except httpx.TransportError:
            status = 0
        if attempt + 1 < attempts:
            sleep(base_delay * 2**attempt * (0.5 + random.random() / 2))
    return status


def _body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Simulator:
    """Creates one business event at a time from the sandbox's world."""

    def __init__(self, sandbox_url: str, signer: Signer, rng: random.Random | None = None) -> None:
        self.sandbox_url = sandbox_url.rstrip("/")
        self.signer = signer
        self.rng = rng or random.Random()

    def _get(self, client: httpx.Client, system: str, stream: str) -> list[dict[str, Any]]:
        return client.get(f"{self.sandbox_url}/_sandbox/{system}/{stream}").json()

    def _touch(self, client: httpx.Client, system: str, stream: str) -> dict[str, Any] | None:
        ids = client.post(f"{self.sandbox_url}/_sandbox/{system}/{stream}/touch", params={"count": 1}).json()
        touched = set(ids.get("touched", []))
        key = "Id" if system == "quickbooks" else "id"
        return next((r for r in self._get(client, system, stream) if str(r.get(key)) in touched), None)

    def payment_succeeded(self, client: httpx.Client) -> Delivery:
        """A customer pays one of their open accounting invoices by card: a new Stripe charge, then its event.

        Falls back to re-announcing an existing charge when no open invoice has a Stripe customer."""
        stripe_emails = {(c.get("email") or "").lower() for c in self._get(client, "stripe", "customers")}
        # a customer pays an invoice once: one already named by a charge is not paid again (the books may not show
        # it yet, or keep it in another entity's books), which would make every later charge a double payment
        paid = {number.strip() for c in self._get(client, "stripe", "charges")
                for key in ("accounting_invoice", "accounting_invoices")
                for number in str((c.get("metadata") or {}).get(key) or "").split(",") if number.strip()}
        open_invoices = [i for i in self._get(client, "quickbooks", "invoices")
                         if float(i.get("Balance") or 0) > 0 and i.get("DocNumber") not in paid
                         and (i.get("BillEmail") or {}).get("Address", "").lower() in stripe_emails]
        if open_invoices:
            invoice = self.rng.choice(open_invoices)
            response = client.post(f"{self.sandbox_url}/_sandbox/stripe/charges/simulate", json={
                "email": invoice["BillEmail"]["Address"], "invoice_number": invoice["DocNumber"],
                "amount": round(float(invoice["Balance"]) * 100),
                "currency": (invoice.get("CurrencyRef") or {}).get("value", "USD")})
            if response.status_code == 200:
                return self._stripe("charge.succeeded", response.json())
        charge = self.rng.choice(self._get(client, "stripe", "charges"))
        return self._stripe("charge.succeeded", charge)

    def refund(self, client: httpx.Client) -> Delivery:
        charge = self._touch(client, "stripe", "charges")
        return self._stripe("charge.refunded", charge or {})

    def square_refund(self, client: httpx.Client) -> Delivery:
        """A seller refunds part of a Square payment in the Dashboard, and Square's `refund.created` event, which
        carries the PaymentRefund with its own amount (the payment itself only lists its refunds' ids and total).
        Falls back to a Stripe refund when no Square payment has anything left to refund."""
        payments = [p for p in self._get(client, "square", "payments")
                    if p["amount_money"]["amount"] - (p.get("refunded_money") or {}).get("amount", 0) >= 100]
        if not payments:
            return self.refund(client)
        payment = self.rng.choice(payments)
        left = payment["amount_money"]["amount"] - (payment.get("refunded_money") or {}).get("amount", 0)
        response = client.post(f"{self.sandbox_url}/_sandbox/square/refunds/simulate", json={
            "payment": payment["id"], "amount": min(left, self.rng.choice([100, 250, 500, 1000])),
            "reason": "Returned goods"})
        if response.status_code != 200:
            return self.refund(client)
        refund = response.json()
        event = {"merchant_id": "MLSANDBOX0000", "type": "refund.created", "event_id": str(uuid.uuid4()),
                 "created_at": datetime.now(UTC).isoformat(),
                 "data": {"type": "refund", "id": refund["id"], "object": {"refund": refund}}}
        return self.signer.sign("square", _body(event))

    def _stripe(self, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> Delivery:
        data: dict[str, Any] = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {"id": f"evt_sim_{uuid.uuid4().hex[:24]}", "object": "event", "api_version": "2025-09-30.clover",
                 "created": int(time.time()), "type": kind, "livemode": False, "pending_webhooks": 1,
                 "data": data}
        return self.signer.sign("stripe", _body(event))

    def subscription_changed(self, client: httpx.Client) -> Delivery:
        """A subscription changes by itself at Stripe or Square (through the control API's `simulate`), and the
        processor's event about it: a trial ends (Stripe trialing → active, Square PENDING → ACTIVE), a renewal
        payment fails (active → past_due; Square stops billing: DEACTIVATED), a failed one is paid after all, or, one
        time in five, it is canceled. Falls back to a payment when no subscription can change any more."""
        processor = self.rng.choice(["stripe", "square"])
        ended = ("canceled", "incomplete_expired", "CANCELED")
        live = [s for s in self._get(client, processor, "subscriptions") if s.get("status") not in ended]
        if not live:
            return self.payment_succeeded(client)
        subscription = self.rng.choice(live)
        before = subscription["status"]
        if processor == "stripe":
            after = {"trialing": "active", "active": "past_due", "past_due": "active", "unpaid": "active",
                     "incomplete": "active", "paused": "active"}.get(before, "canceled")
            after = "canceled" if self.rng.random() < 0.2 else after
        else:
            after = {"PENDING": "ACTIVE", "ACTIVE": "DEACTIVATED"}.get(before, "ACTIVE")
            after = "CANCELED" if self.rng.random() < 0.2 else after
        response = client.post(f"{self.sandbox_url}/_sandbox/{processor}/subscriptions/simulate",
                               json={"subscription": subscription["id"], "status": after})
        changed = response.json() if response.status_code == 200 else subscription
        if processor == "stripe":
            kind = "customer.subscription.deleted" if after == "canceled" else "customer.subscription.updated"
            return self._stripe(kind, changed, None if after == "canceled" else {"status": before})
        event = {"merchant_id": "MLSANDBOX0000", "type": "subscription.updated",
                 "event_id": str(uuid.uuid4()), "created_at": datetime.now(UTC).isoformat(),
                 "data": {"type": "subscription", "id": changed["id"], "object": {"subscription": changed}}}
        return self.signer.sign("square", _body(event))

    def new_lead(self, client: httpx.Client) -> Delivery:
        n = uuid.uuid4().hex[:8]
        form = {"submission_id": f"sub_{n}", "email": f"lead-{n}@example.test", "firstname": "Sim",
                "lastname": f"Lead {n}", "company": "Example Co", "source": "website contact form",
                "submitted_at": datetime.now(UTC).isoformat()}
        return self.signer.sign("forms", _body(form))

    def contact_changed(self, client: httpx.Client) -> Delivery:
        contact = self._touch(client, "hubspot", "contacts") or {"id": "0", "properties": {}}
        now = int(time.time() * 1000)
        events = [{"eventId": self.rng.randrange(10**9, 10**10), "subscriptionId": 1, "portalId": 62515,
                   "appId": 1, "occurredAt": now, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                   "objectId": int(contact["id"]) if str(contact["id"]).isdigit() else contact["id"],
                   "propertyName": "lifecyclestage",
                   "propertyValue": contact.get("properties", {}).get("lifecyclestage"), "changeSource": "CRM"}]
        return self.signer.sign("hubspot", _body(events))

    def invoice_changed(self, client: httpx.Client) -> Delivery:
        invoice = self._touch(client, "quickbooks", "invoices") or {"Id": "0", "MetaData": {}}
        note = {"eventNotifications": [{"realmId": "9130350000000000", "dataChangeEvent": {"entities": [
            {"name": "Invoice", "id": invoice["Id"], "operation": "Update",
             "lastUpdated": invoice.get("MetaData", {}).get("LastUpdatedTime")}]}}]}
        return self.signer.sign("quickbooks", _body(note))

    def stock_changed(self, client: httpx.Client) -> Delivery:
        level = {"inventory_item_id": self.rng.randrange(1000, 1010), "location_id": 655441491,
                 "available": self.rng.randrange(0, 50), "updated_at": datetime.now(UTC).isoformat()}
        return self.signer.sign("shopify", _body(level), topic="inventory_levels/update")

    def next_event(self, client: httpx.Client) -> Delivery:
        makers = [self.payment_succeeded, self.payment_succeeded, self.refund, self.square_refund, self.new_lead,
                  self.contact_changed, self.invoice_changed, self.stock_changed, self.subscription_changed]
        return self.rng.choice(makers)(client)


def simulate(
    receiver_url: Annotated[str, typer.Option(help="the webhook receiver (loopback only)")] = "",
    sandbox_url: Annotated[str, typer.Option(help="the sandbox; default IP_SANDBOX_URL")] = "",
    interval: Annotated[float, typer.Option(help="seconds between events")] = 3.0,
    count: Annotated[int, typer.Option(help="events to send; 0 = until stopped")] = 0,
    seed: Annotated[int | None, typer.Option(help="random seed, for a repeatable sequence")] = None,
) -> None:
    """Create business events in the sandbox and deliver them, signed, to the webhook receiver."""
    from ..settings import load_settings

    config = load_webhook_settings()
    signer = Signer(load_webhook_secrets(), config)
    simulator = Simulator(sandbox_url or load_settings().sandbox_url, signer, random.Random(seed))
    target = receiver_url or config.public_url
    sent = 0
    with httpx.Client(timeout=10) as client:
        while count == 0 or sent < count:
            delivery = simulator.next_event(client)
            status = deliver(client, target, delivery)
            typer.echo(f"{delivery.provider} {delivery.path.split('/')[2]} → {status}")
            sent += 1
            if count == 0 or sent < count:
                time.sleep(interval)


simulate_app = typer.Typer(help="Simulate business activity and signed webhooks against the sandbox.")
simulate_app.callback(invoke_without_command=True)(simulate)
