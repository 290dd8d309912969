"""Twin of the procurement portal (custom_systems/procurement_portal.yaml): `/procurement/api/v1/purchase-requests`
with HTTP basic auth, `offset`/`limit`, `updated_since`, and a POST that honours `Idempotency-Key` (a replay
returns the first answer; the same key with another body is refused with 409)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .custom_apps import RestTwin, iso

PATH = "/procurement/api/v1/purchase-requests"
SUPPLIERS = ["Northwind Supplies", "Contoso Components", "Fabrikam Parts"]


class ProcurementPortalTwin(RestTwin):
    name = "procurement_portal"
    prefixes = ("/procurement/",)
    streams = ("purchase_requests",)
    spec_file = "procurement_portal.yaml"
    keys = {"purchase_requests": "id"}
    cursor_fields = {"purchase_requests": "updated_at"}

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        rng = world.rng("procurement_portal")
        anchor = world.anchor - timedelta(seconds=1)
        self.sequence = 0
        for _ in range(16):
            product = rng.choice(world.products)
            quantity = rng.randint(5, 80)
            created = world.start + timedelta(seconds=rng.randrange(world.days * 86400))
            self._add({
                "requester_email": rng.choice(world.people).email, "supplier": rng.choice(SUPPLIERS),
                "sku": product.sku, "description": product.name, "quantity": quantity,
                "estimated_total_minor": round(product.unit_price * 0.45) * quantity, "currency": "USD",
                "status": rng.choice(["pending_approval", "approved", "ordered", "rejected"]),
                "needed_by": (created + timedelta(days=rng.randint(7, 30))).date().isoformat(),
                "created_at": iso(created),
                "updated_at": iso(min(anchor, created + timedelta(minutes=rng.randint(1, 900)))),
            })

    def _add(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.sequence += 1
        record = {"id": f"PR-{self.sequence:05d}", **fields, "notes": fields.get("notes")}
        self.objects["purchase_requests"][record["id"]] = record
        return record

    def routes(self) -> list[Route]:
        return [Route(PATH, self._endpoint, methods=["GET", "POST"])]

    async def _endpoint(self, request: Request) -> Response:
        denied = self.authorize(request)
        if denied:
            return denied
        if request.method == "POST":
            return await self._create(request)
        offset = self.int_param(request, "offset", 0, 0, 1_000_000)
        limit = self.int_param(request, "limit", 50, 1, 100)
        if isinstance(offset, JSONResponse):
            return offset
        if isinstance(limit, JSONResponse):
            return limit
        rows = self.rows("purchase_requests", request, "updated_since")
        return JSONResponse({"items": rows[offset:offset + limit], "total": len(rows), "offset": offset,
                             "limit": limit})

    async def _create(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        missing = [f for f in ("requester_email", "supplier", "sku", "quantity") if not body.get(f)]
        if missing:
            return self.error_response(422, f"missing fields: {', '.join(missing)}")

        def produce() -> tuple[int, Any]:
            now = iso(datetime.now(UTC))
            record = self._add({**{k: body.get(k) for k in ("requester_email", "supplier", "sku", "description",
                                                            "quantity", "estimated_total_minor", "needed_by")},
                                "currency": body.get("currency", "USD"), "status": "pending_approval",
                                "created_at": now, "updated_at": now})
            return 201, record

        key = request.headers.get("idempotency-key")
        status, answer, replayed = self.replay_or_store(key, body, produce)
        if status == -1:
            return self.error_response(409, f"Idempotency-Key {key} was used with a different request body")
        return JSONResponse(answer, status_code=status,
                            headers={"Idempotent-Replayed": "true"} if replayed else {})


EMULATOR = ProcurementPortalTwin
