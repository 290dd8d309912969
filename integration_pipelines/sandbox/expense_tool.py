"""Twin of the expense tool (custom_systems/expense_tool.yaml): `/expense-tool/v2/receipts`, an `X-API-Key`
header, an opaque `next_cursor` (null on the last page) sent back as `?cursor=`, and `modified_after`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .custom_apps import RestTwin, iso
from .world import STAFF_DOMAIN_BY_COUNTRY, Person

MERCHANTS = [("Rail Europe", "travel"), ("Hotel Central", "lodging"), ("Cafe Nero", "meals"),
             ("Office Depot", "office_supplies"), ("Uber", "travel"), ("AWS", "software")]


@dataclass(frozen=True)
class Employee:
    email: str
    currency: str


def _employee(person: Person) -> Employee:
    """A group employee who files receipts: the world's person's name at the group company of their country (its
    staff's email domain), spending in that company's currency."""
    domain = STAFF_DOMAIN_BY_COUNTRY[person.country]
    local = f"{person.first_name}.{person.last_name}".lower().replace(" ", "")
    return Employee(email=f"{local}@{domain}", currency=person.currency)


class ExpenseToolTwin(RestTwin):
    name = "expense_tool"
    prefixes = ("/expense-tool/",)
    streams = ("expense_receipts",)
    spec_file = "expense_tool.yaml"
    keys = {"expense_receipts": "receipt_id"}
    cursor_fields = {"expense_receipts": "modified_at"}

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        rng = world.rng("expense_tool")
        anchor = world.anchor - timedelta(seconds=1)
        staff = [_employee(person) for person in world.people[:8]]
        for number in range(30):
            person = rng.choice(staff)  # the group's staff: one of eight employees of its three companies
            merchant, category = rng.choice(MERCHANTS)
            spent = world.start + timedelta(seconds=rng.randrange(world.days * 86400))
            rid = f"rcpt_{10001 + number}"
            self.objects["expense_receipts"][rid] = {
                "receipt_id": rid, "employee_email": person.email, "merchant": merchant, "category": category,
                "amount_minor": rng.randrange(500, 90_000), "currency": person.currency,
                "spent_on": spent.date().isoformat(),
                "status": rng.choice(["submitted", "approved", "approved", "reimbursed", "rejected"]),
                "project_code": f"prj_{1001 + rng.randrange(len(world.companies))}",
                "image_url": f"https://expenses.example.internal/files/{rid}.jpg",
                "modified_at": iso(min(anchor, spent + timedelta(minutes=rng.randint(1, 900)))), "notes": None,
            }
            receipt = self.objects["expense_receipts"][rid]
            # the tool pays the employee back by bank transfer and records when: the receipt's last change
            receipt["reimbursed_at"] = receipt["modified_at"] if receipt["status"] == "reimbursed" else None

    def routes(self) -> list[Route]:
        return [Route("/expense-tool/v2/receipts", self._list)]

    async def _list(self, request: Request) -> Response:
        denied = self.authorize(request)
        if denied:
            return denied
        limit = self.int_param(request, "limit", 20, 1, 200)
        if isinstance(limit, JSONResponse):
            return limit
        rows = self.rows("expense_receipts", request, "modified_after")
        cursor = request.query_params.get("cursor")
        start = 0
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
            except ValueError:
                return self.error_response(400, "invalid cursor")
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        token = base64.urlsafe_b64encode(f"o:{start + limit}".encode()).decode() if more else None
        return JSONResponse({"receipts": page, "next_cursor": token})


EMULATOR = ExpenseToolTwin
