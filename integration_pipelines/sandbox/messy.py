"""The messy world: real-life accounting mess planted through the vendors' own APIs, each situation recorded.

A tidy seeded world proves little about money correctness: in a real group of companies a bookkeeper books card
payments by hand, customers pay in installments or one transfer for several invoices, two entities issue the same
invoice number, refunds and disputes arrive weeks later, webhooks come late, twice, out of order or replayed,
and CRM contacts are deleted and merged. `MessyWorld` does each of those as a person or another app would:
over HTTP against a running sandbox (QuickBooks, Xero, Stripe, HubSpot under their real paths, with their real
authentication), then appends a record of what it did to `POST /_sandbox/world/anomalies`, with the facts a
test needs to state the expected outcome by hand (systems, ids, invoice numbers, amounts in minor units,
currencies, legal entity, timestamps). Because it only uses public APIs, the same calls work at any moment:
before the project's first sync, or after it.

Defaults are deterministic: with no arguments each method picks its objects from the seeded world in a fixed
order (lowest id first, skipping invoices an earlier planted anomaly already uses) and uses fixed amounts, so
the same seed gives the same anomalies. Record shapes per kind are listed in docs/messy-world.md.

Conventions that the project's code must honour (and the doc states):
- a Stripe charge names the accounting invoice it pays in `metadata[accounting_invoice]` (one invoice number);
  a charge covering several invoices names them in `metadata[accounting_invoices]`, comma-separated without
  spaces, in the order they were listed (`"INV-1001,INV-1002"`), and has no `accounting_invoice`;
- money in records is in minor units (cents, pence); currencies are upper-case ISO codes.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from ..connectors.hubspot import SYSTEM as HUBSPOT
from ..connectors.quickbooks import SYSTEM as QUICKBOOKS
from ..connectors.stripe import SYSTEM as STRIPE
from ..connectors.xero import API_ROOT as XERO_API_ROOT
from ..connectors.xero import SYSTEM as XERO
from ..webhooks.config import SANDBOX_SECRETS, WebhookSecrets, WebhookSettings
from ..webhooks.simulator import Delivery, Signer, deliver
from .world import SUBSIDIARY_BY_COUNTRY

#: The books each legal entity keeps (ref seed `legal_entities.yaml`): the US entity in QuickBooks, UK and DE in Xero.
BOOKS_OF_COUNTRY = {"US": "quickbooks", "GB": "xero", "DE": "xero"}
CURRENCY_OF_COUNTRY = {"US": "USD", "GB": "GBP", "DE": "EUR"}
ENTITY_OF_CURRENCY = {CURRENCY_OF_COUNTRY[c]: SUBSIDIARY_BY_COUNTRY[c] for c in CURRENCY_OF_COUNTRY}
#: The country a books system's anomalies default to.
DEFAULT_COUNTRY = {"quickbooks": "US", "xero": "GB"}
STRIPE_API_VERSION = "2025-09-30.clover"
QBO_MINOR_VERSION = "75"
XERO_BANK_ACCOUNT = "090"
#: QuickBooks keeps at most 21 characters of `PaymentRefNum`; a real Stripe charge id (27) does not fit whole.
QBO_REF_NUM_MAX = 21
#: The metadata keys that tie a Stripe charge to accounting invoices (see the module docstring).
INVOICE_KEY = "accounting_invoice"
INVOICES_KEY = "accounting_invoices"
#: What `plant_before` plants, in this order (the demo's and `Sandbox(world="messy")`'s starting mess).
BEFORE_KINDS = ("deposit", "charge_for_several_invoices", "installments", "hand_booking", "hand_booking",
                "colliding_invoice_numbers", "late_refund", "dispute", "customer_change", "crm_delete", "crm_merge")


log = logging.getLogger(__name__)


class MessyError(RuntimeError):
    """A plant the sandbox refused: the message carries the vendor's own error."""


@dataclass(frozen=True)
class BooksInvoice:
    """An accounting invoice as the planter sees it, in either books, money in minor units."""

    system: str
    invoice_id: str
    number: str
    currency: str
    total: int
    balance: int
    customer_id: str
    customer_name: str
    email: str
    country: str
    stripe_customer_id: str | None

    @property
    def legal_entity(self) -> str:
        return SUBSIDIARY_BY_COUNTRY.get(self.country, ENTITY_OF_CURRENCY.get(self.currency, ""))


def _minor(amount: Any) -> int:
    return round(float(amount) * 100)


def _major(minor: int) -> float:
    return round(minor / 100, 2)


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` equal minor-unit amounts, the remainder on the last one."""
    share = total // parts
    return [share] * (parts - 1) + [total - share * (parts - 1)]


def _stripe_form(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Stripe's bracket notation: `{"metadata": {"a": "b"}}` → `metadata[a]=b`."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}[{key}]", inner)
        elif value is not None:
            pairs.append((prefix, str(value).lower() if isinstance(value, bool) else str(value)))

    for key, value in data.items():
        walk(key, value)
    return pairs


class MessyWorld:
    """Plants anomalies into a running sandbox through the vendors' APIs and records each one.

    `base_url` is the sandbox (`SandboxServer.url`, `IP_SANDBOX_URL`); the credentials default to the sandbox's
    fake ones (the connectors' sandbox values), so pointing it at the demo needs nothing else. Every planting
    method returns the record as the sandbox stored it (with its `seq`), also kept in `self.planted`.
    """

    def __init__(self, base_url: str, *, seed: int = 7, realm_id: str | None = None, tenant_id: str | None = None,
                 stripe_api_key: str | None = None, hubspot_token: str | None = None,
                 signer: Signer | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.seed = seed
        self.realm_id = realm_id or QUICKBOOKS.values["realm_id"].sandbox
        self.tenant_id = tenant_id or XERO.values["tenant_id"].sandbox
        self.stripe_api_key = stripe_api_key or STRIPE.values["api_key"].sandbox
        self.hubspot_token = hubspot_token or HUBSPOT.values["token"].sandbox
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self.signer = signer
        self.planted: list[dict[str, Any]] = []
        self._tokens: dict[str, str] = {}
        self._claimed: set[str] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the record --------------------------------------------------------------------------------------
    def anomalies(self) -> dict[str, Any]:
        """`GET /_sandbox/world/anomalies`: the seeded anomalies and `planted`, the list of records."""
        return self._check(self.http.get("/_sandbox/world/anomalies"), "reading the anomalies")

    def record(self, kind: str, system: str, **facts: Any) -> dict[str, Any]:
        """Append one planted anomaly to the sandbox's list (`POST /_sandbox/world/anomalies`)."""
        body = {"kind": kind, "system": system, **facts, "planted_at": _iso()}
        stored = self._check(self.http.post("/_sandbox/world/anomalies", json=body), "recording an anomaly")
        self.planted.append(stored)
        self._claim(self._invoice_numbers(stored))
        return stored

    @staticmethod
    def _invoice_numbers(record: dict[str, Any]) -> list[str]:
        numbers = [record[k] for k in ("invoice_number",) if record.get(k)]
        numbers += list(record.get("invoice_numbers") or [])
        numbers += [i["invoice_number"] for i in record.get("invoices") or [] if i.get("invoice_number")]
        return numbers

    def _claim(self, numbers: Iterable[str]) -> None:
        self._claimed_numbers().update(numbers)

    def _claimed_numbers(self) -> set[str]:
        """Invoice numbers some planted anomaly already uses: defaults never pick them twice."""
        if self._claimed is None:
            planted = self.anomalies().get("planted") or []
            self._claimed = {n for record in planted for n in self._invoice_numbers(record)}
        return self._claimed

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, attempts: int = 4, **kwargs: Any) -> httpx.Response:
        """One request, retried on 429/5xx/connection errors (every write carries an idempotency key, so a
        retry never plants twice)."""
        for attempt in range(attempts):
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError:
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in (429, 500, 502, 503, 504) and attempt + 1 < attempts:
                retry_after = response.headers.get("retry-after")
                time.sleep(min(5.0, float(retry_after)) if retry_after else 0.2 * 2**attempt)
                continue
            return response
        raise AssertionError("unreachable")

    @staticmethod
    def _check(response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise MessyError(f"{what}: HTTP {response.status_code}: {response.text[:800]}")
        return response.json() if response.content else None

    def _oauth(self, system: str, path: str, values: Any) -> str:
        if system not in self._tokens:
            response = self._send("POST", path, auth=(values["client_id"].sandbox, values["client_secret"].sandbox),
                                  data={"grant_type": "refresh_token",
                                        "refresh_token": values["refresh_token"].sandbox},
                                  headers={"Accept": "application/json"})
            self._tokens[system] = self._check(response, f"{system} token")["access_token"]
        return self._tokens[system]

    # QuickBooks Online
    def _qbo(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        for attempt in range(2):
            token = self._oauth("quickbooks", "/oauth2/v1/tokens/bearer", QUICKBOOKS.values)
            response = self._send(method, f"/v3/company/{self.realm_id}/{path}", json=json,
                                  params={"minorversion": QBO_MINOR_VERSION, **(params or {})},
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            if response.status_code == 401 and attempt == 0:
                self._tokens.pop("quickbooks", None)
                continue
            return self._check(response, f"QuickBooks {method} {path}")
        raise AssertionError("unreachable")

    def qbo_query(self, sql: str) -> list[dict[str, Any]]:
        """A QuickBooks query (`GET …/query?query=`); the rows of its entity."""
        entity = sql.split(" FROM ", 1)[1].split()[0] if " FROM " in sql else sql.split()[-1]
        return self._qbo("GET", "query", params={"query": sql})["QueryResponse"].get(entity, [])

    def _qbo_create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        # `requestid` makes a retried create replay QBO's first answer instead of booking twice
        return self._qbo("POST", entity.lower(), json=body, params={"requestid": uuid.uuid4().hex})[entity]

    # Xero
    def _xero(self, method: str, resource: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        for attempt in range(2):
            token = self._oauth("xero", "/connect/token", XERO.values)
            headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": self.tenant_id,
                       "Accept": "application/json"}
            if method in ("PUT", "POST"):
                headers["Idempotency-Key"] = uuid.uuid4().hex
            response = self._send(method, f"{XERO_API_ROOT}/{resource}", json=json, params=params, headers=headers)
            if response.status_code == 401 and attempt == 0:
                self._tokens.pop("xero", None)
                continue
            return self._check(response, f"Xero {method} {resource}")
        raise AssertionError("unreachable")

    def _xero_all(self, resource: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._xero("GET", resource, params={**(params or {}), "page": str(page), "pageSize": "100"})
            rows += body[resource]
            if page >= body.get("pagination", {}).get("pageCount", 1):
                return rows
            page += 1

    # Stripe
    def _stripe(self, method: str, path: str, data: dict[str, Any] | None = None,
                params: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.stripe_api_key}", "Stripe-Version": STRIPE_API_VERSION}
        content = None
        if method == "POST":
            headers["Idempotency-Key"] = f"messy-{uuid.uuid4().hex}"
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = urlencode(_stripe_form(data or {}))
        response = self._send(method, path, content=content, params=params, headers=headers)
        return self._check(response, f"Stripe {method} {path}")

    def stripe_list(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every object of a Stripe list (newest first), following `starting_after`."""
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self._stripe("GET", path, params={**(params or {}), "limit": "100",
                                                     **({"starting_after": after} if after else {})})
            rows += page["data"]
            if not page.get("has_more") or not page["data"]:
                return rows
            after = page["data"][-1]["id"]

    def _stripe_customers_by_email(self) -> dict[str, dict[str, Any]]:
        return {(c.get("email") or "").lower(): c for c in self.stripe_list("/v1/customers") if c.get("email")}

    # HubSpot
    def _hubspot(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self._send(method, path, json=json, params=params,
                              headers={"Authorization": f"Bearer {self.hubspot_token}"})
        return self._check(response, f"HubSpot {method} {path}")

    # -- finding things in the books -----------------------------------------------------------------------
    def books_invoices(self, books: str, *, include_paid: bool = False) -> list[BooksInvoice]:
        """Every receivable invoice with money still open in `books` (with `include_paid`, settled ones too),
        lowest id first."""
        stripe = self._stripe_customers_by_email()
        found: list[BooksInvoice] = []
        if books == "quickbooks":
            customers = {c["Id"]: c for c in self.qbo_query("SELECT * FROM Customer MAXRESULTS 1000")}
            where = "" if include_paid else "WHERE Balance > '0' "
            for row in self.qbo_query(f"SELECT * FROM Invoice {where}ORDERBY Id MAXRESULTS 1000"):
                customer = customers.get(row["CustomerRef"]["value"], {})
                email = ((row.get("BillEmail") or {}).get("Address")
                         or (customer.get("PrimaryEmailAddr") or {}).get("Address") or "")
                found.append(BooksInvoice(
                    "quickbooks", row["Id"], row.get("DocNumber") or "", (row.get("CurrencyRef") or {}).get(
                        "value", "USD"), _minor(row["TotalAmt"]), _minor(row["Balance"]), customer.get("Id", ""),
                    customer.get("DisplayName", ""), email, (customer.get("BillAddr") or {}).get("Country", ""),
                    (stripe.get(email.lower()) or {}).get("id")))
            found.sort(key=lambda i: int(i.invoice_id))
        elif books == "xero":
            contacts = {c["ContactID"]: c for c in self._xero_all("Contacts")}
            statuses = "AUTHORISED,PAID" if include_paid else "AUTHORISED"
            rows = self._xero_all("Invoices", {"Statuses": statuses, "where": 'Type=="ACCREC"'})
            for row in rows:
                contact = contacts.get(row["Contact"]["ContactID"], {})
                email = contact.get("EmailAddress") or ""
                street = next((a for a in contact.get("Addresses", []) if a.get("AddressType") == "STREET"), {})
                found.append(BooksInvoice(
                    "xero", row["InvoiceID"], row["InvoiceNumber"], row["CurrencyCode"], _minor(row["Total"]),
                    _minor(row["AmountDue"]), contact.get("ContactID", ""), contact.get("Name", ""), email,
                    street.get("Country", ""), (stripe.get(email.lower()) or {}).get("id")))
            found.sort(key=lambda i: (i.number, i.invoice_id))
        else:
            raise ValueError(f"unknown books {books!r}: quickbooks or xero")
        return [i for i in found if include_paid or i.balance > 0]

    def find_invoice(self, books: str, number: str, *, open_only: bool = True) -> BooksInvoice:
        """The invoice numbered `number` in `books` (numbers are unique within one books system); with
        `open_only` (the default) it must still have money open."""
        match = [i for i in self.books_invoices(books, include_paid=not open_only) if i.number == number]
        if not match:
            raise MessyError(f"{books} has no {'open ' if open_only else ''}invoice numbered {number}")
        return match[0]

    def _untouched(self, books: str, country: str | None, *, stripe: bool) -> list[BooksInvoice]:
        """Open, never-paid invoices of the entity's own customers that no planted anomaly uses yet."""
        country = country or DEFAULT_COUNTRY[books]
        claimed = self._claimed_numbers()
        return [i for i in self.books_invoices(books)
                if i.balance == i.total and i.country == country and i.currency == CURRENCY_OF_COUNTRY[country]
                and i.number not in claimed and (i.stripe_customer_id or not stripe)]

    def books_customers(self, books: str, country: str | None, *, stripe: bool) -> list[BooksInvoice]:
        """The entity's own customers in `books` (country and currency match), as invoice-less `BooksInvoice`s
        carrying only the customer fields, lowest QuickBooks id / Xero name first."""
        country = country or DEFAULT_COUNTRY[books]
        currency = CURRENCY_OF_COUNTRY[country]
        by_email = self._stripe_customers_by_email()
        found: list[BooksInvoice] = []
        if books == "quickbooks":
            rows = sorted(self.qbo_query("SELECT * FROM Customer MAXRESULTS 1000"), key=lambda c: int(c["Id"]))
            for row in rows:
                email = (row.get("PrimaryEmailAddr") or {}).get("Address") or ""
                if (row.get("BillAddr") or {}).get("Country") == country and (
                        row.get("CurrencyRef") or {}).get("value", "USD") == currency:
                    found.append(BooksInvoice("quickbooks", "", "", currency, 0, 0, row["Id"], row["DisplayName"],
                                              email, country, (by_email.get(email.lower()) or {}).get("id")))
        else:
            for row in sorted(self._xero_all("Contacts"), key=lambda c: (c["Name"], c["ContactID"])):
                street = next((a for a in row.get("Addresses", []) if a.get("AddressType") == "STREET"), {})
                email = row.get("EmailAddress") or ""
                if street.get("Country") == country and row.get("DefaultCurrency", currency) == currency:
                    found.append(BooksInvoice("xero", "", "", currency, 0, 0, row["ContactID"], row["Name"], email,
                                              country, (by_email.get(email.lower()) or {}).get("id")))
        if not found:
            raise MessyError(f"{books} has no customer in {country}")
        paying = [c for c in found if c.stripe_customer_id or not stripe]
        if not paying:
            # nobody there pays by card yet: the first customer does now, so Stripe gets a customer for them
            first = found[0]
            created = self._stripe("POST", "/v1/customers", {
                "email": first.email, "name": first.customer_name, "address": {"country": country}})
            paying = [BooksInvoice(**{**first.__dict__, "stripe_customer_id": created["id"]})]
        return paying

    def _owner(self, books: str, country: str | None, *, stripe: bool) -> BooksInvoice:
        """Whose invoice a new anomaly is about: the customer of the first untouched invoice, else the entity's
        first customer."""
        candidates = self._untouched(books, country, stripe=stripe)
        return candidates[0] if candidates else self.books_customers(books, country, stripe=stripe)[0]

    def _pick(self, books: str, country: str | None, *, stripe: bool) -> tuple[BooksInvoice, list[str]]:
        """The first untouched open invoice; when none is left (a small world), one issued now for the entity's
        first customer. Returns it and the numbers of invoices issued for it."""
        candidates = self._untouched(books, country, stripe=stripe)
        if candidates:
            return candidates[0], []
        owner = self.books_customers(books, country, stripe=stripe)[0]
        issued = self.issue_invoice(books, owner.customer_id, amount=30000, currency=owner.currency)
        return issued, [issued.number]

    def _same_customer(self, books: str, country: str | None, count: int, *, stripe: bool
                       ) -> tuple[list[BooksInvoice], list[str]]:
        """`count` open invoices of one customer: the first customer who has that many, else the customer of
        the first candidate (or the entity's first customer), with the missing invoices issued now (as the
        bookkeeper would). Returns the invoices and the numbers of those created."""
        candidates = self._untouched(books, country, stripe=stripe)
        by_customer: dict[str, list[BooksInvoice]] = {}
        for invoice in candidates:
            by_customer.setdefault(invoice.customer_id, []).append(invoice)
        for invoices in by_customer.values():
            if len(invoices) >= count:
                return invoices[:count], []
        first = candidates[0] if candidates else self.books_customers(books, country, stripe=stripe)[0]
        chosen, created = list(by_customer.get(first.customer_id, [])), []
        while len(chosen) < count:
            amount = 15000 + 2500 * len(chosen)
            new = self.issue_invoice(books, first.customer_id, amount=amount, currency=first.currency)
            chosen.append(new)
            created.append(new.number)
        return chosen, created

    def issue_invoice(self, books: str, customer_id: str, *, amount: int, currency: str, number: str | None = None,
                      description: str = "Consulting") -> BooksInvoice:
        """Issue a one-line receivable invoice as a bookkeeper would (QBO `POST …/invoice`, Xero `PUT Invoices`
        AUTHORISED), optionally with a chosen number; the books number it otherwise."""
        if books == "quickbooks":
            items = self.qbo_query("SELECT * FROM Item WHERE Sku = 'SERVICE-HR'")
            body: dict[str, Any] = {
                "CustomerRef": {"value": customer_id}, "CurrencyRef": {"value": currency},
                "Line": [{"DetailType": "SalesItemLineDetail", "Amount": _major(amount), "Description": description,
                          "SalesItemLineDetail": {"ItemRef": {"value": items[0]["Id"] if items else "1"},
                                                  "Qty": 1, "UnitPrice": _major(amount)}}],
            }
            if number:
                body["DocNumber"] = number
            saved = self._qbo_create("Invoice", body)
            invoice_id = saved["Id"]
        else:
            element: dict[str, Any] = {
                "Type": "ACCREC", "Contact": {"ContactID": customer_id}, "Status": "AUTHORISED",
                "CurrencyCode": currency, "LineAmountTypes": "Exclusive",
                "Date": datetime.now(UTC).date().isoformat(),
                "LineItems": [{"Description": description, "Quantity": 1, "UnitAmount": _major(amount),
                               "AccountCode": "200"}],
            }
            if number:
                element["InvoiceNumber"] = number
            saved = self._xero("PUT", "Invoices", json={"Invoices": [element]})["Invoices"][0]
            invoice_id = saved["InvoiceID"]
        return next(i for i in self.books_invoices(books) if i.invoice_id == invoice_id)

    # -- books writes --------------------------------------------------------------------------------------
    def _book_payment(self, invoice: BooksInvoice, amount: int, *, ref_num: str | None, note: str,
                      applied: int | None = None) -> tuple[str, dict[str, str]]:
        """A payment keyed in by hand against one invoice; returns its id and the reference fields written.
        In QuickBooks only `applied` (default: all) of it is applied to the invoice and the rest stays an
        unapplied credit of the customer, as QBO's "Receive payment" does with more than is open."""
        today = datetime.now(UTC).date().isoformat()
        applied = amount if applied is None else applied
        if invoice.system == "quickbooks":
            fields = {"PrivateNote": note}
            if ref_num:
                fields["PaymentRefNum"] = ref_num[:QBO_REF_NUM_MAX]
            lines = [{"Amount": _major(applied), "LinkedTxn": [{"TxnId": invoice.invoice_id, "TxnType": "Invoice"}]}]
            saved = self._qbo_create("Payment", {
                "CustomerRef": {"value": invoice.customer_id}, "TotalAmt": _major(amount), "TxnDate": today,
                "CurrencyRef": {"value": invoice.currency}, **fields, "Line": lines if applied > 0 else [],
            })
            return saved["Id"], fields
        if applied != amount:
            raise MessyError(f"Xero refuses a payment of {amount} on {invoice.number} with {invoice.balance} due "
                             "(its API has no unapplied payment against an invoice)")
        fields = {"Reference": ref_num or note}
        saved = self._xero("PUT", "Payments", json={"Payments": [{
            "Invoice": {"InvoiceID": invoice.invoice_id}, "Account": {"Code": XERO_BANK_ACCOUNT}, "Date": today,
            "Amount": _major(amount), **fields}]})["Payments"][0]
        return saved["PaymentID"], fields

    def _charge(self, invoice_numbers: list[str], customer_id: str, amount: int, currency: str,
                description: str) -> dict[str, Any]:
        metadata = ({INVOICE_KEY: invoice_numbers[0]} if len(invoice_numbers) == 1
                    else {INVOICES_KEY: ",".join(invoice_numbers)})
        return self._stripe("POST", "/v1/charges", {
            "amount": amount, "currency": currency.lower(), "customer": customer_id, "description": description,
            "metadata": metadata})

    # -- the anomalies ---------------------------------------------------------------------------------------
    def hand_booking(self, books: str = "quickbooks", *, invoice_number: str | None = None,
                     with_charge_id: bool = True, paid_before: int | None = None, amount: int | None = None,
                     charge_id: str | None = None, country: str | None = None) -> dict[str, Any]:
        """A customer pays (the rest of) a partly paid invoice by card, and the bookkeeper books that card payment
        by hand in the books, before any sync does: a QBO `Payment` (`Line[].LinkedTxn` → the invoice) or a Xero
        `PUT Payments`. With `with_charge_id` the Stripe charge id is in the reference fields (QBO
        `PaymentRefNum`, cut to 21 characters as QBO does, and whole in `PrivateNote`; Xero `Reference`); without
        it they name no charge, so only amount, customer and date tie the two together.

        The invoice is first made partly paid (a bank transfer of `paid_before`, default 40 % of the total,
        booked by hand) unless it already is or `paid_before=0`. The card payment is a new Stripe charge of
        `amount` (default: what is still open) with `metadata[accounting_invoice]`, or the existing `charge_id`.
        Usable at any time, before or after the project's sync: with `invoice_number` it books against that
        invoice even when the sync has settled it already; QuickBooks then keeps what exceeds the open amount as
        the customer's unapplied credit (`applied`, `unapplied` in the record), Xero refuses (MessyError).
        """
        invoice, created = ((self.find_invoice(books, invoice_number, open_only=False), []) if invoice_number
                            else self._pick(books, country, stripe=charge_id is None))
        prior_payment_id = None
        if paid_before is None:
            paid_before = round(invoice.total * 0.4) if invoice.balance == invoice.total else 0
        if paid_before:
            prior_payment_id, _ = self._book_payment(invoice, paid_before, ref_num="BANK-TRANSFER",
                                                     note=f"Bank transfer for {invoice.number}")
        open_amount = invoice.balance - paid_before
        if charge_id:
            charge = self._stripe("GET", f"/v1/charges/{charge_id}")
        else:
            if not invoice.stripe_customer_id:
                raise MessyError(f"the customer of {invoice.number} has no Stripe customer to pay by card")
            if not (amount or open_amount):
                raise MessyError(f"{invoice.number} is settled: name the card payment (`charge_id`) or an `amount`")
            charge = self._charge([invoice.number], invoice.stripe_customer_id, amount or open_amount,
                                  invoice.currency, f"Payment for {invoice.number}")
        paid = int(charge["amount"]) if amount is None else amount
        applied = min(paid, open_amount)
        if with_charge_id:
            ref_num, note = charge["id"], f"Card payment {charge['id']} (Stripe), booked by hand"
        else:
            ref_num, note = None, "Card payment (Stripe), booked by hand"
        payment_id, fields = self._book_payment(invoice, paid, ref_num=ref_num, note=note, applied=applied)
        return self.record(
            "hand_booking", books, legal_entity=invoice.legal_entity, invoice_id=invoice.invoice_id,
            invoice_number=invoice.number, currency=invoice.currency, invoice_total=invoice.total,
            paid_before=paid_before, prior_payment_id=prior_payment_id, amount=paid, applied=applied,
            unapplied=paid - applied, balance_after=open_amount - applied, payment_id=payment_id,
            charge_id=charge["id"],
            charge_created=int(charge["created"]), with_charge_id=with_charge_id, reference_fields=fields,
            customer_id=invoice.customer_id, stripe_customer_id=charge.get("customer"), created_invoices=created)

    def installments(self, books: str = "quickbooks", *, invoice_number: str | None = None, parts: int = 2,
                     amounts: list[int] | None = None, country: str | None = None) -> dict[str, Any]:
        """One invoice paid by `parts` (2 or 3) Stripe charges that sum to its open amount, each with
        `metadata[accounting_invoice]`: the books must end up settled once, not once per charge."""
        invoice, created = ((self.find_invoice(books, invoice_number), []) if invoice_number
                            else self._pick(books, country, stripe=True))
        amounts = list(amounts) if amounts else _split(invoice.balance, parts)
        if sum(amounts) != invoice.balance:
            raise ValueError(f"installments must sum to the open {invoice.balance}, not {sum(amounts)}")
        if not invoice.stripe_customer_id:
            raise MessyError(f"the customer of {invoice.number} has no Stripe customer")
        charges = [self._charge([invoice.number], invoice.stripe_customer_id, part, invoice.currency,
                                f"Installment {n} of {len(amounts)} for {invoice.number}")
                   for n, part in enumerate(amounts, start=1)]
        return self.record(
            "installments", "stripe", books=books, legal_entity=invoice.legal_entity, invoice_id=invoice.invoice_id,
            invoice_number=invoice.number, currency=invoice.currency, invoice_total=invoice.total,
            charge_ids=[c["id"] for c in charges], amounts=amounts, customer_id=invoice.customer_id,
            stripe_customer_id=invoice.stripe_customer_id, created_invoices=created)

    def deposit(self, books: str = "quickbooks", *, invoice_numbers: list[str] | None = None, count: int = 2,
                country: str | None = None) -> dict[str, Any]:
        """One QuickBooks payment (a bank deposit from the customer) applied to several invoices: a `Payment`
        with one `Line` per invoice, each paying that invoice's open amount. QuickBooks only (a Xero payment
        settles one invoice)."""
        if books != "quickbooks":
            raise ValueError("a deposit over several invoices is a QuickBooks payment; Xero pays one invoice each")
        created: list[str] = []
        if invoice_numbers:
            invoices = [self.find_invoice(books, n) for n in invoice_numbers]
        else:
            invoices, created = self._same_customer(books, country, count, stripe=False)
        if len({i.customer_id for i in invoices}) != 1:
            raise ValueError("a deposit pays invoices of one customer")
        total = sum(i.balance for i in invoices)
        numbers = [i.number for i in invoices]
        saved = self._qbo_create("Payment", {
            "CustomerRef": {"value": invoices[0].customer_id}, "TotalAmt": _major(total),
            "CurrencyRef": {"value": invoices[0].currency}, "TxnDate": datetime.now(UTC).date().isoformat(),
            "PaymentRefNum": "DEPOSIT", "PrivateNote": f"Bank deposit for {', '.join(numbers)}",
            "Line": [{"Amount": _major(i.balance), "LinkedTxn": [{"TxnId": i.invoice_id, "TxnType": "Invoice"}]}
                     for i in invoices],
        })
        return self.record(
            "deposit", books, legal_entity=invoices[0].legal_entity, payment_id=saved["Id"], invoice_numbers=numbers,
            invoice_ids=[i.invoice_id for i in invoices], amounts=[i.balance for i in invoices], total=total,
            currency=invoices[0].currency, customer_id=invoices[0].customer_id, created_invoices=created)

    def charge_for_several_invoices(self, books: str = "quickbooks", *, invoice_numbers: list[str] | None = None,
                                    count: int = 2, country: str | None = None) -> dict[str, Any]:
        """One Stripe charge paying several invoices of one customer, listed in
        `metadata[accounting_invoices]="INV-1,INV-2"` (no `accounting_invoice`), for their open amounts' sum."""
        created: list[str] = []
        if invoice_numbers:
            invoices = [self.find_invoice(books, n) for n in invoice_numbers]
        else:
            invoices, created = self._same_customer(books, country, count, stripe=True)
        first = invoices[0]
        if not first.stripe_customer_id:
            raise MessyError(f"the customer of {first.number} has no Stripe customer")
        numbers = [i.number for i in invoices]
        charge = self._charge(numbers, first.stripe_customer_id, sum(i.balance for i in invoices), first.currency,
                              f"Payment for {', '.join(numbers)}")
        return self.record(
            "charge_for_several_invoices", "stripe", books=books, legal_entity=first.legal_entity,
            charge_id=charge["id"], amount=int(charge["amount"]), currency=first.currency, invoice_numbers=numbers,
            invoice_ids=[i.invoice_id for i in invoices], amounts=[i.balance for i in invoices],
            metadata=charge["metadata"], customer_id=first.customer_id, stripe_customer_id=first.stripe_customer_id,
            created_invoices=created)

    def colliding_invoice_numbers(self, number: str = "INV-0042", *, us_amount: int = 24000,
                                  uk_amount: int = 19000, pay: bool = True) -> dict[str, Any]:
        """The same invoice number issued by two legal entities: a new QuickBooks invoice (USD, for the US
        entity's first customer with a Stripe account) and a new Xero invoice (GBP, for the UK entity's first),
        each then paid by a Stripe charge in its own currency whose `metadata[accounting_invoice]` is that same
        number. Only the currency and customer tell the two payments apart."""
        invoices = []
        for books, country, amount in (("quickbooks", "US", us_amount), ("xero", "GB", uk_amount)):
            owner = self._owner(books, country, stripe=True)
            invoice = self.issue_invoice(books, owner.customer_id, amount=amount,
                                         currency=CURRENCY_OF_COUNTRY[country], number=number)
            charge = (self._charge([number], str(owner.stripe_customer_id), amount, invoice.currency,
                                   f"Payment for {number}") if pay else None)
            invoices.append({
                "system": books, "legal_entity": SUBSIDIARY_BY_COUNTRY[country], "invoice_id": invoice.invoice_id,
                "invoice_number": number, "currency": invoice.currency, "amount": amount,
                "customer_id": owner.customer_id, "stripe_customer_id": owner.stripe_customer_id,
                "charge_id": charge["id"] if charge else None})
        return self.record("colliding_invoice_numbers", "quickbooks+xero", invoice_number=number, invoices=invoices)

    def late_refund(self, *, charge_id: str | None = None, amount: int | None = None,
                    min_age_days: float = 2.0) -> dict[str, Any]:
        """A refund (`POST /v1/refunds` with an Idempotency-Key) on a charge created days ago: by default the
        oldest unrefunded, undisputed charge that pays an accounting invoice and is at least `min_age_days` old,
        refunded in full (or `amount`). The change reaches readers only through the Events API or a re-read."""
        if charge_id:
            charge = self._stripe("GET", f"/v1/charges/{charge_id}")
        else:
            cutoff = time.time() - min_age_days * 86400
            candidates = sorted(
                (c for c in self.stripe_list("/v1/charges") if c.get("metadata", {}).get(INVOICE_KEY)
                 and not c.get("amount_refunded") and not c.get("disputed") and c["created"] <= cutoff
                 and c["metadata"][INVOICE_KEY] not in self._claimed_numbers()),
                key=lambda c: (c["created"], c["id"]))
            if not candidates:
                raise MessyError(f"no charge older than {min_age_days} days left to refund")
            charge = candidates[0]
        refund = self._stripe("POST", "/v1/refunds", {"charge": charge["id"], "amount": amount or charge["amount"]})
        return self.record(
            "late_refund", "stripe", legal_entity=ENTITY_OF_CURRENCY.get(charge["currency"].upper(), ""),
            charge_id=charge["id"], refund_id=refund["id"], amount=int(refund["amount"]),
            charge_amount=int(charge["amount"]), currency=charge["currency"].upper(),
            invoice_number=(charge.get("metadata") or {}).get(INVOICE_KEY), charge_created=int(charge["created"]),
            refund_created=int(refund["created"]), age_days=round((refund["created"] - charge["created"]) / 86400, 2),
            stripe_customer_id=charge.get("customer"))

    def dispute(self, *, charge_id: str | None = None, amount: int | None = None,
                reason: str = "product_not_received") -> dict[str, Any]:
        """The cardholder's bank disputes a charge that pays an accounting invoice (by default the newest such
        charge not already refunded, disputed or used). Stripe has no API to open a dispute: it happens to the
        merchant, so this is the sandbox's control call `POST /_sandbox/stripe/disputes/simulate`; the dispute
        is then read back through `GET /v1/disputes/{id}` as any client would."""
        if charge_id is None:
            candidates = [c for c in self.stripe_list("/v1/charges")
                          if (c.get("metadata") or {}).get(INVOICE_KEY) and not c.get("amount_refunded")
                          and not c.get("disputed") and c["metadata"][INVOICE_KEY] not in self._claimed_numbers()]
            if not candidates:
                raise MessyError("no charge left to dispute")
            charge = sorted(candidates, key=lambda c: (-c["created"], c["id"]))[0]
        else:
            charge = self._stripe("GET", f"/v1/charges/{charge_id}")
        opened = self._check(self.http.post("/_sandbox/stripe/disputes/simulate", json={
            "charge": charge["id"], "reason": reason, **({"amount": amount} if amount else {})}), "opening a dispute")
        dispute = self._stripe("GET", f"/v1/disputes/{opened['id']}")
        return self.record(
            "dispute", "stripe", legal_entity=ENTITY_OF_CURRENCY.get(charge["currency"].upper(), ""),
            dispute_id=dispute["id"], charge_id=charge["id"], amount=int(dispute["amount"]),
            currency=dispute["currency"].upper(), reason=dispute["reason"], status=dispute["status"],
            invoice_number=(charge.get("metadata") or {}).get(INVOICE_KEY), charge_created=int(charge["created"]),
            dispute_created=int(dispute["created"]), stripe_customer_id=charge.get("customer"))

    def customer_change(self, *, customer_id: str | None = None, email: str | None = None,
                        address_country: str | None = None) -> dict[str, Any]:
        """A change to an old Stripe customer (`POST /v1/customers/{id}`): a new email (default
        `<local>+billing@<domain>` of the old one) and, when `address_country` is given, a move to another
        country (so another legal entity). Stripe's API cannot change a customer's `currency` once set: it is
        not an update parameter, so a currency change only comes with a move and new charges. Default customer:
        the oldest one with an email."""
        if customer_id is None:
            customer = self._old_customers()[0]
        else:
            customer = self._stripe("GET", f"/v1/customers/{customer_id}")
        before = {"email": customer.get("email"), "address": copy.deepcopy(customer.get("address"))}
        local, _, domain = str(customer.get("email") or "customer@example.com").partition("@")
        changes: dict[str, Any] = {"email": email or f"{local}+billing@{domain}"}
        if address_country:
            changes["address"] = {"country": address_country}
        updated = self._stripe("POST", f"/v1/customers/{customer['id']}", changes)
        return self.record(
            "customer_change", "stripe", stripe_customer_id=customer["id"], customer_created=int(customer["created"]),
            before=before, after={"email": updated.get("email"), "address": updated.get("address")},
            changed_fields=sorted(changes), currency=(updated.get("currency") or "").upper() or None,
            legal_entity=SUBSIDIARY_BY_COUNTRY.get(((updated.get("address") or {}).get("country") or ""), ""))

    def crm_delete(self, *, contact_id: str | None = None) -> dict[str, Any]:
        """A contact archived in HubSpot (`DELETE /crm/v3/objects/contacts/{id}`), by default the lowest-id
        contact that is a customer and not part of another anomaly."""
        if contact_id is None:
            contact_id = self._crm_contacts(lambda c: c["properties"].get("lifecyclestage") == "customer")[0]["id"]
        before = self._hubspot("GET", f"/crm/v3/objects/contacts/{contact_id}",
                               params={"properties": "email,firstname,lastname"})
        self._hubspot("DELETE", f"/crm/v3/objects/contacts/{contact_id}")
        return self.record("crm_delete", "hubspot", contact_id=contact_id, email=before["properties"].get("email"),
                           name=f"{before['properties'].get('firstname')} {before['properties'].get('lastname')}")

    def crm_merge(self, *, primary_id: str | None = None, merged_id: str | None = None) -> dict[str, Any]:
        """Two contacts merged in HubSpot (`POST /crm/v3/objects/contacts/merge` with `{"primaryObjectId",
        "objectIdToMerge"}`): the merged-away id is archived and the primary keeps both ids. By default a sales
        rep first creates a duplicate of the lowest-id customer contact (same name and phone, a personal email,
        `POST /crm/v3/objects/contacts`) and then merges it into the original."""
        created = False
        if primary_id is None:
            primary_id = self._crm_contacts(lambda c: c["properties"].get("lifecyclestage") == "customer")[0]["id"]
        if merged_id is None:
            original = self._hubspot("GET", f"/crm/v3/objects/contacts/{primary_id}",
                                     params={"properties": "email,firstname,lastname,phone"})["properties"]
            personal = (f"{original.get('firstname')}.{original.get('lastname')}".lower().replace(" ", "")
                        + f".{primary_id[-4:]}@personal.example.net")
            duplicate = self._hubspot("POST", "/crm/v3/objects/contacts", json={"properties": {
                "email": personal, "firstname": original.get("firstname"), "lastname": original.get("lastname"),
                "phone": original.get("phone"), "lifecyclestage": "lead"}})
            merged_id, created = duplicate["id"], True
        emails = {}
        for cid in (primary_id, merged_id):
            emails[cid] = self._hubspot("GET", f"/crm/v3/objects/contacts/{cid}",
                                        params={"properties": "email"})["properties"].get("email")
        result = self._hubspot("POST", "/crm/v3/objects/contacts/merge",
                               json={"primaryObjectId": primary_id, "objectIdToMerge": merged_id})
        return self.record("crm_merge", "hubspot", primary_id=primary_id, merged_id=merged_id,
                           result_id=result["id"], primary_email=emails[primary_id], merged_email=emails[merged_id],
                           duplicate_created=created)

    def _crm_contacts(self, wanted: Any) -> list[dict[str, Any]]:
        """Live contacts, ascending id, that no planted CRM anomaly or seeded CRM anomaly already involves."""
        used = {str(r.get(k)) for r in self.anomalies().get("planted") or []
                for k in ("contact_id", "primary_id", "merged_id") if r.get(k)}
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self._hubspot("GET", "/crm/v3/objects/contacts", params={
                "limit": "100", "properties": "email,lifecyclestage", **({"after": after} if after else {})})
            rows += page["results"]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        # the seeded CRM anomalies (mixed-case email, duplicate contact) stay as they are
        seeded_messy = [r for r in rows if (r["properties"].get("email") or "") != (r["properties"].get("email")
                                                                                  or "").lower()
                        or (r["properties"].get("email") or "").endswith("@personal.example.net")]
        skip = used | {r["id"] for r in seeded_messy}
        found = [r for r in rows if r["id"] not in skip and wanted(r)]
        if not found:
            raise MessyError("no HubSpot contact left for a CRM anomaly")
        return sorted(found, key=lambda r: int(r["id"]))

    # -- webhook deliveries ------------------------------------------------------------------------------------
    def _signer(self, receiver_url: str) -> Signer:
        if self.signer is not None:
            return self.signer
        return Signer(WebhookSecrets(**SANDBOX_SECRETS), WebhookSettings(public_url=receiver_url))

    def stripe_events(self, object_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        """Stripe's events about one object (`GET /v1/events`), oldest first (the list's own order reversed:
        events of one second are ordered by Stripe, not by their ids)."""
        params = {"type": types[0]} if types and len(types) == 1 else {}
        events = [e for e in self.stripe_list("/v1/events", params)
                  if e["data"]["object"].get("id") == object_id and (not types or e["type"] in types)]
        return list(reversed(events))

    def _old_customers(self) -> list[dict[str, Any]]:
        """Stripe customers with an email that no planted anomaly involves, oldest first."""
        used = {r.get("stripe_customer_id") for r in self.anomalies().get("planted") or []}
        used |= {i.get("stripe_customer_id") for r in self.anomalies().get("planted") or []
                 for i in r.get("invoices") or []}
        customers = [c for c in self.stripe_list("/v1/customers") if c.get("email") and c["id"] not in used]
        if not customers:
            raise MessyError("no Stripe customer left for a customer anomaly")
        return sorted(customers, key=lambda c: (c["created"], c["id"]))

    def _customer_trail(self, changes: int) -> tuple[str, list[dict[str, Any]]]:
        """`changes` successive email changes of one old customer, and their `customer.updated` events."""
        customer = self._old_customers()[0]
        local, _, domain = customer["email"].partition("@")
        for n in range(1, changes + 1):
            self._stripe("POST", f"/v1/customers/{customer['id']}", {"email": f"{local}+v{n}@{domain}"})
        events = self.stripe_events(customer["id"], ["customer.updated"])[-changes:]
        if len(events) < changes:
            raise MessyError(f"Stripe recorded {len(events)} customer.updated events for {changes} changes")
        return customer["id"], events

    def _deliver(self, receiver_url: str, events: list[dict[str, Any]], client: httpx.Client
                 ) -> list[dict[str, Any]]:
        signer = self._signer(receiver_url)
        sent = []
        for position, event in enumerate(events, start=1):
            body = json.dumps(event, separators=(",", ":")).encode()
            delivery: Delivery = signer.sign("stripe", body)
            status = deliver(client, receiver_url, delivery, attempts=3, base_delay=0.1)
            sent.append({"position": position, "event_id": event["id"], "type": event["type"],
                         "object_id": event["data"]["object"].get("id"), "created": int(event["created"]),
                         "status": status, "delivered_at": _iso()})
        return sent

    def _webhook_record(self, kind: str, receiver_url: str, events: list[dict[str, Any]],
                        sent: list[dict[str, Any]], **facts: Any) -> dict[str, Any]:
        newest = events[-1]
        return self.record(kind, "stripe", receiver_url=receiver_url, deliveries=sent,
                           event_ids=[e["id"] for e in events],
                           newest_event_id=newest["id"], expected_final=newest["data"]["object"], **facts)

    def webhook_late(self, receiver_url: str, *, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """An event held back and delivered after a newer one about the same object (Stripe retries a failed
        delivery for days). `events` are oldest first; the oldest is held. Default: two email changes of an old
        customer; `customer.updated` #2 is delivered, then #1. The object's final state is the newer event's
        (`expected_final`)."""
        customer_id = None
        if events is None:
            customer_id, events = self._customer_trail(2)
        ordered = list(events)
        held, rest = ordered[0], ordered[1:]
        with httpx.Client(timeout=10) as client:
            sent = self._deliver(receiver_url, [*rest, held], client)
        return self._webhook_record("webhook_late", receiver_url, ordered, sent, held_event_id=held["id"],
                                    stripe_customer_id=customer_id)

    def webhook_out_of_order(self, receiver_url: str, *, events: list[dict[str, Any]] | None = None
                             ) -> dict[str, Any]:
        """Several events about one object (`events`, oldest first) delivered newest first (Stripe does not
        promise order). Default:
        three email changes of an old customer, their `customer.updated` events delivered #3, #2, #1."""
        customer_id = None
        if events is None:
            customer_id, events = self._customer_trail(3)
        ordered = list(events)
        with httpx.Client(timeout=10) as client:
            sent = self._deliver(receiver_url, list(reversed(ordered)), client)
        return self._webhook_record("webhook_out_of_order", receiver_url, ordered, sent,
                                    stripe_customer_id=customer_id)

    def webhook_twice(self, receiver_url: str, *, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """One event delivered twice, same event id and body (a retry after a lost acknowledgement). Default:
        the event of one email change of an old customer."""
        customer_id = None
        if event is None:
            customer_id, trail = self._customer_trail(1)
            event = trail[-1]
        with httpx.Client(timeout=10) as client:
            sent = self._deliver(receiver_url, [event, event], client)
        return self._webhook_record("webhook_twice", receiver_url, [event], sent, stripe_customer_id=customer_id)

    def webhook_replayed(self, receiver_url: str, *, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """One event delivered, then the same event re-sent under a NEW event id (as an operator re-sending a
        captured event, or a provider's replay tool, would): the same `data.object`, `type` and `created`, a
        different `id`. Only the content tells it is the same change."""
        customer_id = None
        if event is None:
            customer_id, trail = self._customer_trail(1)
            event = trail[-1]
        replay = {**copy.deepcopy(event), "id": f"evt_replay_{uuid.uuid4().hex[:20]}"}
        with httpx.Client(timeout=10) as client:
            sent = self._deliver(receiver_url, [event, replay], client)
        return self.record("webhook_replayed", "stripe", receiver_url=receiver_url, deliveries=sent,
                           event_ids=[event["id"], replay["id"]], original_event_id=event["id"],
                           replay_event_id=replay["id"], expected_final=event["data"]["object"],
                           stripe_customer_id=customer_id)

    def plant_webhooks(self, receiver_url: str) -> list[dict[str, Any]]:
        """Every webhook delivery anomaly, against a running receiver."""
        return [self.webhook_late(receiver_url), self.webhook_out_of_order(receiver_url),
                self.webhook_twice(receiver_url), self.webhook_replayed(receiver_url)]

    # -- the whole "before" mess ---------------------------------------------------------------------------------
    def plant_before(self, *, strict: bool = True) -> list[dict[str, Any]]:
        """The messy world's starting mess (`BEFORE_KINDS`), planted in a fixed order with default arguments:
        what `Sandbox(world="messy")` and `integration-pipelines sandbox serve --world messy` plant at start.

        With `strict=False` (the CLI's sandbox, whose world is anchored at today and so differs by the day) a
        kind that finds nothing to plant on, or that a vendor refuses, is skipped with a warning: the record
        then simply lacks it, so what is recorded is still exactly what was planted."""
        planted = []
        for plant in self._before():
            try:
                planted.append(plant())
            except MessyError as exc:
                if strict:
                    raise
                name = getattr(plant, "__name__", None) or getattr(getattr(plant, "func", None), "__name__", "?")
                log.warning("messy world: skipped %s: %s", name, exc)
        return planted

    def _before(self) -> list[Callable[[], dict[str, Any]]]:
        return [self.deposit, self.charge_for_several_invoices, functools.partial(self.installments, parts=3),
                functools.partial(self.hand_booking, "quickbooks", with_charge_id=True),
                functools.partial(self.hand_booking, "xero", with_charge_id=False), self.colliding_invoice_numbers,
                self.late_refund, self.dispute, self.customer_change, self.crm_delete, self.crm_merge]

