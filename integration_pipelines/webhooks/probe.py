"""Event probes: send uniquely marked events through the webhook receiver and time their effect in the target.

Used by the event-latency benchmark and the no-starvation test. A probe knows, for one scenario, how to make an
event the way the vendor would send it and how to find its effect through the target system's own API (never
through the warehouse), so what it measures is what a business sees: "the lead is in the CRM".

- S1 `lead`: a web-form submission (`POST /webhooks/forms/{token}`) → a HubSpot contact with that email,
  found with HubSpot's search API (`IN` on email, up to 100 per request).

S8 (payment → Odoo fulfillment order) and S12 (Odoo stock count → Shopify level) are in scenario_probes.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from .config import WebhookSecrets

HUBSPOT_SEARCH = "/crm/v3/objects/contacts/search"


@dataclass
class Sent:
    key: str
    sent_at: float  # time.time() just before the POST
    status: int = 0
    found_at: float | None = None

    @property
    def latency(self) -> float | None:
        return None if self.found_at is None else self.found_at - self.sent_at


@dataclass
class LeadProbe:
    """S1: web-form leads to HubSpot. `tag` keeps one run's leads apart from every other's."""

    receiver_url: str
    sandbox_url: str
    hubspot_token: str
    tag: str
    forms_token: str = field(default_factory=lambda: WebhookSecrets().primary("forms_webhook_token"))
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def email(self, n: int) -> str:
        return f"probe-{self.tag}-{n}@example.test"

    def send(self, client: httpx.Client) -> Sent:
        with self._lock:
            n = len(self.sent)
            record = Sent(self.email(n), time.time())
            self.sent.append(record)
        form = {"submission_id": f"probe-{self.tag}-{n}", "email": record.key, "firstname": "Probe",
                "lastname": f"Lead {n}", "company": "Latency Co", "source": "probe",
                "submitted_at": datetime.now(UTC).isoformat()}
        answer = client.post(f"{self.receiver_url}/webhooks/forms/{self.forms_token}", content=json.dumps(form),
                             headers={"content-type": "application/json"})
        record.status = answer.status_code
        return record

    def pending(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.found_at is None and 200 <= s.status < 300]

    def look(self, client: httpx.Client) -> int:
        """One sweep: mark every pending lead HubSpot now holds; how many were found."""
        found = 0
        pending = self.pending()
        for chunk in _chunks(pending, 100):
            by_email = {s.key: s for s in chunk}
            body = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "IN",
                                                   "values": list(by_email)}]}],
                    "properties": ["email"], "limit": 100}
            answer = client.post(f"{self.sandbox_url}{HUBSPOT_SEARCH}", json=body,
                                 headers={"authorization": f"Bearer {self.hubspot_token}"})
            answer.raise_for_status()
            now = time.time()
            for contact in answer.json().get("results", []):
                hit = by_email.get(str(contact["properties"].get("email", "")).lower())
                if hit is not None and hit.found_at is None:
                    hit.found_at = now
                    found += 1
        return found

    def contacts_per_email(self, client: httpx.Client) -> dict[str, int]:
        """How many HubSpot contacts hold each sent email (exactly once means 1 each)."""
        counts = {s.key: 0 for s in self.sent}
        for chunk in _chunks(list(counts), 100):
            after: str | None = None
            while True:
                body: dict[str, object] = {
                    "filterGroups": [{"filters": [{"propertyName": "email", "operator": "IN", "values": chunk}]}],
                    "properties": ["email"], "limit": 100}
                if after:
                    body["after"] = after
                answer = client.post(f"{self.sandbox_url}{HUBSPOT_SEARCH}", json=body,
                                     headers={"authorization": f"Bearer {self.hubspot_token}"})
                answer.raise_for_status()
                page = answer.json()
                for contact in page.get("results", []):
                    email = str(contact["properties"].get("email", "")).lower()
                    if email in counts:
                        counts[email] += 1
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return counts


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Traffic(threading.Thread):
    """Sends `rate` events per second (evenly spaced) until stopped or `limit` are sent. `probe` is any probe
    with `send(client)` and `sent` (LeadProbe here; scenario_probes.PaymentProbe and StockProbe)."""

    def __init__(self, probe: Any, rate: float, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.probe, self.interval, self.limit = probe, 1.0 / rate, limit
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            next_at = time.monotonic()
            while not self.stopped.is_set() and (self.limit is None or len(self.probe.sent) < self.limit):
                try:
                    self.probe.send(client)
                except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: an API's error answer (Odoo's)
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                next_at += self.interval
                self.stopped.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)
