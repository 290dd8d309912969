"""Twin of the in-house project-management tool (custom_systems/pm_tool.yaml): `/pm-tool/api/v1/projects` and
`/milestones`, bearer token, `page`/`per_page` with `meta.total_pages`, `updated_since`, and a PATCH that marks a
milestone invoiced (idempotent by nature: it sets absolute values)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .custom_apps import RestTwin, iso

BASE = "/pm-tool/api/v1"


class PmToolTwin(RestTwin):
    name = "pm_tool"
    prefixes = ("/pm-tool/",)
    streams = ("projects", "billing_milestones")
    spec_file = "pm_tool.yaml"
    keys = {"projects": "id", "billing_milestones": "id"}
    cursor_fields = {"projects": "updated_at", "billing_milestones": "updated_at"}

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        rng = world.rng("pm_tool")
        anchor = world.anchor - timedelta(seconds=1)
        contacts = {p.company.key: p for p in reversed(world.people)}
        milestone_number = 0
        for company in world.companies:
            contact = contacts.get(company.key)
            created = world.start + timedelta(seconds=rng.randrange(world.days * 86400))
            budget = rng.randrange(20, 200) * 100_000
            currency = contact.currency if contact else "USD"
            pid = f"prj_{1001 + company.key}"
            self.objects["projects"][pid] = {
                "id": pid, "name": f"{company.name} - {rng.choice(['website', 'ERP rollout', 'data platform'])}",
                "client_company": company.name, "client_email": contact.email if contact else None,
                "status": rng.choice(["active", "active", "on_hold", "completed"]),
                "billing_type": rng.choice(["fixed_fee", "milestones"]), "budget_minor": budget,
                "currency": currency, "created_at": iso(created),
                "updated_at": iso(min(anchor, created + timedelta(minutes=rng.randint(1, 900)))), "notes": None,
            }
            for step in range(rng.randint(2, 4)):
                milestone_number += 1
                mid = f"ms_{5000 + milestone_number}"
                status = rng.choice(["planned", "reached", "invoiced"])
                self.objects["billing_milestones"][mid] = {
                    "id": mid, "project_id": pid, "name": f"Milestone {step + 1}",
                    "amount_minor": budget // 4, "currency": currency,
                    "due_date": (created + timedelta(days=14 * (step + 1))).date().isoformat(), "status": status,
                    "invoice_number": f"INV-M{mid[3:]}" if status == "invoiced" else None,
                    "updated_at": iso(min(anchor, created + timedelta(minutes=rng.randint(1, 900)))), "notes": None,
                }

    def routes(self) -> list[Route]:
        return [Route(f"{BASE}/projects", self._list("projects")),
                Route(f"{BASE}/milestones", self._list("billing_milestones")),
                Route(f"{BASE}/milestones/{{id}}", self._patch, methods=["PATCH"])]

    def _list(self, stream: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            denied = self.authorize(request)
            if denied:
                return denied
            page = self.int_param(request, "page", 1, 1, 10_000)
            per_page = self.int_param(request, "per_page", 25, 1, 100)
            if isinstance(page, JSONResponse):
                return page
            if isinstance(per_page, JSONResponse):
                return per_page
            rows = self.rows(stream, request, "updated_since")
            total_pages = max(1, math.ceil(len(rows) / per_page))
            return JSONResponse({"data": rows[(page - 1) * per_page:page * per_page],
                                 "meta": {"page": page, "per_page": per_page, "total": len(rows),
                                          "total_pages": total_pages}})
        return handler

    async def _patch(self, request: Request) -> Response:
        denied = self.authorize(request)
        if denied:
            return denied
        milestone = self.objects["billing_milestones"].get(request.path_params["id"])
        if milestone is None:
            return self.error_response(404, f"milestone {request.path_params['id']} not found")
        body: dict[str, Any] = await request.json()
        for field in ("status", "invoice_number"):
            if field in body:
                milestone[field] = body[field]
        milestone["updated_at"] = iso(datetime.now(UTC))
        return JSONResponse(milestone)


EMULATOR = PmToolTwin
