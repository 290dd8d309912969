"""Stripe's API as the official stripe-python SDK sees it: `/v1` lists (`object: list`, `url`, `has_more`,
newest first), `starting_after`/`ending_before`, `created[...]` filters, form-encoded POSTs, Bearer keys,
`Idempotency-Key` replay, `{"error": {"type", "message"}}` errors, and the change feed: every change to a
customer, charge, invoice, refund or dispute appends an Event (`GET /v1/events`), as Stripe does, so a reader
can learn that an OLD record changed (a refund ten days after the charge) without re-reading every record.

Balance transactions (`GET /v1/balance_transactions[/{id}]`): every captured charge and every refund moves the
account's balance by one, as at Stripe, and names it in its `balance_transaction` field. A charge's carries the
processing fee (`fee`, `fee_details`, `net` = amount - fee), a refund's a negative amount and no fee (Stripe keeps
the original charge's fee and charges nothing to refund). The fee is Stripe's published standard price for a
domestic card in the account's country (FEE_SCHEDULE): stripe.com/pricing 2.9% + 30¢ (US, USD),
stripe.com/gb/pricing 1.5% + 20p for standard UK cards (GBP), stripe.com/de/pricing 1.5% + 0.25 € for standard
EEA cards (EUR); the percentage part is rounded half up to the minor unit. The sandbox's one account stands for
the group's accounts: a charge is priced and settled in its own currency (no conversion, `exchange_rate` null), as
each entity's own Stripe account would; premium, international and converted cards are not emulated. Funds become
`available` at midnight UTC two days after the charge (Stripe's standard US rolling payout schedule); there are no
payouts, so the `payout` filter finds nothing.

Subscriptions (`/v1/subscriptions`, stripe-python's `client.v1.subscriptions` list/retrieve/create/update/cancel) on
recurring prices (`/v1/prices`, one per plan of the world and currency, looked up by `lookup_key`), shaped as in the
pinned API version: since 2025-03-31.basil a subscription's billing period is on each of its items
(`items.data[].current_period_start/end`), not on the subscription. Statuses `trialing`, `active`, `past_due`,
`unpaid`, `incomplete`, `incomplete_expired`, `paused` and `canceled`; the list leaves canceled ones out unless
`status=canceled|ended|all`. Each change records `customer.subscription.created` / `.updated` (with
previous_attributes) / `.deleted`. What the API cannot do, because it happens to you (a renewal payment that fails,
a trial that runs out), is the sandbox side `set_subscription_status` (control API: `POST
/_sandbox/stripe/subscriptions/simulate`). The sandbox bills nothing for a subscription: no invoice, charge or
balance transaction is made (`latest_invoice` stays null), so the money scenarios see only the world's payments; a
create succeeds without a payment method, as its cards never decline.

The emulator keeps its own vendor facts (API version, limits, parameter lists) rather than importing the
project's connector: an emulator that borrowed the reader's beliefs could never catch the reader being wrong.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Emulator, SandboxState, bearer_token, fingerprint
from .ids import token
from .world import Subscription, World, add_interval

#: The fake secret key the sandbox accepts (the same string the project's Stripe connector uses in sandbox mode).
SANDBOX_API_KEY = "sk_test_FAKE_sandbox_key_integration_pipelines"

# Restricted keys (`rk_test_...`): each grants None, "read" or "write" per resource; "write" includes reading, as
# in Stripe's dashboard. A request outside a key's permissions gets Stripe's 403 naming the `rak_` permission
# that would allow it. These fake keys are the emulator's own: the connectors know nothing of them.
_ALL_RESOURCES = ("customer", "charge", "invoice", "refund", "dispute", "event", "balance", "subscription", "price")
RESTRICTED_KEYS: dict[str, dict[str, str]] = {
    "rk_test_FAKE_sandbox_read_only_key_0000": {resource: "read" for resource in _ALL_RESOURCES},
    "rk_test_FAKE_sandbox_read_write_key_0000": {**{r: "write" for r in _ALL_RESOURCES}, "event": "read",
                                                 "balance": "read"},
    "rk_test_FAKE_sandbox_charges_only_key_0000": {"charge": "read"},
}
_RESOURCE_OF = {"customers": "customer", "charges": "charge", "invoices": "invoice", "refunds": "refund",
                "disputes": "dispute", "events": "event", "balance_transactions": "balance",
                "subscriptions": "subscription", "prices": "price"}
#: The API version the sandbox account is pinned to: events render `data.object` in it and say so.
API_VERSION = "2025-09-30.clover"
#: Stripe serves events for 30 days; older ones are gone from `/v1/events`.
EVENT_RETENTION_SECONDS = 30 * 24 * 3600
MAX_LIMIT = 100
MAX_TYPES = 20
#: Standard processing fee of a domestic card by currency (the account country's price list; see the module
#: docstring): (percentage in basis points, fixed part in minor units). Another currency is priced as USD.
FEE_SCHEDULE: dict[str, tuple[int, int]] = {"usd": (290, 30), "gbp": (150, 20), "eur": (150, 25)}
#: Days from a charge to its funds' `available_on` (Stripe's standard US payout schedule: two business days).
AVAILABLE_AFTER_DAYS = 2

_OBJECT = {"customers": "customer", "charges": "charge", "invoices": "invoice", "refunds": "refund",
           "disputes": "dispute", "events": "event", "balance_transactions": "balance_transaction",
           "subscriptions": "subscription", "prices": "price"}
#: An object's event types are `<object>.<change>`, except a subscription's: `customer.subscription.<change>`.
_EVENT_PREFIX = {**_OBJECT, "subscriptions": "customer.subscription"}
# What each endpoint takes (stripe-python 16's params/*.py); anything else is Stripe's "unknown parameter" 400.
_LIST_PARAMS: dict[str, frozenset[str]] = {
    "customers": frozenset({"created", "email", "ending_before", "expand", "limit", "starting_after", "test_clock"}),
    "charges": frozenset({"created", "customer", "ending_before", "expand", "limit", "payment_intent",
                          "starting_after", "transfer_group"}),
    "invoices": frozenset({"collection_method", "created", "customer", "customer_account", "due_date",
                           "ending_before", "expand", "limit", "starting_after", "status", "subscription"}),
    "refunds": frozenset({"charge", "created", "ending_before", "expand", "limit", "payment_intent",
                          "starting_after"}),
    "disputes": frozenset({"charge", "created", "ending_before", "expand", "limit", "payment_intent",
                           "starting_after"}),
    "events": frozenset({"created", "delivery_success", "ending_before", "expand", "limit", "starting_after",
                         "type", "types"}),
    "balance_transactions": frozenset({"created", "currency", "ending_before", "expand", "limit", "payout",
                                       "source", "starting_after", "type"}),
    "subscriptions": frozenset({"automatic_tax", "collection_method", "created", "current_period_end",
                                "current_period_start", "customer", "customer_account", "ending_before", "expand",
                                "limit", "plan", "price", "starting_after", "status", "test_clock"}),
    "prices": frozenset({"active", "created", "currency", "ending_before", "expand", "limit", "lookup_keys",
                         "product", "recurring", "starting_after", "type"}),
}
#: `status` of a subscription list: Stripe's values, plus `ended` (canceled or incomplete_expired) and `all`.
SUBSCRIPTION_STATUSES = ("active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused", "trialing",
                         "unpaid")
_LIST_STATUSES = (*SUBSCRIPTION_STATUSES, "ended", "all")
_ENDED = ("canceled", "incomplete_expired")
#: List parameters that filter by equality on the field of the same name (balance transactions: their own set,
#: since `type` there is exact while the events' `type` takes wildcards).
_EQUALITY_FILTERS = ("customer", "email", "status", "collection_method", "charge", "payment_intent")
_BALANCE_FILTERS = ("currency", "payout", "source", "type")
_CREATE_PARAMS: dict[str, frozenset[str]] = {
    "customers": frozenset({"address", "balance", "business_name", "cash_balance", "description", "email", "expand",
                            "individual_name", "invoice_prefix", "invoice_settings", "metadata", "name",
                            "next_invoice_sequence", "payment_method", "phone", "preferred_locales", "shipping",
                            "source", "tax", "tax_exempt", "tax_id_data", "test_clock", "validate"}),
    "charges": frozenset({"amount", "application_fee", "application_fee_amount", "capture", "currency", "customer",
                          "description", "destination", "expand", "metadata", "on_behalf_of", "radar_options",
                          "receipt_email", "shipping", "source", "statement_descriptor",
                          "statement_descriptor_suffix", "transfer_data", "transfer_group"}),
    "refunds": frozenset({"amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata",
                          "origin", "payment_intent", "reason", "refund_application_fee", "reverse_transfer"}),
    "subscriptions": frozenset({"add_invoice_items", "application_fee_percent", "automatic_tax", "backdate_start_date",
                                "billing_cycle_anchor", "billing_cycle_anchor_config", "billing_mode",
                                "billing_schedules", "billing_thresholds", "cancel_at", "cancel_at_period_end",
                                "collection_method", "currency", "customer", "customer_account", "days_until_due",
                                "default_payment_method", "default_source", "default_tax_rates", "description",
                                "discounts", "expand", "invoice_settings", "items", "metadata", "off_session",
                                "on_behalf_of", "payment_behavior", "payment_settings",
                                "pending_invoice_item_interval", "proration_behavior", "transfer_data", "trial_end",
                                "trial_from_plan", "trial_period_days", "trial_settings"}),
}
#: Subscription parameters the sandbox takes and acts on (or, for the proration and payment options, takes and has
#: nothing to do with, since it bills nothing); Stripe's other ones are answered with a 400 naming the parameter
#: as not emulated rather than being silently dropped.
_SUBSCRIPTION_EMULATED = frozenset({"cancel_at", "cancel_at_period_end", "cancellation_details", "collection_method",
                                    "currency", "customer", "days_until_due", "default_payment_method",
                                    "description", "expand", "items", "metadata", "off_session", "pause_collection",
                                    "payment_behavior", "proration_behavior", "proration_date", "trial_end",
                                    "trial_period_days"})
_CANCEL_PARAMS = frozenset({"cancellation_details", "expand", "invoice_now", "prorate"})
_UPDATE_PARAMS: dict[str, frozenset[str]] = {
    "customers": frozenset({"address", "balance", "business_name", "cash_balance", "default_source", "description",
                            "email", "expand", "individual_name", "invoice_prefix", "invoice_settings", "metadata",
                            "name", "next_invoice_sequence", "phone", "preferred_locales", "shipping", "source",
                            "tax", "tax_exempt", "validate"}),
    "charges": frozenset({"customer", "description", "expand", "fraud_details", "metadata", "receipt_email",
                          "shipping", "transfer_group"}),
    "invoices": frozenset({"account_tax_ids", "application_fee_amount", "auto_advance", "automatic_tax",
                           "automatically_finalizes_at", "collection_method", "custom_fields", "days_until_due",
                           "default_payment_method", "default_source", "default_tax_rates", "description",
                           "discounts", "due_date", "effective_at", "expand", "footer", "issuer", "metadata",
                           "number", "on_behalf_of", "payment_settings", "rendering", "shipping_cost",
                           "shipping_details", "statement_descriptor", "transfer_data"}),
    "refunds": frozenset({"expand", "metadata"}),
    "subscriptions": frozenset({"add_invoice_items", "application_fee_percent", "automatic_tax", "billing_cycle_anchor",
                                "billing_schedules", "billing_thresholds", "cancel_at", "cancel_at_period_end",
                                "cancellation_details", "collection_method", "days_until_due",
                                "default_payment_method", "default_source", "default_tax_rates", "description",
                                "discounts", "expand", "invoice_settings", "items", "metadata", "off_session",
                                "on_behalf_of", "pause_collection", "payment_behavior", "payment_settings",
                                "pending_invoice_item_interval", "proration_behavior", "proration_date",
                                "transfer_data", "trial_end", "trial_from_plan", "trial_settings"}),
}
_INT_FIELDS = frozenset({"amount", "balance", "due_date", "days_until_due", "next_invoice_sequence",
                         "application_fee_amount", "automatically_finalizes_at"})
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_DISPUTE_REASONS = ("bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
                    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
                    "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
                    "subscription_canceled", "unrecognized")
_SYMBOL = {"usd": "$", "gbp": "£", "eur": "€"}
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
#: Fields holding another object's id that `expand[]` may replace with the object (field → its stream). A charge's
#: `refunds` list is expandable too (handled on its own); `payment_intent` and the like are expandable at Stripe
#: but the sandbox keeps no such objects: asking for them is refused (docs/sandbox-fidelity.md). A balance
#: transaction's `source` (a charge or a refund) is not expandable here.
_EXPANDABLE: dict[str, dict[str, str]] = {
    "customers": {},
    "charges": {"customer": "customers", "invoice": "invoices", "balance_transaction": "balance_transactions"},
    "invoices": {"customer": "customers"},
    "refunds": {"charge": "charges", "balance_transaction": "balance_transactions"},
    "disputes": {"charge": "charges"},
    "events": {},
    "balance_transactions": {},
    "subscriptions": {"customer": "customers", "latest_invoice": "invoices"},
    "prices": {},
}
#: Search (`GET /v1/<stream>/search`): the resources that have it, their query fields (Stripe's "query fields for
#: customers/charges", the subset this sandbox holds) with each field's type, and the page size bounds.
_SEARCH_FIELDS: dict[str, dict[str, str]] = {
    "customers": {"created": "number", "email": "string", "metadata": "metadata", "name": "string",
                  "phone": "string"},
    "charges": {"amount": "number", "billing_details.address.postal_code": "string", "created": "number",
                "currency": "string", "customer": "string", "disputed": "boolean", "metadata": "metadata",
                "payment_method_details.card.last4": "string", "refunded": "boolean", "status": "string"},
}
_SEARCH_PARAMS = frozenset({"expand", "limit", "page", "query"})
_SEARCH_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>metadata\[(?P<q>['"])(?P<key>[^'"]+)(?P=q)\]|[a-z_][a-z0-9_.]*)
    (?P<op>:|~|>=|<=|>|<)
    (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|null|true|false)\s*""",
    re.X,
)
_UNRECOGNIZED = "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at " \
    "https://support.stripe.com/."

#: An event's `request`: the API request that caused the change (`id`, `idempotency_key`), or nulls.
Origin = dict[str, str | None]


def _unix(moment: Any) -> int:
    return int(moment.timestamp())


def _automatic() -> Origin:
    return {"id": None, "idempotency_key": None}


class StripeRefusal(Exception):
    """A request Stripe would answer with an error body; raised deep inside a handler, answered at its top."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.extra = status, message, type_, extra


def nest(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket notation into nested values: `metadata[k]=v` → dict, `expand[0]=a`/`expand[]=a` → list,
    `created[gte]=1` → dict. Keys that do not parse are kept whole, so they still reach the unknown-param check."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))] if match else [key]
        node = root
        for i, part in enumerate(parts):
            slot: Any = len(node) if part == "" else int(part) if part.isdigit() and node is not root else part
            if i == len(parts) - 1:
                node[slot] = value
            else:
                child = node.get(slot)
                if not isinstance(child, dict):
                    child = node[slot] = {}
                node = child
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(isinstance(k, int) for k in value):
            return [_listify(value[k]) for k in sorted(value)]
        return {k: _listify(v) for k, v in value.items()}
    return value


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's `previous_attributes`: the old value of every changed field; for a changed hash (metadata,
    address) only its changed keys, with null for a key that did not exist before."""
    previous: dict[str, Any] = {}
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = _diff(old, new)
        else:
            previous[key] = copy.deepcopy(old)
    return previous


def _money(amount: int, currency: str) -> str:
    symbol = _SYMBOL.get(currency.lower())
    return f"{symbol}{amount / 100:,.2f}" if symbol else f"{amount / 100:,.2f} {currency.upper()}"


def _integer(value: Any, param: str, *, positive: bool = False) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeRefusal(400, f"Invalid integer: {value}", param=param) from None
    if positive and number <= 0:
        raise StripeRefusal(400, "Invalid positive integer", param=param)
    return number


def _expand(params: dict[str, Any]) -> set[str]:
    """`expand[]=a&expand[]=b` (a list) or a lone `expand=a` (a string): the paths to expand."""
    expand = params.get("expand") or []
    return {expand} if isinstance(expand, str) else {str(e) for e in expand}


def stripe_fee(amount: int, currency: str) -> int:
    """The processing fee of a captured charge, in its minor units (FEE_SCHEDULE; percentage rounded half up)."""
    basis_points, fixed = FEE_SCHEDULE.get(currency.lower(), FEE_SCHEDULE["usd"])
    return (amount * basis_points + 5_000) // 10_000 + fixed


def _available_on(created: int) -> int:
    """Midnight UTC AVAILABLE_AFTER_DAYS after the day of `created`: when the funds join the available balance."""
    day = 24 * 3600
    return (created // day + AVAILABLE_AFTER_DAYS) * day


def _filters_of(stream: str) -> tuple[str, ...]:
    """The list parameters that filter `stream` by equality on the field of the same name."""
    if stream == "balance_transactions":
        return _BALANCE_FILTERS
    if stream == "subscriptions":  # `status` is its own (`_subscription_filter`)
        return ("customer", "collection_method")
    if stream == "prices":
        return ()
    return _EQUALITY_FILTERS


def _boolean(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in ("true", "false"):
        raise StripeRefusal(400, f"Invalid boolean: {value}", param=param)
    return text == "true"


def _unknown(given: Iterable[str], allowed: frozenset[str]) -> None:
    for name in given:
        if name not in allowed:
            raise StripeRefusal(400, f"Received unknown parameter: {name}", param=name)


class StripeEmulator(Emulator):
    name = "stripe"
    prefixes = ("/v1/",)
    streams = ("customers", "charges", "invoices", "refunds", "disputes", "events", "balance_transactions",
               "subscriptions", "prices")

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        super().__init__(world, sandbox)
        self.api_key = SANDBOX_API_KEY
        #: Seconds added to the wall clock: every change is stamped at `now()`, so a test moves this forward to
        #: make "a refund ten days after the charge" (and back to put the clock inside the world's history).
        self.clock_offset_seconds: float = 0.0
        self._serial = itertools.count()
        self._event_order: dict[str, int] = {}
        seed = world.seed
        self.objects: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in self.streams}
        #: Deleted customers' stubs (`{"id", "object": "customer", "deleted": true}`), what a retrieve answers.
        self.deleted: dict[str, dict[str, Any]] = {}
        history: list[tuple[int, int, str, dict[str, Any], dict[str, Any] | None]] = []

        def happened(at: int, type_: str, snapshot: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
            history.append((at, len(history), type_, copy.deepcopy(snapshot), previous))

        customer_ids: dict[int, str] = {}
        for person in world.people:
            if not person.in_stripe:
                continue
            cid = f"cus_{token(seed, 'cus', person.key)}"
            customer_ids[person.key] = cid
            customer = self.objects["customers"][cid] = {
                "id": cid, "object": "customer",
                "address": {"city": person.city, "country": person.country, "line1": person.street,
                            "line2": None, "postal_code": person.postal_code, "state": None},
                "balance": 0, "created": _unix(person.created_at), "currency": person.currency.lower(),
                "default_source": None, "delinquent": False, "description": person.company.name,
                "email": person.email, "invoice_prefix": token(seed, "prefix", person.key, length=8).upper(),
                "livemode": False, "metadata": {"company": person.company.name},
                "name": person.name, "phone": person.phone, "preferred_locales": ["en"], "shipping": None,
                "tax_exempt": "none", "test_clock": None,
            }
            happened(customer["created"], "customer.created", customer)
        paid_at = {p.invoice.key: _unix(p.created_at) for p in world.payments
                   if p.invoice is not None and p.processor == "stripe"}
        invoice_ids: dict[int, str] = {}
        for invoice in world.invoices:
            if not invoice.billed_via_stripe or invoice.person.key not in customer_ids:
                continue
            iid = f"in_{token(seed, 'in', invoice.key)}"
            invoice_ids[invoice.key] = iid
            paid = invoice.amount if invoice.paid else 0
            record = self.objects["invoices"][iid] = {
                "id": iid, "object": "invoice", "customer": customer_ids[invoice.person.key],
                "number": f"{invoice.number}-S", "status": "paid" if invoice.paid else "open",
                "amount_due": invoice.amount, "amount_paid": paid, "amount_remaining": invoice.amount - paid,
                "currency": invoice.currency.lower(), "created": _unix(invoice.issued_at),
                "due_date": _unix(invoice.due_at), "collection_method": "send_invoice", "livemode": False,
                "metadata": {"accounting_number": invoice.number}, "subtotal": invoice.amount,
                "total": invoice.amount, "paid": invoice.paid,
                "lines": {"object": "list", "has_more": False, "url": f"/v1/invoices/{iid}/lines", "data": [
                    {"id": f"il_{token(seed, 'il', invoice.key, n)}", "object": "line_item",
                     "amount": line.amount, "currency": invoice.currency.lower(), "quantity": line.quantity,
                     "description": line.product.name, "price": {"lookup_key": line.product.sku}}
                    for n, line in enumerate(invoice.lines)]},
            }
            unpaid = {"amount_paid": 0, "amount_remaining": invoice.amount, "paid": False, "status": "open"}
            happened(record["created"], "invoice.created", {**record, **unpaid})
            if invoice.paid:
                at = max(record["created"], paid_at.get(invoice.key, record["created"]))
                happened(at, "invoice.updated", record, {k: v for k, v in unpaid.items() if record[k] != v})
                happened(at, "invoice.paid", record)
                happened(at, "invoice.payment_succeeded", record)
        for payment in world.payments:
            if payment.processor != "stripe" or payment.person.key not in customer_ids:
                continue
            chid = f"ch_{token(seed, 'ch', payment.key)}"
            invoice_id = invoice_ids.get(payment.invoice.key) if payment.invoice else None
            charge = self.objects["charges"][chid] = {
                "id": chid, "object": "charge", "amount": payment.amount, "amount_captured": payment.amount,
                "amount_refunded": 0, "balance_transaction": f"txn_{token(seed, 'txn', payment.key)}",
                "billing_details": {"email": payment.person.email, "name": payment.person.name,
                                    "phone": payment.person.phone, "address": {"country": payment.person.country}},
                "captured": True, "created": _unix(payment.created_at), "currency": payment.currency.lower(),
                "customer": customer_ids[payment.person.key],
                "description": f"Payment for {payment.invoice.number}" if payment.invoice else "Payment",
                "disputed": False, "failure_code": None, "failure_message": None, "invoice": invoice_id,
                "livemode": False,
                "metadata": {"accounting_invoice": payment.invoice.number} if payment.invoice else {},
                "outcome": {"network_status": "approved_by_network", "risk_level": "normal",
                            "seller_message": "Payment complete.", "type": "authorized"},
                "paid": True, "payment_intent": f"pi_{token(seed, 'pi', payment.key)}",
                "payment_method": f"pm_{token(seed, 'pm', payment.key)}", "receipt_email": payment.person.email,
                "refunded": False, "status": "succeeded",
            }
            happened(charge["created"], "charge.succeeded", charge)
            self._charge_moved_balance(charge)
            if payment.refunded:
                before = copy.deepcopy(charge)
                refund = self._apply_refund(charge, min(payment.refunded, payment.amount), None, {},
                                            charge["created"], f"re_{token(seed, 're', payment.key)}")
                happened(charge["created"], "charge.refunded", charge, _diff(before, charge))
                happened(charge["created"], "refund.created", refund)
        self._build_prices()
        for subscription in world.subscriptions:
            if subscription.processor == "stripe" and subscription.person.key in customer_ids:
                self._build_subscription(subscription, customer_ids[subscription.person.key], happened)
        for at, order, type_, snapshot, previous in sorted(history, key=lambda h: (h[0], h[1])):
            self._record(type_, snapshot, previous, _automatic(), created=at,
                         event_id=f"evt_{token(seed, 'evt', order, type_, snapshot['id'])}", copy_snapshot=False)

    # -- clock -----------------------------------------------------------------------------------
    def now(self) -> float:
        """The wall clock moved by `clock_offset_seconds`: the moment every change is stamped with."""
        return time.time() + self.clock_offset_seconds

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward (a test's "ten days later"); returns the new `now()`."""
        self.clock_offset_seconds += seconds
        return self.now()

    def set_clock(self, unix_seconds: float) -> None:
        """Put the emulator's clock at a moment (e.g. the world's anchor, so its history is inside the 30 days
        of events Stripe keeps); it then runs on from there with the wall clock."""
        self.clock_offset_seconds = unix_seconds - time.time()

    def _stamp(self) -> int:
        return int(self.now())

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{token(self.world.seed, prefix, time.time_ns(), next(self._serial), length=24)}"

    # -- protocol ------------------------------------------------------------------------------
    def error_response(self, status: int, message: str, type_: str = "api_error", **extra: Any) -> Response:
        body = {"error": {"type": type_, "message": message, **extra}}
        return JSONResponse(body, status_code=status, headers={"Request-Id": self._new_id("req")})

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """Stripe answers an unknown URL and a known URL asked with the wrong method alike: 404, naming both."""
        return self.error_response(404, _UNRECOGNIZED.format(method=request.method, path=request.url.path),
                                   "invalid_request_error")

    def rate_limit_response(self, retry_after: float) -> Response:
        response = self.error_response(
            429, "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.", "invalid_request_error", code="rate_limit")
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def _authorize(self, request: Request) -> Response | None:
        key = bearer_token(request)
        if key is None:
            return self.error_response(
                401, "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                "invalid_request_error")
        if key in RESTRICTED_KEYS:
            return self._permitted(request, key)
        if key != self.api_key:
            return self.error_response(401, f"Invalid API Key provided: {key[:7]}{'*' * 12}{key[-4:]}",
                                       "invalid_request_error")
        return None

    def _permitted(self, request: Request, key: str) -> Response | None:
        """A restricted key may do what its permissions say: reading needs read or write, anything else write."""
        parts = request.url.path.strip("/").split("/")
        resource = _RESOURCE_OF.get(parts[1] if len(parts) > 1 else "")
        if resource is None:
            return None  # an unknown path: the route's own 404
        needed = "read" if request.method in ("GET", "HEAD") else "write"
        granted = RESTRICTED_KEYS[key].get(resource)
        if granted == "write" or granted == needed:
            return None
        masked = f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}"
        return self.error_response(
            403, f"The provided key '{masked}' does not have the required permissions for this endpoint on account "
            f"'acct_FAKEsandbox0000'. Having the 'rak_{resource}_{needed}' permission would allow this request to "
            "continue.", "invalid_request_error")

    def _handler(self, serve: Callable[[Request], Awaitable[Response]]):  # type: ignore[no-untyped-def]
        """Authorization first, then the endpoint; a refusal raised anywhere becomes Stripe's error body."""
        async def handler(request: Request) -> Response:
            denied = self._authorize(request)
            if denied:
                return denied
            try:
                return await serve(request)
            except StripeRefusal as refusal:
                return self.error_response(refusal.status, refusal.message, refusal.type, **refusal.extra)
        return handler

    def routes(self) -> list[Route]:
        routes = [
            Route("/v1/events", self._handler(self._list_endpoint("events")), methods=["GET"]),
            Route("/v1/events/{id}", self._handler(self._object_endpoint("events")), methods=["GET"]),
            Route("/v1/charges/{id}/refunds", self._handler(self._charge_refunds), methods=["GET"]),
            Route("/v1/subscriptions", self._handler(self._list_endpoint("subscriptions")), methods=["GET", "POST"]),
            Route("/v1/subscriptions/{id}", self._handler(self._subscription_endpoint),
                  methods=["GET", "POST", "DELETE"]),
            Route("/v1/prices", self._handler(self._list_endpoint("prices")), methods=["GET"]),
            Route("/v1/prices/{id}", self._handler(self._object_endpoint("prices")), methods=["GET"]),
        ]
        for stream in _SEARCH_FIELDS:  # before `/v1/<stream>/{id}`, which would take "search" for an id
            routes.append(Route(f"/v1/{stream}/search", self._handler(self._search_endpoint(stream)),
                                methods=["GET"]))
        for stream in ("customers", "charges", "invoices", "refunds", "disputes", "balance_transactions"):
            methods = ["GET", "POST"] if stream in _CREATE_PARAMS or stream == "invoices" else ["GET"]
            routes.append(Route(f"/v1/{stream}", self._handler(self._list_endpoint(stream)), methods=methods))
            methods = ["GET", "POST"] if stream in _UPDATE_PARAMS else ["GET"]
            if stream == "customers":
                methods.append("DELETE")
            routes.append(Route(f"/v1/{stream}/{{id}}", self._handler(self._object_endpoint(stream)),
                                methods=methods))
        return routes

    # -- reads ------------------------------------------------------------------------------------
    def _list_endpoint(self, stream: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            if request.method == "POST":
                return await self._create(stream, request)
            params = nest(request.query_params.multi_items())
            return JSONResponse(self.list_page(stream, params))
        return serve

    def _order(self, stream: str, obj: dict[str, Any]) -> tuple[int, int, str]:
        """Newest first by `created`; events made in the same second keep the order they happened in."""
        return obj["created"], self._event_order.get(obj["id"], 0) if stream == "events" else 0, obj["id"]

    def list_page(self, stream: str, params: dict[str, Any], url: str | None = None,
                  rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One page of a Stripe list, given the request's nested parameters (see `nest`)."""
        _unknown(params, _LIST_PARAMS[stream])
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise StripeRefusal(400, "This value must be greater than or equal to 1 and less than or equal to "
                                f"{MAX_LIMIT}.", param="limit")
        with self.sandbox.lock:
            candidates = list(self.objects[stream].values()) if rows is None else rows
            if stream == "events":
                candidates = self._visible_events(candidates, params)
            candidates = self._created_filter(candidates, params.get("created"))
            if stream == "subscriptions":
                candidates = self._subscription_filter(candidates, params)
            elif stream == "prices":
                candidates = self._price_filter(candidates, params)
            for field in _filters_of(stream):
                if field in params:
                    wanted = str(params[field]).lower() if field == "currency" else params[field]
                    candidates = [r for r in candidates if r.get(field) == wanted]
            candidates.sort(key=lambda o: self._order(stream, o), reverse=True)
            after, before = params.get("starting_after"), params.get("ending_before")
            for name, cursor in (("starting_after", after), ("ending_before", before)):
                if cursor is not None and cursor not in self.objects[stream]:
                    raise StripeRefusal(400, f"No such {_OBJECT[stream]}: '{cursor}'", code="resource_missing",
                                        param=name)
            if after:
                mark = self._order(stream, self.objects[stream][after])
                rest = [r for r in candidates if self._order(stream, r) < mark]
                page, has_more = rest[:limit], len(rest) > limit
            elif before:
                mark = self._order(stream, self.objects[stream][before])
                ahead = [r for r in candidates if self._order(stream, r) > mark]
                page, has_more = ahead[-limit:], len(ahead) > limit
            else:
                page, has_more = candidates[:limit], len(candidates) > limit
            data = [self._render(stream, r, self._list_expand(params)) for r in page]
        return {"object": "list", "url": url or f"/v1/{stream}", "has_more": has_more, "data": data}

    @staticmethod
    def _list_expand(params: dict[str, Any], extra: frozenset[str] = frozenset()) -> set[str]:
        """A list's or search result's `expand[]`: paths into its items start with `data.` (`data.customer`);
        `extra` names what the list object itself can expand (a search's `total_count`)."""
        paths: set[str] = set()
        for path in _expand(params):
            if path.startswith("data."):
                paths.add(path.removeprefix("data."))
            elif path not in extra:
                raise StripeRefusal(400, f"This property cannot be expanded ({path}). You may want to try "
                                    f"expanding 'data.{path}' instead.", param="expand")
        return paths

    def _created_filter(self, rows: list[dict[str, Any]], created: Any) -> list[dict[str, Any]]:
        if created is None:
            return rows
        if not isinstance(created, dict):
            moment = _integer(created, "created")
            return [r for r in rows if r["created"] == moment]
        tests = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__}
        for op, bound in created.items():
            if op not in tests:
                raise StripeRefusal(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
            moment = _integer(bound, f"created[{op}]")
            rows = [r for r in rows if tests[op](r["created"], moment)]
        return rows

    def _visible_events(self, rows: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        """Events inside Stripe's 30-day retention, narrowed by `type` (with `*` wildcards) or `types`."""
        oldest = self.now() - EVENT_RETENTION_SECONDS
        rows = [r for r in rows if r["created"] >= oldest]
        if "type" in params and "types" in params:
            raise StripeRefusal(400, "You may only specify one of these parameters: type, types.", param="types")
        if "type" in params:
            pattern = re.compile(".*".join(map(re.escape, str(params["type"]).split("*"))))
            rows = [r for r in rows if pattern.fullmatch(r["type"])]
        if "types" in params:
            types = params["types"] if isinstance(params["types"], list) else [params["types"]]
            if len(types) > MAX_TYPES:
                raise StripeRefusal(400, f"You may pass at most {MAX_TYPES} types.", param="types")
            rows = [r for r in rows if r["type"] in set(types)]
        if "delivery_success" in params and str(params["delivery_success"]).lower() == "false":
            rows = [r for r in rows if r["pending_webhooks"]]
        return rows

    def _object_endpoint(self, stream: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            object_id = request.path_params["id"]
            with self.sandbox.lock:
                obj = self.objects[stream].get(object_id)
                if obj is not None and stream == "events" and obj["created"] < self.now() - EVENT_RETENTION_SECONDS:
                    obj = None
                gone = self.deleted.get(object_id) if stream == "customers" else None
            if obj is None and gone is not None and request.method == "GET":
                # Stripe: "When requesting the ID of a customer that has been deleted, a subset of the customer's
                # information is returned, including a `deleted` property, which will be true."
                _unknown(nest(request.query_params.multi_items()), frozenset({"expand"}))
                return JSONResponse(gone)
            if obj is None:
                raise StripeRefusal(404, f"No such {_OBJECT[stream]}: '{object_id}'", code="resource_missing",
                                    param="id")
            if request.method == "DELETE":
                _unknown(nest(request.query_params.multi_items()), frozenset())
                return JSONResponse(self.delete_customer(object_id, self._origin(request)),
                                    headers={"Request-Id": self._new_id("req")})
            if request.method == "POST":
                form = await self._form(request)
                _unknown(form, _UPDATE_PARAMS[stream])
                origin = self._origin(request)
                expand = _expand(form)
                self._check_expand(stream, expand)

                def produce() -> tuple[int, Any]:
                    changes = {k: v for k, v in form.items() if k != "expand"}
                    updated = self.update(stream, object_id, changes, origin=origin, strict=True)
                    return 200, copy.deepcopy(self._render(stream, updated, expand))
                return self._idempotent(request, form, produce, origin)
            params = nest(request.query_params.multi_items())
            _unknown(params, frozenset({"expand"}))
            with self.sandbox.lock:
                return JSONResponse(self._render(stream, obj, _expand(params)))
        return serve

    async def _charge_refunds(self, request: Request) -> Response:
        charge_id = request.path_params["id"]
        if charge_id not in self.objects["charges"]:
            raise StripeRefusal(404, f"No such charge: '{charge_id}'", code="resource_missing", param="id")
        params = nest(request.query_params.multi_items())
        _unknown(params, frozenset({"ending_before", "expand", "limit", "starting_after"}))
        rows = [r for r in self.objects["refunds"].values() if r["charge"] == charge_id]
        return JSONResponse(self.list_page("refunds", params, f"/v1/charges/{charge_id}/refunds", rows))

    def _subscription_filter(self, rows: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        """`status` (default: every status but canceled; `ended` = canceled or incomplete_expired; `all`), `price`
        / `plan` (a price on one of its items), `current_period_start[...]` / `current_period_end[...]` (of its
        items: the period lives there since API version 2025-03-31)."""
        status = params.get("status")
        if status is not None and status not in _LIST_STATUSES:
            raise StripeRefusal(400, f"Invalid status: must be one of {', '.join(_LIST_STATUSES)}", param="status")
        if status is None:
            rows = [r for r in rows if r["status"] != "canceled"]
        elif status == "ended":
            rows = [r for r in rows if r["status"] in _ENDED]
        elif status != "all":
            rows = [r for r in rows if r["status"] == status]
        for param in ("price", "plan"):
            if param in params:
                rows = [r for r in rows if any(i["price"]["id"] == params[param] for i in r["items"]["data"])]
        for field in ("current_period_start", "current_period_end"):
            if field in params:
                keep = {r["id"] for r in self._created_filter(
                    [{"id": r["id"], "created": min(i[field] for i in r["items"]["data"])} for r in rows],
                    params[field])}
                rows = [r for r in rows if r["id"] in keep]
        return rows

    @staticmethod
    def _price_filter(rows: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        if "active" in params:
            rows = [r for r in rows if r["active"] == _boolean(params["active"], "active")]
        for field in ("currency", "product", "type"):
            if field in params:
                rows = [r for r in rows if r[field] == str(params[field]).lower()]
        if "lookup_keys" in params:
            keys = params["lookup_keys"] if isinstance(params["lookup_keys"], list) else [params["lookup_keys"]]
            rows = [r for r in rows if r["lookup_key"] in set(keys)]
        return rows

    def _check_expand(self, stream: str, expand: Iterable[str]) -> None:
        """Stripe's 400 for a path that is not an expandable property (`expand[]=email`), checked before a write."""
        for path in expand:
            head, _, rest = path.partition(".")
            if stream == "charges" and head == "refunds" and not rest:
                continue
            target = _EXPANDABLE.get(stream, {}).get(head)
            if target is None:
                raise StripeRefusal(400, f"This property cannot be expanded ({path}).", param="expand")
            if rest:
                self._check_expand(target, [rest])

    def _render(self, stream: str, obj: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        """The object as served, with `expand` applied: each path (`customer`, `customer.…`, `invoice`) replaces
        an id with the object it names (a null stays null; a deleted customer is its `deleted` stub); `refunds` on
        a charge is only there when expanded (API versions ≥ 2022-11-15). Unknown paths are Stripe's 400."""
        if stream == "balance_transactions":
            obj = {**obj, "status": "available" if obj["available_on"] <= self.now() else "pending"}
        if not expand:
            return obj
        self._check_expand(stream, expand)
        rendered = dict(obj)
        nested: dict[str, set[str]] = {}
        for path in expand:
            head, _, rest = path.partition(".")
            nested.setdefault(head, set())
            if rest:
                nested[head].add(rest)
        for head, rest in nested.items():
            if stream == "charges" and head == "refunds":
                refunds = sorted((r for r in self.objects["refunds"].values() if r["charge"] == obj["id"]),
                                 key=lambda r: (r["created"], r["id"]), reverse=True)
                rendered["refunds"] = {"object": "list", "data": refunds, "has_more": False,
                                       "total_count": len(refunds), "url": f"/v1/charges/{obj['id']}/refunds"}
                continue
            target, value = _EXPANDABLE[stream][head], obj.get(head)
            if not isinstance(value, str):
                continue
            found = self.objects[target].get(value)
            if found is not None:
                rendered[head] = self._render(target, found, rest)
            elif target == "customers" and value in self.deleted:
                rendered[head] = dict(self.deleted[value])
        return rendered

    # -- search -----------------------------------------------------------------------------------------
    def _search_endpoint(self, stream: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            params = nest(request.query_params.multi_items())
            return JSONResponse(self.search(stream, params))
        return serve

    def search(self, stream: str, params: dict[str, Any]) -> dict[str, Any]:
        """One page of `GET /v1/<stream>/search`: `{"object": "search_result", "url", "has_more", "data",
        "next_page"}` (+ `total_count` when `expand[]=total_count`), newest first, `page` an opaque token."""
        _unknown(params, _SEARCH_PARAMS)
        if not params.get("query"):
            raise StripeRefusal(400, "Missing required param: query.", param="query")
        query = str(params["query"])
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise StripeRefusal(400, "This value must be greater than or equal to 1 and less than or equal to "
                                f"{MAX_LIMIT}.", param="limit")
        expand = self._list_expand(params, frozenset({"total_count"}))
        test = self._compile_search(stream, query)
        digest = fingerprint([stream, query])[:16]
        offset = 0
        if params.get("page"):
            try:
                state = json.loads(base64.urlsafe_b64decode(str(params["page"]).encode()))
                offset, seen = int(state["o"]), state["q"]
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise StripeRefusal(400, f"Invalid page: {params['page']}", param="page") from None
            if seen != digest:
                raise StripeRefusal(400, "The page token was created for a different query.", param="page")
        with self.sandbox.lock:
            rows = sorted((r for r in self.objects[stream].values() if test(r)),
                          key=lambda o: self._order(stream, o), reverse=True)
            page = rows[offset:offset + limit]
            data = [self._render(stream, r, expand) for r in page]
        has_more = offset + limit < len(rows)
        body: dict[str, Any] = {
            "object": "search_result", "data": data, "has_more": has_more,
            "next_page": base64.urlsafe_b64encode(json.dumps({"o": offset + limit, "q": digest}).encode()).decode()
            if has_more else None,
            "url": f"/v1/{stream}/search",
        }
        if "total_count" in _expand(params):
            body["total_count"] = len(rows)
        return body

    def _compile_search(self, stream: str, query: str) -> Callable[[dict[str, Any]], bool]:
        """Stripe's search query language, the part integrations use: clauses `field:value` (exact, case
        insensitive), `field~"sub"` (substring, ≥ 3 characters), `field>n` / `<` / `>=` / `<=` (numbers),
        `metadata["key"]:"value"`, `-` negating a clause, `null`, joined by all-AND or all-OR."""
        fields = _SEARCH_FIELDS[stream]
        position, clauses, joins = 0, [], set()
        while True:
            match = _SEARCH_CLAUSE.match(query, position)
            if match is None:
                raise StripeRefusal(400, f"Invalid query: could not parse the query at position {position}: "
                                    f"'{query[position:]}'.", param="query")
            clauses.append(match)
            position = match.end()
            if position >= len(query):
                break
            join = re.match(r"(AND|OR)\s+", query[position:])
            if join is None:
                raise StripeRefusal(400, f"Invalid query: expected AND or OR at position {position}.", param="query")
            joins.add(join.group(1))
            position += join.end()
        if len(joins) > 1:
            raise StripeRefusal(400, "Invalid query: a query cannot combine AND and OR clauses.", param="query")
        if len(clauses) > 10:
            raise StripeRefusal(400, "Invalid query: a query can have at most 10 clauses.", param="query")
        tests = [self._search_clause(stream, fields, m) for m in clauses]
        if joins == {"OR"}:
            return lambda record: any(t(record) for t in tests)
        return lambda record: all(t(record) for t in tests)

    @staticmethod
    def _search_clause(stream: str, fields: dict[str, str], match: re.Match[str]) -> Callable[[dict[str, Any]], bool]:
        name, op, raw = match.group("field"), match.group("op"), match.group("value")
        base = "metadata" if match.group("key") else name
        kind = fields.get(base)
        if kind is None or (base == "metadata" and not match.group("key")):
            raise StripeRefusal(400, f"Field `{name}` is an unsupported search field for resource `{stream}`. See "
                                f"http://stripe.com/docs/search#query-fields-for-{stream} for a list of supported "
                                "fields.", param="query")
        value: Any = None if raw == "null" else raw[1:-1] if raw[0] in "'\"" else raw
        if op in (">", "<", ">=", "<=") and kind != "number":
            raise StripeRefusal(400, f"Invalid query: `{op}` can only be used with numeric fields; `{name}` is not "
                                "numeric.", param="query")
        if op == "~" and (kind not in ("string", "metadata") or value is None or len(str(value)) < 3):
            raise StripeRefusal(400, f"Invalid query: substring matching (`~`) on `{name}` needs a string of at "
                                "least 3 characters.", param="query")
        if kind == "number" and value is not None:
            try:
                value = float(value)
            except ValueError:
                raise StripeRefusal(400, f"Invalid query: `{name}` takes a number, not {raw}.", param="query") \
                    from None

        def read(record: dict[str, Any]) -> Any:
            if match.group("key"):
                return (record.get("metadata") or {}).get(match.group("key"))
            current: Any = record
            for part in name.split("."):
                current = current.get(part) if isinstance(current, dict) else None
            return current

        def test(record: dict[str, Any]) -> bool:
            actual = read(record)
            if value is None:
                result = actual in (None, "")
            elif actual is None:
                result = False
            elif kind == "number":
                number = float(actual)
                result = {":": number == value, ">": number > value, "<": number < value,
                          ">=": number >= value, "<=": number <= value}[op]
            elif kind == "boolean":
                result = str(actual).lower() == str(value).lower()
            elif op == "~":
                result = str(value).lower() in str(actual).lower()
            else:
                result = str(actual).lower() == str(value).lower()
            return not result if match.group("neg") else result
        return test

    # -- the event log ---------------------------------------------------------------------------
    def _record(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None, origin: Origin | None,
                *, created: int | None = None, event_id: str | None = None,
                copy_snapshot: bool = True) -> dict[str, Any]:
        """Append one Event: a deep copy of the object after the change, and for updates the old values."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj) if copy_snapshot else obj}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        event = {
            "id": event_id or self._new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": self._stamp() if created is None else created, "data": data, "livemode": False,
            "pending_webhooks": 0, "request": dict(origin or _automatic()), "type": type_,
        }
        with self.sandbox.lock:
            self.objects["events"][event["id"]] = event
            self._event_order[event["id"]] = len(self._event_order)
        return event

    def events(self) -> list[dict[str, Any]]:
        """Every event the emulator ever recorded (including those past retention), newest first."""
        return self.dump("events")

    # -- writes ---------------------------------------------------------------------------------
    @staticmethod
    async def _form(request: Request) -> dict[str, Any]:
        """A form-encoded body in Stripe's bracket notation (`metadata[key]=v`, `expand[0]=x`), nested."""
        return nest(parse_qsl((await request.body()).decode(), keep_blank_values=True))

    def _origin(self, request: Request) -> Origin:
        return {"id": self._new_id("req"), "idempotency_key": request.headers.get("idempotency-key")}

    def _idempotent(self, request: Request, form: dict[str, Any], produce: Callable[[], tuple[int, Any]],
                    origin: Origin) -> Response:
        """Run a write once per Idempotency-Key. A refused request (a StripeRefusal from `produce`) is not
        stored, as Stripe saves no result for a request that failed validation: the same key may try again."""
        key = request.headers.get("idempotency-key")
        with self.sandbox.lock:
            status, body, replayed = self.replay_or_store(key, {"path": request.url.path, "form": form}, produce)
        if status == -1:
            raise StripeRefusal(
                400, "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                "idempotency_error")
        headers = {"Request-Id": str(origin["id"])}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        if key:
            headers["Idempotency-Key"] = key
        return JSONResponse(body, status_code=status, headers=headers)

    async def _create(self, stream: str, request: Request) -> Response:
        if stream not in _CREATE_PARAMS:
            raise StripeRefusal(400, f"Creating {stream} is not supported by the sandbox.")
        form = await self._form(request)
        _unknown(form, _CREATE_PARAMS[stream])
        origin = self._origin(request)
        make = {"customers": self._create_customer, "charges": self._create_charge,
                "refunds": self._create_refund, "subscriptions": self._create_subscription}[stream]
        expand = _expand(form)
        self._check_expand(stream, expand)
        return self._idempotent(
            request, form, lambda: (200, copy.deepcopy(self._render(stream, make(form, origin), expand))), origin)

    def _create_customer(self, form: dict[str, Any], origin: Origin | None = None) -> dict[str, Any]:
        cid = self._new_id("cus")
        obj = {
            "id": cid, "object": "customer", "address": form.get("address"),
            "balance": _integer(form.get("balance", 0), "balance"), "created": self._stamp(), "currency": None,
            "default_source": None, "delinquent": False, "description": form.get("description"),
            "email": form.get("email"), "invoice_prefix": token(cid, length=8).upper(), "livemode": False,
            "metadata": form.get("metadata", {}), "name": form.get("name"), "phone": form.get("phone"),
            "preferred_locales": form.get("preferred_locales", []), "shipping": None, "tax_exempt": "none",
            "test_clock": None,
        }
        with self.sandbox.lock:
            self.objects["customers"][cid] = obj
            self._record("customer.created", obj, None, origin)
        return obj

    def _create_charge(self, form: dict[str, Any], origin: Origin | None = None) -> dict[str, Any]:
        """`POST /v1/charges`: a card charge that succeeds at once (the sandbox's cards never decline)."""
        for required in ("amount", "currency"):
            if required not in form:
                raise StripeRefusal(400, f"Missing required param: {required}.", param=required)
        amount = _integer(form["amount"], "amount", positive=True)
        currency = str(form["currency"]).lower()
        customer_id, source = form.get("customer"), form.get("source")
        with self.sandbox.lock:
            customer = self.objects["customers"].get(customer_id) if customer_id else None
            if customer_id and customer is None:
                raise StripeRefusal(400, f"No such customer: '{customer_id}'", code="resource_missing",
                                    param="customer")
            if customer is None and not source:
                raise StripeRefusal(400, "Must provide source or customer.")
            return self.new_charge(amount, currency, customer, origin=origin, description=form.get("description"),
                                   metadata=form.get("metadata") or {}, receipt_email=form.get("receipt_email"),
                                   source=source, capture=str(form.get("capture", "true")).lower() != "false")

    def new_charge(self, amount: int, currency: str, customer: dict[str, Any] | None, *,
                   origin: Origin | None = None, description: str | None = None,
                   metadata: dict[str, str] | None = None, receipt_email: str | None = None,
                   source: str | None = None, capture: bool = True, invoice: str | None = None) -> dict[str, Any]:
        """A succeeded charge stamped now, its `charge.succeeded` event, and, for a customer without a currency
        yet, the `customer.updated` that Stripe records when the first charge fixes the customer's currency."""
        charge_id = self._new_id("ch")
        email = receipt_email or (customer or {}).get("email")
        charge = {
            "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount if capture else 0,
            "amount_refunded": 0, "balance_transaction": f"txn_{token(charge_id)}" if capture else None,
            "billing_details": {"email": email, "name": (customer or {}).get("name"), "phone": None,
                                "address": {"country": None}},
            "captured": capture, "created": self._stamp(), "currency": currency,
            "customer": customer["id"] if customer else None, "description": description, "disputed": False,
            "failure_code": None, "failure_message": None, "invoice": invoice, "livemode": False,
            "metadata": dict(metadata or {}),
            "outcome": {"network_status": "approved_by_network", "risk_level": "normal",
                        "seller_message": "Payment complete.", "type": "authorized"},
            "paid": True, "payment_intent": f"pi_{token(charge_id, 'pi')}",
            "payment_method": source if source and not source.startswith("tok_") else f"card_{token(charge_id)}",
            "receipt_email": email, "refunded": False, "status": "succeeded",
        }
        with self.sandbox.lock:
            self.objects["charges"][charge_id] = charge
            if capture:
                self._charge_moved_balance(charge)
            self._record("charge.succeeded", charge, None, origin)
            if customer is not None and customer.get("currency") is None:
                self.update("customers", customer["id"], {"currency": currency}, origin=origin)
        return charge

    def _create_refund(self, form: dict[str, Any], origin: Origin | None = None) -> dict[str, Any]:
        with self.sandbox.lock:
            charge = None
            if form.get("charge"):
                charge = self.objects["charges"].get(form["charge"])
                if charge is None:
                    raise StripeRefusal(400, f"No such charge: '{form['charge']}'", code="resource_missing",
                                        param="charge")
            elif form.get("payment_intent"):
                charge = next((c for c in self.objects["charges"].values()
                               if c.get("payment_intent") == form["payment_intent"]), None)
                if charge is None:
                    raise StripeRefusal(400, f"No such payment_intent: '{form['payment_intent']}'",
                                        code="resource_missing", param="payment_intent")
            else:
                raise StripeRefusal(400, "One of the following params should be provided for this request: "
                                    "payment_intent or charge.")
            amount = _integer(form["amount"], "amount", positive=True) if "amount" in form else None
            return self.refund(charge["id"], amount, reason=form.get("reason"), metadata=form.get("metadata"),
                               origin=origin)

    def refund(self, charge_id: str, amount: int | None = None, *, reason: str | None = None,
               metadata: dict[str, str] | None = None, origin: Origin | None = None) -> dict[str, Any]:
        """Refund (part of) a charge as `POST /v1/refunds` does, stamped now: the charge's `amount_refunded`
        and `refunded` change, and `charge.refunded` (with previous_attributes) and `refund.created` are
        recorded. Raises StripeRefusal with Stripe's error for a refund Stripe would refuse."""
        with self.sandbox.lock:
            charge = self.objects["charges"].get(charge_id)
            if charge is None:
                raise StripeRefusal(400, f"No such charge: '{charge_id}'", code="resource_missing", param="charge")
            if reason is not None and reason not in _REFUND_REASONS:
                raise StripeRefusal(400, "Invalid reason: must be one of duplicate, fraudulent, or "
                                    "requested_by_customer", param="reason")
            if charge["disputed"]:
                raise StripeRefusal(400, f"Charge {charge_id} has been charged back; cannot issue a refund.",
                                    code="charge_disputed", param="charge")
            rest = charge["amount"] - charge["amount_refunded"]
            if rest <= 0:
                raise StripeRefusal(400, f"Charge {charge_id} has already been refunded.",
                                    code="charge_already_refunded", param="charge")
            amount = rest if amount is None else amount
            if amount > rest:
                raise StripeRefusal(
                    400, f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded amount "
                    f"on charge ({_money(rest, charge['currency'])})", param="amount")
            before = copy.deepcopy(charge)
            refund = self._apply_refund(charge, amount, reason, metadata or {}, self._stamp(), self._new_id("re"))
            self._record("charge.refunded", charge, _diff(before, charge), origin)
            self._record("refund.created", refund, None, origin)
        return refund

    def _apply_refund(self, charge: dict[str, Any], amount: int, reason: str | None, metadata: dict[str, str],
                      created: int, refund_id: str) -> dict[str, Any]:
        refund = {
            "id": refund_id, "object": "refund", "amount": amount,
            "balance_transaction": f"txn_{token(refund_id)}", "charge": charge["id"], "created": created,
            "currency": charge["currency"], "destination_details": {"type": "card", "card": {"type": "refund"}},
            "metadata": dict(metadata), "payment_intent": charge.get("payment_intent"), "reason": reason,
            "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
            "transfer_reversal": None,
        }
        self.objects["refunds"][refund_id] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._balance_transaction(refund["balance_transaction"], source=refund_id, type_="refund", amount=-amount,
                                  fee=0, currency=charge["currency"], created=created,
                                  description=f"REFUND FOR CHARGE ({charge.get('description') or charge['id']})")
        return refund

    def _charge_moved_balance(self, charge: dict[str, Any]) -> dict[str, Any]:
        """The balance transaction of a captured charge: its amount in, Stripe's fee out (FEE_SCHEDULE)."""
        return self._balance_transaction(
            charge["balance_transaction"], source=charge["id"], type_="charge", amount=charge["amount"],
            fee=stripe_fee(charge["amount"], charge["currency"]), currency=charge["currency"],
            created=charge["created"], description=charge.get("description"))

    def _balance_transaction(self, txn_id: str, *, source: str, type_: str, amount: int, fee: int, currency: str,
                             created: int, description: str | None) -> dict[str, Any]:
        """One movement of the balance, as `GET /v1/balance_transactions/{id}` answers it (`status` is set when
        served: pending until `available_on`)."""
        txn = {
            "id": txn_id, "object": "balance_transaction", "amount": amount, "available_on": _available_on(created),
            "balance_type": "payments", "created": created, "currency": currency, "description": description,
            "exchange_rate": None, "fee": fee,
            "fee_details": [{"amount": fee, "application": None, "currency": currency,
                             "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [],
            "net": amount - fee, "reporting_category": type_, "source": source, "status": "pending", "type": type_,
        }
        with self.sandbox.lock:
            self.objects["balance_transactions"][txn_id] = txn
        return txn

    def open_dispute(self, charge_id: str, amount: int | None = None, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder's bank disputes a charge (Stripe has no API to do this; it happens to you): the
        charge turns `disputed: true` and `charge.dispute.created` is recorded with the dispute, stamped now."""
        if reason not in _DISPUTE_REASONS:
            raise ValueError(f"unknown dispute reason {reason!r}; Stripe's are {', '.join(_DISPUTE_REASONS)}")
        with self.sandbox.lock:
            charge = self.objects["charges"].get(charge_id)
            if charge is None:
                raise ValueError(f"no Stripe charge {charge_id}")
            if charge["disputed"]:
                raise ValueError(f"charge {charge_id} is already disputed")
            amount = charge["amount"] if amount is None else int(amount)
            if not 0 < amount <= charge["amount"]:
                raise ValueError(f"a dispute's amount must be 1..{charge['amount']}, not {amount}")
            created = self._stamp()
            dispute_id = self._new_id("dp")
            dispute = {
                "id": dispute_id, "object": "dispute", "amount": amount, "balance_transactions": [],
                "charge": charge_id, "created": created, "currency": charge["currency"],
                "evidence": {"customer_email_address": None, "customer_name": None, "product_description": None,
                             "uncategorized_text": None},
                "evidence_details": {"due_by": created + 7 * 24 * 3600, "has_evidence": False, "past_due": False,
                                     "submission_count": 0},
                "is_charge_refundable": False, "livemode": False, "metadata": {},
                "payment_intent": charge.get("payment_intent"), "reason": reason, "status": "needs_response",
            }
            self.objects["disputes"][dispute_id] = dispute
            charge["disputed"] = True
            self._record("charge.dispute.created", dispute, None, _automatic())
        return dispute

    def delete_customer(self, customer_id: str, origin: Origin | None = None) -> dict[str, Any]:
        """`DELETE /v1/customers/{id}`: the customer leaves every list and search, `customer.deleted` is recorded
        (with the customer as it was), and retrieving the id afterwards answers the `deleted` stub, as Stripe
        does; a second delete is a 404. Charges and invoices keep the customer's id; its subscriptions are
        canceled at once (`customer.subscription.deleted` each), as Stripe cancels a deleted customer's."""
        with self.sandbox.lock:
            customer = self.objects["customers"].pop(customer_id, None)
            if customer is None:
                raise StripeRefusal(404, f"No such customer: '{customer_id}'", code="resource_missing", param="id")
            stub = {"id": customer_id, "object": "customer", "deleted": True}
            self.deleted[customer_id] = stub
            for subscription in list(self.objects["subscriptions"].values()):  # Stripe cancels them at once
                if subscription["customer"] == customer_id and subscription["status"] not in _ENDED:
                    self.cancel_subscription(subscription["id"], origin=origin)
            self._record("customer.deleted", customer, None, origin)
        return dict(stub)

    def update(self, stream: str, object_id: str, changes: dict[str, Any], *, origin: Origin | None = None,
               strict: bool = False) -> dict[str, Any]:
        """Change a customer, charge, invoice or refund as `POST /v1/<stream>/{id}` does (metadata merges, an
        empty string unsets) and record `<object>.updated` with previous_attributes if anything changed.

        With `strict` (the API path) only fields the object has are set; without it (the sandbox side, as a
        change made in the Dashboard or by Stripe itself, e.g. a customer's `currency`) any field may be."""
        with self.sandbox.lock:
            obj = self.objects[stream].get(object_id)
            if obj is None:
                raise ValueError(f"no Stripe {_OBJECT[stream]} {object_id}")
            before = copy.deepcopy(obj)
            for field, value in changes.items():
                if field == "metadata" and isinstance(value, dict):
                    merged = {**(obj.get("metadata") or {}), **value}
                    obj["metadata"] = {k: v for k, v in merged.items() if v not in ("", None)}
                elif strict and field not in obj:
                    continue
                elif value == "":
                    obj[field] = None
                elif field in _INT_FIELDS and isinstance(value, str):
                    obj[field] = _integer(value, field)
                else:
                    obj[field] = value
            previous = _diff(before, obj)
            if previous:
                self._record(f"{_EVENT_PREFIX[stream]}.updated", obj, previous, origin)
        return obj

    # -- subscriptions -----------------------------------------------------------------------------
    def _price_id(self, code: str, currency: str) -> str:
        return f"price_{token(self.world.seed, 'price', code, currency, length=24)}"

    def _build_prices(self) -> None:
        """One recurring price per plan of the world and currency the group sells in: `lookup_key`
        `<plan>-<currency>` (e.g. `pro-monthly-usd`), `nickname` the plan's name (`Pro monthly`)."""
        created = _unix(self.world.start) - 90 * 24 * 3600
        for plan in self.world.subscription_plans:
            product = f"prod_{token(self.world.seed, 'prod', plan.code)}"
            for currency in ("usd", "gbp", "eur"):
                price_id = self._price_id(plan.code, currency)
                self.objects["prices"][price_id] = self._price(
                    price_id, product, currency, plan.unit_amount, plan.interval, 1, created,
                    nickname=plan.name, lookup_key=f"{plan.code}-{currency}")

    @staticmethod
    def _price(price_id: str, product: str, currency: str, unit_amount: int, interval: str, interval_count: int,
               created: int, *, nickname: str | None = None, lookup_key: str | None = None,
               active: bool = True) -> dict[str, Any]:
        return {
            "id": price_id, "object": "price", "active": active, "billing_scheme": "per_unit", "created": created,
            "currency": currency, "custom_unit_amount": None, "livemode": False, "lookup_key": lookup_key,
            "metadata": {}, "nickname": nickname, "product": product,
            "recurring": {"interval": interval, "interval_count": interval_count, "meter": None,
                          "trial_period_days": None, "usage_type": "licensed"},
            "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None, "type": "recurring",
            "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount),
        }

    @staticmethod
    def _item(item_id: str, subscription_id: str, price: dict[str, Any], quantity: int, created: int,
              period: tuple[int, int]) -> dict[str, Any]:
        return {"id": item_id, "object": "subscription_item", "billing_thresholds": None, "created": created,
                "current_period_end": period[1], "current_period_start": period[0], "discounts": [],
                "metadata": {}, "price": copy.deepcopy(price), "quantity": quantity,
                "subscription": subscription_id, "tax_rates": []}

    @staticmethod
    def _subscription(subscription_id: str, customer_id: str, items: list[dict[str, Any]], *, created: int,
                      status: str, start_date: int, anchor: int, trial: tuple[int, int] | None = None,
                      collection_method: str = "charge_automatically", days_until_due: int | None = None,
                      description: str | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """A subscription as API version 2025-09-30.clover serves it: the billing period on its items."""
        return {
            "id": subscription_id, "object": "subscription", "application": None, "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": anchor, "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic", "updated_at": None}, "billing_thresholds": None,
            "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": collection_method, "created": created, "currency": items[0]["price"]["currency"],
            "customer": customer_id, "days_until_due": days_until_due, "default_payment_method": None,
            "default_source": None, "default_tax_rates": [], "description": description, "discounts": [],
            "ended_at": None, "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                      "url": f"/v1/subscription_items?subscription={subscription_id}"},
            "latest_invoice": None, "livemode": False, "metadata": dict(metadata or {}),
            "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
            "schedule": None, "start_date": start_date, "status": status, "test_clock": None, "transfer_data": None,
            "trial_end": trial[1] if trial else None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": trial[0] if trial else None,
        }

    def _build_subscription(self, fact: Subscription, customer_id: str,
                            happened: Callable[..., None]) -> None:
        """A world subscription and its history of events: created as it began, then the change that brought it
        to its status (a failed renewal, a cancellation, a cancellation scheduled for the period's end)."""
        seed = self.world.seed
        sub_id = f"sub_{token(seed, 'sub', fact.key, length=24)}"
        price = self.objects["prices"][self._price_id(fact.plan.code, fact.currency.lower())]
        created = _unix(fact.created_at)
        period = (_unix(fact.period_start), _unix(fact.period_end))
        trial = (created, _unix(fact.trial_end)) if fact.trial_end else None
        item_id = f"si_{token(seed, 'si', fact.key)}"
        if fact.status == "past_due":  # migrated with its start backdated one period; its first renewal failed
            before = (_unix(add_interval(fact.period_start, fact.plan.interval, -1)), period[0])
            record = self._subscription(sub_id, customer_id, [self._item(item_id, sub_id, price, 1, created, before)],
                                        created=created, status="active", start_date=before[0], anchor=before[0])
            happened(created, "customer.subscription.created", record)
            old = copy.deepcopy(record)
            record["status"] = "past_due"
            record["items"]["data"][0].update(current_period_start=period[0], current_period_end=period[1])
            happened(period[0], "customer.subscription.updated", record, _diff(old, record))
        else:
            record = self._subscription(
                sub_id, customer_id, [self._item(item_id, sub_id, price, 1, created, period)], created=created,
                status="trialing" if trial else "active", start_date=created, anchor=period[1] if trial else created,
                trial=trial)
            happened(created, "customer.subscription.created", record)
            if fact.status == "canceled":
                moment = _unix(fact.canceled_at or fact.changed_at or fact.created_at)
                record.update(status="canceled", canceled_at=moment, ended_at=moment)
                record["cancellation_details"] = {**record["cancellation_details"],
                                                  "reason": "cancellation_requested"}
                happened(moment, "customer.subscription.deleted", record)
            elif fact.cancel_at_period_end:
                old = copy.deepcopy(record)
                record.update(cancel_at_period_end=True, cancel_at=period[1])
                record["cancellation_details"] = {**record["cancellation_details"],
                                                  "reason": "cancellation_requested"}
                happened(_unix(fact.changed_at or fact.created_at), "customer.subscription.updated", record,
                         _diff(old, record))
        self.objects["subscriptions"][sub_id] = record

    def _item_prices(self, items: Any) -> list[tuple[dict[str, Any], int, dict[str, Any]]]:
        """(price, quantity, the item's own parameters) per `items[n]`: a `price` id or inline `price_data`; an
        item naming only its `id` (an update) has no price ({})."""
        if not isinstance(items, list) or not items:
            raise StripeRefusal(400, "Invalid array: items must be a non-empty array of items.", param="items")
        out = []
        for n, item in enumerate(items):
            where = f"items[{n}]"
            if not isinstance(item, dict):
                raise StripeRefusal(400, f"Invalid object: {where}", param=where)
            quantity = _integer(item.get("quantity", 1), f"{where}[quantity]", positive=True)
            if item.get("price"):
                price = self.objects["prices"].get(str(item["price"]))
                if price is None:
                    raise StripeRefusal(400, f"No such price: '{item['price']}'", code="resource_missing",
                                        param=f"{where}[price]")
                if not price["active"]:
                    raise StripeRefusal(400, "The price specified is inactive. This field only accepts active "
                                        "prices.", param=f"{where}[price]")
            elif isinstance(item.get("price_data"), dict):
                price = self._inline_price(item["price_data"], f"{where}[price_data]")
            elif item.get("id"):
                price = {}
            else:
                raise StripeRefusal(400, f"You must specify a price or price_data for {where}.", param=where)
            out.append((price, quantity, item))
        return out

    def _inline_price(self, data: dict[str, Any], where: str) -> dict[str, Any]:
        """`price_data`: a new price of a product the account sells (Stripe makes it, inactive for reuse)."""
        for required in ("currency", "product", "recurring", "unit_amount"):
            if required not in data:
                raise StripeRefusal(400, f"Missing required param: {where}[{required}].", param=f"{where}[{required}]")
        products = {p["product"] for p in self.objects["prices"].values()}
        if data["product"] not in products:
            raise StripeRefusal(400, f"No such product: '{data['product']}'", code="resource_missing",
                                param=f"{where}[product]")
        recurring = data["recurring"] if isinstance(data["recurring"], dict) else {}
        interval = recurring.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise StripeRefusal(400, "Invalid recurring[interval]: must be one of day, week, month, or year",
                                param=f"{where}[recurring][interval]")
        count = _integer(recurring.get("interval_count", 1), f"{where}[recurring][interval_count]", positive=True)
        price_id = self._new_id("price")
        price = self._price(price_id, str(data["product"]), str(data["currency"]).lower(),
                            _integer(data["unit_amount"], f"{where}[unit_amount]"), interval, count, self._stamp(),
                            active=False)
        self.objects["prices"][price_id] = price
        return price

    @staticmethod
    def _period_end(start: int, price: dict[str, Any]) -> int:
        recurring = price["recurring"]
        moment = datetime.fromtimestamp(start, UTC)
        return _unix(add_interval(moment, recurring["interval"], recurring["interval_count"]))

    @staticmethod
    def _not_emulated(form: dict[str, Any]) -> None:
        for name in form:
            if name not in _SUBSCRIPTION_EMULATED:
                raise StripeRefusal(400, f"The sandbox does not emulate `{name}` on subscriptions.", param=name)

    @staticmethod
    def _trial_end(value: Any, now: int) -> int:
        if value == "now":
            return now
        moment = _integer(value, "trial_end")
        if moment <= now:
            raise StripeRefusal(400, "Invalid timestamp: must be an integer Unix timestamp in the future.",
                                param="trial_end")
        return moment

    def _create_subscription(self, form: dict[str, Any], origin: Origin | None = None) -> dict[str, Any]:
        """`POST /v1/subscriptions`: `customer` and `items` (each a `price` or `price_data`, and a `quantity`); a
        trial (`trial_end`, `trial_period_days`) starts it `trialing`, else it is `active` at once (`incomplete`
        with `payment_behavior=default_incomplete`); the first period starts now."""
        self._not_emulated(form)
        for required in ("customer", "items"):
            if required not in form:
                raise StripeRefusal(400, f"Missing required param: {required}.", param=required)
        now = self._stamp()
        with self.sandbox.lock:
            customer_id = str(form["customer"])
            if customer_id not in self.objects["customers"]:
                raise StripeRefusal(400, f"No such customer: '{customer_id}'", code="resource_missing",
                                    param="customer")
            priced = self._item_prices(form["items"])
            if any(not price for price, _, _ in priced):
                raise StripeRefusal(400, "You must specify a price or price_data for each item.", param="items")
            if len({p["currency"] for p, _, _ in priced}) > 1:
                raise StripeRefusal(400, "All prices on a subscription must have the same `currency`.",
                                    param="items")
            if len({(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p, _, _ in priced}) > 1:
                raise StripeRefusal(400, "Currency and interval fields must match across all plans on this "
                                    "subscription. Found mismatch in interval field.", param="items")
            if "currency" in form and str(form["currency"]).lower() != priced[0][0]["currency"]:
                raise StripeRefusal(400, "The `currency` must match the prices' currency.", param="currency")
            collection = str(form.get("collection_method", "charge_automatically"))
            if collection not in ("charge_automatically", "send_invoice"):
                raise StripeRefusal(400, "Invalid collection_method: must be one of charge_automatically or "
                                    "send_invoice", param="collection_method")
            due = _integer(form["days_until_due"], "days_until_due") if "days_until_due" in form else None
            if collection == "send_invoice" and due is None:
                raise StripeRefusal(400, "Missing required param: days_until_due.", param="days_until_due")
            trial = None
            if "trial_end" in form and form["trial_end"] != "now":
                trial = (now, self._trial_end(form["trial_end"], now))
            elif "trial_period_days" in form:
                days = _integer(form["trial_period_days"], "trial_period_days", positive=True)
                trial = (now, now + days * 24 * 3600)
            period = (now, trial[1] if trial else self._period_end(now, priced[0][0]))
            if trial:
                status = "trialing"
            elif form.get("payment_behavior") == "default_incomplete":
                status = "incomplete"
            else:
                status = "active"
            sub_id = self._new_id("sub")
            items = [self._item(self._new_id("si"), sub_id, price, quantity, now, period)
                     for price, quantity, _ in priced]
            record = self._subscription(sub_id, customer_id, items, created=now, status=status, start_date=now,
                                        anchor=period[1] if trial else now, trial=trial,
                                        collection_method=collection, days_until_due=due,
                                        description=form.get("description") or None,
                                        metadata={k: v for k, v in (form.get("metadata") or {}).items() if v})
            if form.get("default_payment_method"):
                record["default_payment_method"] = form["default_payment_method"]
            if "cancel_at_period_end" in form and _boolean(form["cancel_at_period_end"], "cancel_at_period_end"):
                record.update(cancel_at_period_end=True, cancel_at=period[1])
            elif form.get("cancel_at") not in (None, ""):
                record["cancel_at"] = _integer(form["cancel_at"], "cancel_at")
            self.objects["subscriptions"][sub_id] = record
            self._record("customer.subscription.created", record, None, origin)
        return record

    async def _subscription_endpoint(self, request: Request) -> Response:
        """`GET` retrieve, `POST` update, `DELETE` cancel (`/v1/subscriptions/{id}`)."""
        sub_id = request.path_params["id"]
        with self.sandbox.lock:
            found = self.objects["subscriptions"].get(sub_id)
        if found is None:
            raise StripeRefusal(404, f"No such subscription: '{sub_id}'", code="resource_missing", param="id")
        if request.method == "GET":
            params = nest(request.query_params.multi_items())
            _unknown(params, frozenset({"expand"}))
            with self.sandbox.lock:
                return JSONResponse(self._render("subscriptions", found, _expand(params)))
        # stripe-python sends a DELETE's parameters in the query string, a POST's in the form body
        form = await self._form(request) if request.method == "POST" else nest(request.query_params.multi_items())
        _unknown(form, _UPDATE_PARAMS["subscriptions"] if request.method == "POST" else _CANCEL_PARAMS)
        origin = self._origin(request)
        expand = _expand(form)
        self._check_expand("subscriptions", expand)
        changes = {k: v for k, v in form.items() if k != "expand"}

        def produce() -> tuple[int, Any]:
            if request.method == "POST":
                done = self.update_subscription(sub_id, changes, origin=origin)
            else:
                done = self.cancel_subscription(sub_id, changes.get("cancellation_details"), origin=origin)
            return 200, copy.deepcopy(self._render("subscriptions", done, expand))
        return self._idempotent(request, form, produce, origin)

    def update_subscription(self, sub_id: str, changes: dict[str, Any], *,
                            origin: Origin | None = None) -> dict[str, Any]:
        """`POST /v1/subscriptions/{id}`: cancel at the period's end (or at `cancel_at`) or take that back, end or
        move a trial (`trial_end`; `now` ends it: `active` from now, in a new period), change items (`items[n][id]`
        with a new `price` / `quantity`, or `deleted`; an item without `id` is added), metadata (merged) and the
        rest `_SUBSCRIPTION_EMULATED` names; records `customer.subscription.updated` when anything changed. A
        canceled subscription takes only metadata and cancellation_details, as at Stripe."""
        self._not_emulated(changes)
        now = self._stamp()
        with self.sandbox.lock:
            record = self.objects["subscriptions"][sub_id]
            if record["status"] in _ENDED and set(changes) - {"metadata", "cancellation_details"}:
                raise StripeRefusal(400, "A canceled subscription can only update its cancellation_details and "
                                    "metadata.")
            before = copy.deepcopy(record)
            if "items" in changes:
                self._change_items(record, changes["items"], now)
            if "trial_end" in changes:
                moment = self._trial_end(changes["trial_end"], now)
                if moment == now:
                    if record["status"] == "trialing":
                        self._start_period(record, now)
                        record.update(status="active", trial_end=now, billing_cycle_anchor=now)
                else:
                    record.update(trial_end=moment, status="trialing", billing_cycle_anchor=moment)
                    record["trial_start"] = record["trial_start"] or now
                    for item in record["items"]["data"]:
                        item["current_period_end"] = moment
            if "cancel_at_period_end" in changes:
                at_end = _boolean(changes["cancel_at_period_end"], "cancel_at_period_end")
                record.update(cancel_at_period_end=at_end,
                              cancel_at=min(i["current_period_end"] for i in record["items"]["data"])
                              if at_end else None)
                record["cancellation_details"]["reason"] = "cancellation_requested" if at_end else None
            if "cancel_at" in changes:
                value = changes["cancel_at"]
                record.update(cancel_at=None if value == "" else _integer(value, "cancel_at"),
                              cancel_at_period_end=False)
            if isinstance(changes.get("metadata"), dict):
                merged = {**record["metadata"], **changes["metadata"]}
                record["metadata"] = {k: v for k, v in merged.items() if v not in ("", None)}
            if isinstance(changes.get("cancellation_details"), dict):
                for key in ("comment", "feedback"):
                    if key in changes["cancellation_details"]:
                        record["cancellation_details"][key] = changes["cancellation_details"][key] or None
            for field in ("description", "default_payment_method", "collection_method"):
                if field in changes:
                    record[field] = changes[field] or None
            if "days_until_due" in changes:
                record["days_until_due"] = _integer(changes["days_until_due"], "days_until_due")
            if "pause_collection" in changes:
                value = changes["pause_collection"]
                record["pause_collection"] = ({"behavior": value.get("behavior"),
                                               "resumes_at": value.get("resumes_at")}
                                              if isinstance(value, dict) else None)
            previous = _diff(before, record)
            if previous:
                self._record("customer.subscription.updated", record, previous, origin)
        return record

    def _change_items(self, record: dict[str, Any], items: Any, now: int) -> None:
        first = record["items"]["data"][0]
        period = (first["current_period_start"], first["current_period_end"])
        by_id = {i["id"]: i for i in record["items"]["data"]}
        for n, (price, quantity, item) in enumerate(self._item_prices(items)):
            if item.get("id"):
                existing = by_id.get(str(item["id"]))
                if existing is None:
                    raise StripeRefusal(400, f"No such subscription item: '{item['id']}'", code="resource_missing",
                                        param=f"items[{n}][id]")
                if "deleted" in item and _boolean(item["deleted"], f"items[{n}][deleted]"):
                    del by_id[existing["id"]]
                    continue
                if price:
                    existing["price"] = copy.deepcopy(price)
                if "quantity" in item:
                    existing["quantity"] = quantity
            else:
                new = self._item(self._new_id("si"), record["id"], price, quantity, now, period)
                by_id[new["id"]] = new
        if not by_id:
            raise StripeRefusal(400, "A subscription must have at least one active plan.", param="items")
        record["items"]["data"] = list(by_id.values())
        record["items"]["total_count"] = len(by_id)

    def _start_period(self, record: dict[str, Any], start: int) -> None:
        for item in record["items"]["data"]:
            item.update(current_period_start=start, current_period_end=self._period_end(start, item["price"]))

    def cancel_subscription(self, sub_id: str, details: Any = None, *,
                            origin: Origin | None = None) -> dict[str, Any]:
        """`DELETE /v1/subscriptions/{id}`: canceled now (`canceled_at`, `ended_at`), `customer.subscription.
        deleted` recorded. A subscription that has already ended cannot be canceled again (400)."""
        now = self._stamp()
        with self.sandbox.lock:
            record = self.objects["subscriptions"].get(sub_id)
            if record is None:
                raise StripeRefusal(404, f"No such subscription: '{sub_id}'", code="resource_missing", param="id")
            if record["status"] in _ENDED:
                raise StripeRefusal(400, f"A canceled subscription can only update its cancellation_details and "
                                    f"metadata; {sub_id} is already {record['status']}.")
            record.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False,
                          cancel_at=None)
            record["cancellation_details"]["reason"] = "cancellation_requested"
            if isinstance(details, dict):
                for key in ("comment", "feedback"):
                    if key in details:
                        record["cancellation_details"][key] = details[key] or None
            self._record("customer.subscription.deleted", record, None, origin)
        return record

    def set_subscription_status(self, sub_id: str, status: str) -> dict[str, Any]:
        """What happens to a subscription without an API call, stamped now, with its event: a renewal payment
        fails (`past_due`, later `unpaid`), a retry succeeds (`past_due` → `active`), a trial runs out (`trialing`
        → `active`, its first paid period starting now; or `paused` without a payment method), the first payment
        never comes (`incomplete` → `incomplete_expired`), or Stripe cancels it after the last retry (`canceled`,
        recorded as `customer.subscription.deleted`). Raises ValueError for an unknown status or an ended one."""
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {status!r}; Stripe's are "
                             f"{', '.join(SUBSCRIPTION_STATUSES)}")
        with self.sandbox.lock:
            record = self.objects["subscriptions"].get(sub_id)
            if record is None:
                raise ValueError(f"no Stripe subscription {sub_id}")
            if record["status"] in _ENDED:
                raise ValueError(f"subscription {sub_id} has ended ({record['status']}); its status cannot change")
            if status == "canceled":
                return self.cancel_subscription(sub_id)
            before = copy.deepcopy(record)
            now = self._stamp()
            if record["status"] == "trialing" and status in ("active", "paused"):
                record["trial_end"] = now
                if status == "active":
                    self._start_period(record, now)
                    record["billing_cycle_anchor"] = now
            if status == "incomplete_expired":
                record["ended_at"] = now
            record["status"] = status
            previous = _diff(before, record)
            if previous:
                self._record("customer.subscription.updated", record, previous, _automatic())
        return record

    # -- simulation -----------------------------------------------------------------------------
    def simulate(self, stream: str, request: dict[str, Any]) -> dict[str, Any]:
        """Business events as they reach Stripe, stamped at `now()` with their events:

        - `charges`: a customer pays an accounting invoice by card (`email`, `amount`, `currency`,
          `invoice_number`) → the new charge (`charge.succeeded`);
        - `refunds`: a refund made in the Dashboard (`charge`, optional `amount`, `reason`) → the refund;
        - `disputes`: the cardholder disputes a charge (`charge`, optional `amount`, `reason`) → the dispute;
        - `subscriptions`: a subscription changes status by itself (`subscription`, `status`: a failed renewal
          `past_due`, a trial that ends `active`, Stripe canceling it `canceled` ...) → the subscription.
        """
        if stream == "subscriptions":
            return self.set_subscription_status(str(request["subscription"]), str(request["status"]))
        if stream == "disputes":
            return self.open_dispute(str(request["charge"]), request.get("amount"),
                                     str(request.get("reason", "fraudulent")))
        if stream == "refunds":
            amount = request.get("amount")
            try:
                return self.refund(str(request["charge"]), int(amount) if amount is not None else None,
                                   reason=request.get("reason"))
            except StripeRefusal as refusal:
                raise ValueError(refusal.message) from None
        if stream != "charges":
            raise NotImplementedError(f"stripe cannot simulate {stream}")
        email = str(request["email"])
        with self.sandbox.lock:
            customer = next((c for c in self.objects["customers"].values() if (c.get("email") or "").lower()
                             == email.lower()), None)
            if customer is None:
                raise ValueError(f"no Stripe customer with email {email}")
            return self.new_charge(
                int(request["amount"]), str(request["currency"]).lower(), customer,
                description=f"Payment for {request['invoice_number']}",
                metadata={"accounting_invoice": str(request["invoice_number"])}, receipt_email=email)

    # -- ground truth ---------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        with self.sandbox.lock:
            return sorted(self.objects[stream].values(), key=lambda o: self._order(stream, o), reverse=True)

    def touch(self, stream: str, count: int) -> list[str]:
        """Change the `count` newest records as a user would, each change with its event: a charge is refunded
        by one unit of currency (100) from the Dashboard, a customer, invoice or subscription gets a `touched`
        metadata key."""
        if stream not in ("customers", "charges", "invoices", "subscriptions"):
            raise NotImplementedError(f"stripe cannot touch {stream}")
        touched = []
        for obj in self.dump(stream)[:count]:
            if stream == "charges":
                rest = obj["amount"] - obj["amount_refunded"]
                if rest > 0 and not obj["disputed"]:
                    self.refund(obj["id"], min(100, rest))
            else:
                self.update(stream, obj["id"], {"metadata": {"touched": str(time.time_ns())}})
            touched.append(obj["id"])
        return touched


EMULATOR = StripeEmulator
