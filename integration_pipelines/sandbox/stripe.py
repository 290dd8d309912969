"""Stripe's API as the official stripe-python SDK sees it: `/v1` lists (`object: list`, `url`, `has_more`,
newest first), `starting_after`/`ending_before`, `created[...]` filters, form-encoded POSTs, Bearer keys,
`Idempotency-Key` replay, and `{"error": {"type", "message"}}` errors."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..connectors.stripe import SYSTEM
from .base import Emulator, bearer_token
from .ids import token

_LIST_OBJECT = {"customers": "customer", "charges": "charge", "invoices": "invoice"}
_PREFIX = {"customers": "cus", "charges": "ch", "invoices": "in"}


def _unix(moment: Any) -> int:
    return int(moment.timestamp())


class StripeEmulator(Emulator):
    name = "stripe"
    prefixes = ("/v1/",)
    streams = ("customers", "charges", "invoices")

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        self.api_key = SYSTEM.values["api_key"].sandbox
        seed = world.seed
        self.objects: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in self.streams}
        customer_ids: dict[int, str] = {}
        for person in world.people:
            if not person.in_stripe:
                continue
            cid = f"cus_{token(seed, 'cus', person.key)}"
            customer_ids[person.key] = cid
            self.objects["customers"][cid] = {
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
        invoice_ids: dict[int, str] = {}
        for invoice in world.invoices:
            if not invoice.billed_via_stripe or invoice.person.key not in customer_ids:
                continue
            iid = f"in_{token(seed, 'in', invoice.key)}"
            invoice_ids[invoice.key] = iid
            paid = invoice.amount if invoice.paid else 0
            self.objects["invoices"][iid] = {
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
        for payment in world.payments:
            if payment.processor != "stripe" or payment.person.key not in customer_ids:
                continue
            chid = f"ch_{token(seed, 'ch', payment.key)}"
            invoice_id = invoice_ids.get(payment.invoice.key) if payment.invoice else None
            self.objects["charges"][chid] = {
                "id": chid, "object": "charge", "amount": payment.amount, "amount_captured": payment.amount,
                "amount_refunded": payment.refunded, "balance_transaction": f"txn_{token(seed, 'txn', payment.key)}",
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

    # -- protocol ------------------------------------------------------------------------------
    def error_response(self, status: int, message: str, type_: str = "api_error", **extra: Any) -> Response:
        body = {"error": {"type": type_, "message": message, **extra}}
        return JSONResponse(body, status_code=status, headers={"Request-Id": f"req_{token(time.time_ns())}"})

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
        if key != self.api_key:
            return self.error_response(401, f"Invalid API Key provided: {key[:7]}{'*' * 12}{key[-4:]}",
                                       "invalid_request_error")
        return None

    def routes(self) -> list[Route]:
        routes = []
        for stream in self.streams:
            routes.append(Route(f"/v1/{stream}", self._endpoint(stream), methods=["GET", "POST"]))
            routes.append(Route(f"/v1/{stream}/{{id}}", self._retrieve(stream), methods=["GET", "POST"]))
        return routes

    # -- lists -----------------------------------------------------------------------------------
    def _endpoint(self, stream: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            denied = self._authorize(request)
            if denied:
                return denied
            if request.method == "POST":
                return await self._create(stream, request)
            return self._list(stream, request)
        return handler

    def _list(self, stream: str, request: Request) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit", "10"))
        except ValueError:
            return self.error_response(400, f"Invalid integer: {params.get('limit')}", "invalid_request_error",
                                       param="limit")
        if not 1 <= limit <= 100:
            return self.error_response(400, "This value must be greater than or equal to 1 and less than or "
                                       "equal to 100.", "invalid_request_error", param="limit")
        rows = sorted(self.objects[stream].values(), key=lambda o: (o["created"], o["id"]), reverse=True)
        for op, test in (("gte", int.__ge__), ("gt", int.__gt__), ("lte", int.__le__), ("lt", int.__lt__)):
            bound = params.get(f"created[{op}]")
            if bound is not None:
                rows = [r for r in rows if test(r["created"], int(bound))]
        if params.get("customer"):
            rows = [r for r in rows if r.get("customer") == params["customer"]]
        after, before = params.get("starting_after"), params.get("ending_before")
        for cursor in (after, before):
            if cursor and cursor not in self.objects[stream]:
                return self.error_response(400, f"No such {_LIST_OBJECT[stream]}: '{cursor}'",
                                           "invalid_request_error", code="resource_missing", param="starting_after")
        ids = [r["id"] for r in rows]
        if after:
            start = ids.index(after) + 1 if after in ids else len(ids)
            page, has_more = rows[start:start + limit], start + limit < len(rows)
        elif before:
            end = ids.index(before) if before in ids else 0
            page, has_more = rows[max(0, end - limit):end], end - limit > 0
        else:
            page, has_more = rows[:limit], limit < len(rows)
        return JSONResponse({"object": "list", "url": f"/v1/{stream}", "has_more": has_more, "data": page})

    def _retrieve(self, stream: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            denied = self._authorize(request)
            if denied:
                return denied
            obj = self.objects[stream].get(request.path_params["id"])
            if obj is None:
                return self.error_response(404, f"No such {_LIST_OBJECT[stream]}: '{request.path_params['id']}'",
                                           "invalid_request_error", code="resource_missing", param="id")
            if request.method == "POST":
                return await self._update(stream, obj, request)
            return JSONResponse(obj)
        return handler

    # -- writes ---------------------------------------------------------------------------------
    @staticmethod
    async def _form(request: Request) -> dict[str, Any]:
        """Stripe's bracket notation (`metadata[key]=v`, `address[city]=x`) into nested dicts."""
        form: dict[str, Any] = {}
        for key, value in parse_qsl((await request.body()).decode(), keep_blank_values=True):
            if "[" in key and key.endswith("]"):
                outer, inner = key[:-1].split("[", 1)
                form.setdefault(outer, {})[inner] = value
            else:
                form[key] = value
        return form

    async def _create(self, stream: str, request: Request) -> Response:
        if stream != "customers":
            return self.error_response(400, f"Creating {stream} is not supported by the sandbox.",
                                       "invalid_request_error")
        form = await self._form(request)

        def produce() -> tuple[int, Any]:
            cid = f"cus_{token(self.world.seed, 'new', time.time_ns())}"
            obj = {
                "id": cid, "object": "customer", "address": form.get("address"), "balance": 0,
                "created": int(time.time()), "currency": None, "default_source": None, "delinquent": False,
                "description": form.get("description"), "email": form.get("email"),
                "invoice_prefix": token(cid, length=8).upper(), "livemode": False,
                "metadata": form.get("metadata", {}), "name": form.get("name"), "phone": form.get("phone"),
                "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
            }
            self.objects["customers"][cid] = obj
            return 200, obj

        key = request.headers.get("idempotency-key")
        status, body, replayed = self.replay_or_store(key, {"path": request.url.path, "form": form}, produce)
        if status == -1:
            return self.error_response(
                400, "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                "idempotency_error")
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if key:
            headers["Idempotency-Key"] = key
        return JSONResponse(body, status_code=status, headers=headers)

    async def _update(self, stream: str, obj: dict[str, Any], request: Request) -> Response:
        form = await self._form(request)
        for field, value in form.items():
            if field == "metadata":
                obj["metadata"] = {**obj.get("metadata", {}), **value}
            elif field in obj:
                obj[field] = value
        return JSONResponse(obj)

    # -- simulation -----------------------------------------------------------------------------
    def simulate(self, stream: str, request: dict[str, Any]) -> dict[str, Any]:
        """A customer pays an accounting invoice by card: a new succeeded charge, created now."""
        if stream != "charges":
            raise NotImplementedError(f"stripe cannot simulate {stream}")
        email = str(request["email"])
        customer = next((c for c in self.objects["customers"].values() if (c.get("email") or "").lower()
                         == email.lower()), None)
        if customer is None:
            raise ValueError(f"no Stripe customer with email {email}")
        charge_id = f"ch_{token(self.world.seed, 'sim', time.time_ns())}"
        amount, currency = int(request["amount"]), str(request["currency"]).lower()
        charge = {
            "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": 0, "balance_transaction": f"txn_{token(charge_id)}",
            "billing_details": {"email": email, "name": customer.get("name")}, "captured": True,
            "created": int(time.time()), "currency": currency, "customer": customer["id"],
            "description": f"Payment for {request['invoice_number']}", "disputed": False, "failure_code": None,
            "failure_message": None, "invoice": None, "livemode": False,
            "metadata": {"accounting_invoice": str(request["invoice_number"])},
            "outcome": {"network_status": "approved_by_network", "risk_level": "normal",
                        "seller_message": "Payment complete.", "type": "authorized"},
            "paid": True, "payment_intent": f"pi_{token(charge_id, 'pi')}", "payment_method": None,
            "receipt_email": email, "refunded": False, "status": "succeeded",
        }
        self.objects["charges"][charge_id] = charge
        return charge

    # -- ground truth ---------------------------------------------------------------------------
    def dump(self, stream: str) -> list[dict[str, Any]]:
        return sorted(self.objects[stream].values(), key=lambda o: (o["created"], o["id"]), reverse=True)

    def touch(self, stream: str, count: int) -> list[str]:
        touched = []
        for obj in self.dump(stream)[:count]:
            if stream == "charges":
                obj["amount_refunded"] = min(obj["amount"], obj["amount_refunded"] + 100)
                obj["refunded"] = obj["amount_refunded"] == obj["amount"]
            elif stream == "invoices":
                obj["metadata"] = {**obj["metadata"], "touched": str(time.time_ns())}
            else:
                obj["metadata"] = {**obj["metadata"], "touched": str(time.time_ns())}
            touched.append(obj["id"])
        return touched


EMULATOR = StripeEmulator
