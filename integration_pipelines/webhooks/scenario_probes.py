"""S8 and S12 probes, beside probe.py's S1 `LeadProbe`: an event made the way the vendor makes it, posted to the
receiver, and its effect found through the target system's own API (never through the warehouse).

- S8 `PaymentProbe`: a card payment → an Odoo fulfillment order (`syncs/catalog/payments_to_odoo_fulfillment`).
  Each event is a new charge made through the Stripe API (`POST /v1/charges`) for a customer who qualifies (their
  golden customer has an active Odoo contact: the sync's source joins `core.customer_xref` to `raw_odoo.partners`),
  then Stripe's `charge.succeeded` event for it, signed with the Stripe webhook secret as Stripe signs it
  (`Stripe-Signature: t=..,v1=..`) and posted to `/webhooks/stripe`. Found when Odoo's `sale.order`
  `search_read` (JSON-RPC) returns an order whose `client_order_ref` is `stripe:<charge id>`.
- S12 `StockProbe`: a stock count in the ERP → the storefront's stock (`syncs/catalog/inventory_to_storefronts`,
  `inventory_to_shopify`). Each event sets a product's on-hand quantity in Odoo through its API (`stock.quant`
  `create` in inventory mode with `inventory_quantity_auto_apply`, as the sync's own Odoo writer does), then posts
  the automated action's webhook (`/webhooks/odoo/{path token}`, `_model: stock.quant`) as
  integration_pipelines_tests/test_event_lane_live.py does. Found when Shopify's `inventory_levels.json` shows
  that quantity **or a later one**: a stock level is a value, not a new record, so each event sets a distinct,
  increasing quantity on its SKU, and an event whose count was overtaken by the next one on the same SKU before
  it showed is reached when the later one shows (the storefront then holds a count at least as new as it).

Each probe also knows its floor (`floor_once`: the receiver's durable write for the same kind of event, then one
direct call to the same target API) and its exactly-once check (`once`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..connectors.odoo import RPC_PATH, rpc_body
from ..connectors.odoo import SYSTEM as ODOO
from ..connectors.shopify import API_ROOT as SHOPIFY_API
from ..connectors.shopify import SYSTEM as SHOPIFY
from ..connectors.stripe import SYSTEM as STRIPE
from .config import WebhookSecrets, WebhookSettings
from .probe import Sent
from .simulator import Signer

STRIPE_API_VERSION = "2025-09-30.clover"
STOCK_LOCATION_ID = 8  # Odoo's WH/Stock, the internal location stock counts are made in


class ProbeSetupError(RuntimeError):
    """The sandbox holds nothing this probe can use (no qualifying customer, no SKU sold in both systems)."""


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class Odoo:
    """Odoo's external JSON-RPC API, logged in once (`common.login` → uid)."""

    url: str
    db: str = ODOO.values["db"].sandbox or ""
    login: str = ODOO.values["login"].sandbox or ""
    api_key: str = ODOO.values["api_key"].sandbox or ""
    uid: int | None = None

    def call(self, client: httpx.Client, model: str, method: str, args: list[Any],
             kwargs: dict[str, Any] | None = None) -> Any:
        if self.uid is None:
            self.uid = self._rpc(client, rpc_body("common", "login", [self.db, self.login, self.api_key]))
            if not self.uid:
                raise ProbeSetupError("Odoo refused the sandbox login")
        return self._rpc(client, rpc_body("object", "execute_kw",
                                          [self.db, self.uid, self.api_key, model, method, args, kwargs or {}]))

    def _rpc(self, client: httpx.Client, body: dict[str, Any]) -> Any:
        answer = client.post(f"{self.url}{RPC_PATH}", json=body)
        answer.raise_for_status()
        data = answer.json()
        if "error" in data:
            error = data["error"].get("data") or data["error"]
            raise RuntimeError(f"Odoo: {error.get('name', '')}: {error.get('message', '')}"[:300])
        return data["result"]


def _signer() -> Signer:
    return Signer(WebhookSecrets(), WebhookSettings())


# -- S8 -------------------------------------------------------------------------------------------------
@dataclass
class Payer:
    customer_id: str
    currency: str
    partner_id: int  # their Odoo contact (for the floor's direct create)


@dataclass
class PaymentProbe:
    """S8: charges (Stripe API) + `charge.succeeded` webhooks → Odoo sale orders `client_order_ref = stripe:<id>`."""

    receiver_url: str
    sandbox_url: str
    tag: str
    payers: list[Payer] = field(default_factory=list)
    stripe_key: str = STRIPE.values["api_key"].sandbox or ""
    basis: str = "an earlier payment of theirs has a fulfillment order in Odoo"  # why the payers qualify
    sent: list[Sent] = field(default_factory=list)
    poll_seconds: float = 0.25
    odoo: Odoo = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _signer: Signer = field(default_factory=_signer)
    _counter: Any = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.odoo = Odoo(self.sandbox_url)

    @property
    def scenario(self) -> str:
        return "S8"

    def prepare(self, client: httpx.Client, wanted: int = 8) -> list[Payer]:
        """Customers who qualify: their earlier card payments already have a fulfillment order in Odoo (what the
        sync's source requires: a golden customer with an active Odoo contact). Found through the two APIs."""
        if self.payers:
            return self.payers
        orders = self.odoo.call(client, "sale.order", "search_read",
                                [[["client_order_ref", "=like", "stripe:ch_%"]]],
                                {"fields": ["client_order_ref", "partner_id"], "limit": 400})
        seen: set[str] = set()
        for order in orders:
            charge_id = str(order["client_order_ref"]).split(":", 1)[1]
            answer = client.get(f"{self.sandbox_url}/v1/charges/{charge_id}", headers=self._stripe_headers())
            if answer.status_code != 200:
                continue
            charge = answer.json()
            customer = charge.get("customer")
            if not customer or customer in seen or not order.get("partner_id"):
                continue
            seen.add(customer)
            self.payers.append(Payer(customer, str(charge.get("currency") or "usd"), int(order["partner_id"][0])))
            if len(self.payers) >= wanted:
                break
        if not self.payers:  # no order yet: the identity rule the golden customer starts from, the same email
            self.basis = "same email as an active Odoo contact"
            self._by_email(client, wanted)
        if not self.payers:
            raise ProbeSetupError(
                f"no Stripe payment has a fulfillment order in Odoo yet ({len(orders)} orders with a stripe: "
                "reference) and no Stripe customer shares an email with an active Odoo contact: S8 has no customer "
                "known to qualify")
        return self.payers

    def _by_email(self, client: httpx.Client, wanted: int) -> None:
        partners = self.odoo.call(client, "res.partner", "search_read", [[["email", "!=", False]]],
                                  {"fields": ["email"]})
        partner_of = {str(p["email"]).strip().lower(): int(p["id"]) for p in partners}
        after: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": 100, **({"starting_after": after} if after else {})}
            answer = client.get(f"{self.sandbox_url}/v1/customers", params=params, headers=self._stripe_headers())
            answer.raise_for_status()
            page = answer.json()
            for customer in page["data"]:
                partner = partner_of.get(str(customer.get("email") or "").strip().lower())
                if partner is not None:
                    self.payers.append(Payer(customer["id"], str(customer.get("currency") or "usd"), partner))
                    if len(self.payers) >= wanted:
                        return
            if not page.get("has_more") or not page["data"]:
                return
            after = page["data"][-1]["id"]

    def share(self, tag: str) -> PaymentProbe:
        """Another probe (another tag) for the same qualifying customers, without looking them up again."""
        return PaymentProbe(self.receiver_url, self.sandbox_url, tag, payers=list(self.payers),
                            stripe_key=self.stripe_key, basis=self.basis)

    def _stripe_headers(self, idempotency_key: str = "") -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.stripe_key}", "stripe-version": STRIPE_API_VERSION}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return headers

    def charge(self, client: httpx.Client, n: int) -> tuple[dict[str, Any], Payer]:
        """A new succeeded card charge for the n-th event's customer (not timed: the payment itself)."""
        payer = self.payers[n % len(self.payers)]
        answer = client.post(f"{self.sandbox_url}/v1/charges", headers=self._stripe_headers(f"probe-{self.tag}-{n}"),
                             data={"amount": str(1000 + n % 900), "currency": payer.currency,
                                   "customer": payer.customer_id, "description": f"latency probe {self.tag}-{n}",
                                   "metadata[latency_probe]": self.tag})
        answer.raise_for_status()
        return answer.json(), payer

    def event(self, charge: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Stripe's `charge.succeeded` for the charge, signed as Stripe signs a delivery."""
        body = json.dumps({"id": f"evt_probe_{charge['id'].removeprefix('ch_')}", "object": "event",
                           "api_version": STRIPE_API_VERSION, "created": int(charge.get("created") or time.time()),
                           "type": "charge.succeeded", "livemode": False, "pending_webhooks": 1,
                           "data": {"object": charge}}, separators=(",", ":")).encode()
        delivery = self._signer.sign("stripe", body)
        return delivery.body, delivery.headers

    def send(self, client: httpx.Client) -> Sent:
        n = next(self._counter)
        charge, _ = self.charge(client, n)
        body, headers = self.event(charge)
        record = Sent(f"stripe:{charge['id']}", time.time())
        with self._lock:
            self.sent.append(record)
        answer = client.post(f"{self.receiver_url}/webhooks/stripe", content=body, headers=headers)
        record.status = answer.status_code
        return record

    def pending(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.found_at is None and 200 <= s.status < 300]

    def _orders(self, client: httpx.Client, refs: list[str]) -> list[dict[str, Any]]:
        return self.odoo.call(client, "sale.order", "search_read", [[["client_order_ref", "in", refs]]],
                              {"fields": ["client_order_ref"]})

    def look(self, client: httpx.Client) -> int:
        """One sweep: mark every pending payment whose order Odoo now holds; how many were found."""
        found = 0
        for chunk in _chunks(self.pending(), 200):
            by_ref = {s.key: s for s in chunk}
            orders = self._orders(client, list(by_ref))
            now = time.time()
            for order in orders:
                hit = by_ref.get(str(order.get("client_order_ref")))
                if hit is not None and hit.found_at is None:
                    hit.found_at = now
                    found += 1
        return found

    def orders_per_payment(self, client: httpx.Client) -> dict[str, int]:
        counts = {s.key: 0 for s in self.sent if 200 <= s.status < 300}
        for chunk in _chunks(list(counts), 200):
            for order in self._orders(client, chunk):
                ref = str(order.get("client_order_ref"))
                if ref in counts:
                    counts[ref] += 1
        return counts

    def once(self, client: httpx.Client) -> tuple[int, int, str]:
        """(payments sent, payments with exactly one Odoo order, what that means)."""
        counts = self.orders_per_payment(client)
        return len(counts), sum(1 for n in counts.values() if n == 1), "one Odoo order each"

    def floor_once(self, client: httpx.Client) -> float | None:
        """The charge (not timed), then timed: the receiver's write of its event + one direct Odoo order create."""
        n = next(self._counter)
        charge, payer = self.charge(client, n)
        body, headers = self.event(charge)
        started = time.time()
        status = client.post(f"{self.receiver_url}/webhooks/stripe", content=body, headers=headers).status_code
        self.odoo.call(client, "sale.order", "create", [{
            "partner_id": payer.partner_id, "client_order_ref": f"floor-{self.tag}-{n}",
            "note": f"latency floor {self.tag}-{n}"}])
        elapsed = time.time() - started
        return elapsed if status == 200 else None


# -- S12 ------------------------------------------------------------------------------------------------
@dataclass
class StockSent(Sent):
    sku: str = ""
    quantity: int = 0


@dataclass
class Sku:
    sku: str
    product_id: int  # Odoo product.product
    inventory_item_id: int  # Shopify
    location_id: int  # Shopify
    next_quantity: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class StockProbe:
    """S12: Odoo stock counts + Odoo's `stock.quant` webhook → Shopify inventory levels (`available`).

    Shopify's standard plan allows an app 2 calls/s (a leaky bucket of 40); the sandbox keeps one bucket per shop,
    shared by the sync's writes and this probe's reads, so the probe reads every SKU in one request, once a
    second (`poll_seconds`): a latency here is up to that much later than the level actually changed."""

    receiver_url: str
    sandbox_url: str
    tag: str
    skus: list[Sku] = field(default_factory=list)
    shopify_token: str = SHOPIFY.values["access_token"].sandbox or ""
    sent: list[Sent] = field(default_factory=list)
    poll_seconds: float = 1.0
    throttled: int = 0  # reads Shopify answered 429
    odoo: Odoo = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: Any = field(default_factory=itertools.count)
    _token: str = field(default_factory=lambda: WebhookSecrets().primary("odoo_webhook_token"))

    def __post_init__(self) -> None:
        self.odoo = Odoo(self.sandbox_url)

    @property
    def scenario(self) -> str:
        return "S12"

    def prepare(self, client: httpx.Client, wanted: int = 4) -> list[Sku]:
        """SKUs stocked in Odoo (one storable product each) and sold by the shop (a variant with a level), each
        starting above both systems' current count so every probe count is new and higher."""
        if self.skus:
            return self.skus
        products = self.odoo.call(client, "product.product", "search_read", [[["default_code", "!=", False]]],
                                  {"fields": ["default_code", "qty_available", "type"]})
        records = Counter(str(p["default_code"]) for p in products)
        # one storable product per SKU: a SKU Odoo holds twice is ambiguous, and the sync leaves it waiting
        odoo_by_sku = {str(p["default_code"]): p for p in products
                       if p.get("type") == "product" and records[str(p["default_code"])] == 1}
        shop = client.get(f"{self.sandbox_url}{SHOPIFY_API}/products.json", params={"limit": 250},
                          headers=self._shopify_headers())
        shop.raise_for_status()
        items = {str(v.get("sku")): int(v["inventory_item_id"]) for p in shop.json()["products"]
                 for v in p.get("variants", []) if v.get("sku")}  # untracked ones have no level: left out below
        common = sorted(set(odoo_by_sku) & set(items))
        if not common:
            raise ProbeSetupError("no SKU is both a storable Odoo product and a tracked Shopify variant")
        levels = self._levels(client, [items[s] for s in common])
        for sku in common:
            item = items[sku]
            if item not in levels:
                continue
            location, available = levels[item]
            start = max(int(odoo_by_sku[sku].get("qty_available") or 0), available) + 1
            self.skus.append(Sku(sku, int(odoo_by_sku[sku]["id"]), item, location, start))
            if len(self.skus) >= wanted:
                break
        if not self.skus:
            raise ProbeSetupError("no Shopify inventory level for the SKUs Odoo stocks")
        return self.skus

    def share(self, tag: str) -> StockProbe:
        """Another probe on the same SKUs; its counts continue above this one's."""
        return StockProbe(self.receiver_url, self.sandbox_url, tag, skus=self.skus, shopify_token=self.shopify_token)

    def _shopify_headers(self) -> dict[str, str]:
        return {"x-shopify-access-token": self.shopify_token}

    def _levels(self, client: httpx.Client, items: list[int]) -> dict[int, tuple[int, int]]:
        """inventory_item_id → (location_id, the lowest `available` over its locations)."""
        found: dict[int, tuple[int, int]] = {}
        for chunk in _chunks(items, 50):
            answer = client.get(f"{self.sandbox_url}{SHOPIFY_API}/inventory_levels.json",
                                params={"inventory_item_ids": ",".join(map(str, chunk)), "limit": 250},
                                headers=self._shopify_headers())
            if answer.status_code == 429:
                self.throttled += 1
                continue
            answer.raise_for_status()
            for level in answer.json()["inventory_levels"]:
                item, available = int(level["inventory_item_id"]), int(level.get("available") or 0)
                previous = found.get(item)
                if previous is None or available < previous[1]:
                    found[item] = (int(level["location_id"]), available)
        return found

    def count(self, client: httpx.Client) -> tuple[Sku, int, int]:
        """The next count on the next SKU (round robin), made in Odoo (not timed): (sku, quantity, quant id).
        One count at a time per SKU, so Odoo holds them in the order of their quantities."""
        n = next(self._counter)
        sku = self.skus[n % len(self.skus)]
        with sku.lock:
            quantity = sku.next_quantity
            sku.next_quantity += 1
            quant = self.odoo.call(client, "stock.quant", "create", [{
                "product_id": sku.product_id, "location_id": STOCK_LOCATION_ID,
                "inventory_quantity_auto_apply": quantity}], {"context": {"inventory_mode": True}})
        return sku, quantity, int(quant)

    def notify(self, client: httpx.Client, quant_id: int, quantity: int) -> int:
        """Odoo's automated action webhook for the changed quant (a notice: the lane reads the products). The
        fields it sends make each body distinct; the receiver dedupes Odoo bodies by their digest."""
        body = {"_model": "stock.quant", "_id": quant_id, "_action": "write", "quantity": quantity,
                "write_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
        return client.post(f"{self.receiver_url}/webhooks/odoo/{self._token}", json=body).status_code

    def send(self, client: httpx.Client) -> Sent:
        sku, quantity, quant_id = self.count(client)
        record = StockSent(f"{sku.sku}@{quantity}", time.time(), sku=sku.sku, quantity=quantity)
        with self._lock:
            self.sent.append(record)
        record.status = self.notify(client, quant_id, quantity)
        return record

    def pending(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.found_at is None and 200 <= s.status < 300]

    def look(self, client: httpx.Client) -> int:
        """One read of every SKU's level: every pending count at or below what the shop shows is reached."""
        pending = self.pending()
        if not pending:
            return 0
        levels = self._levels(client, [s.inventory_item_id for s in self.skus])
        now = time.time()
        shown = {s.sku: levels[s.inventory_item_id][1] for s in self.skus if s.inventory_item_id in levels}
        found = 0
        for record in pending:
            assert isinstance(record, StockSent)
            if record.sku in shown and shown[record.sku] >= record.quantity:
                record.found_at = now
                found += 1
        return found

    def once(self, client: httpx.Client) -> tuple[int, int, str]:
        """(SKUs counted, SKUs whose shop level is the last count sent, what that means). A level is absolute:
        applying a count twice is harmless, applying an older count after a newer one is the failure to catch."""
        last: dict[str, int] = {}
        for record in self.sent:
            if isinstance(record, StockSent) and 200 <= record.status < 300:
                last[record.sku] = max(last.get(record.sku, 0), record.quantity)
        levels = self._levels(client, [s.inventory_item_id for s in self.skus])
        shown = {s.sku: levels.get(s.inventory_item_id, (0, None))[1] for s in self.skus}
        return len(last), sum(1 for sku, q in last.items() if shown.get(sku) == q), "shop level = the last count"

    def floor_once(self, client: httpx.Client) -> float | None:
        """The count in Odoo (not timed), then timed: the receiver's write of its webhook + one direct Shopify
        `inventory_levels/set` of the same quantity (the write the sync makes)."""
        sku, quantity, quant_id = self.count(client)
        started = time.time()
        status = self.notify(client, quant_id, quantity)
        answer = client.post(f"{self.sandbox_url}{SHOPIFY_API}/inventory_levels/set.json",
                             headers=self._shopify_headers(),
                             json={"location_id": sku.location_id, "inventory_item_id": sku.inventory_item_id,
                                   "available": quantity})
        elapsed = time.time() - started
        if answer.status_code == 429:
            self.throttled += 1
        return elapsed if status == 200 and answer.status_code == 200 else None
