"""What the twins of the shipped custom (YAML) systems share: credentials read from the YAML itself (one source
of truth for the fake values), the auth check its `auth:` block describes, change filters, ground truth.

Each twin is its own module (`pm_tool.py`, `expense_tool.py`, `procurement_portal.py`) so that faults, the
request log and `/_sandbox/<system>/<stream>` address it by the system's name, like every other emulator.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..connectors.custom import PACKAGED_DIR, load_custom_file
from ..connectors.spec import BasicAuthSpec, BearerAuthSpec, HeaderAuthSpec
from .base import Emulator


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RestTwin(Emulator):
    """A JSON API twin of a custom system. Subclasses fill `objects[stream]` (id → record) and set `keys` and
    `cursor_fields` per stream."""

    spec_file: str = ""
    keys: dict[str, str] = {}
    cursor_fields: dict[str, str] = {}

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        self.spec = load_custom_file(PACKAGED_DIR / self.spec_file)
        self.values = {key: value.sandbox for key, value in self.spec.values.items()}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {stream: {} for stream in self.streams}

    def authorize(self, request: Request) -> Response | None:
        auth = self.spec.auth
        header = request.headers.get("authorization", "")
        if isinstance(auth, BearerAuthSpec):
            ok = hmac.compare_digest(header, f"Bearer {self.values[auth.token]}")
        elif isinstance(auth, HeaderAuthSpec):
            ok = hmac.compare_digest(request.headers.get(auth.header, ""), f"{auth.prefix}{self.values[auth.value]}")
        elif isinstance(auth, BasicAuthSpec):
            expected = base64.b64encode(
                f"{self.values[auth.username]}:{self.values[auth.password]}".encode()).decode()
            ok = hmac.compare_digest(header, f"Basic {expected}")
        else:
            ok = True
        return None if ok else self.error_response(401, "invalid or missing credentials")

    def rows(self, stream: str, request: Request, since_param: str) -> list[dict[str, Any]]:
        """Records in a stable order (by key), filtered by `since_param` on the stream's change field."""
        key, cursor = self.keys[stream], self.cursor_fields[stream]
        rows = sorted(self.objects[stream].values(), key=lambda r: r[key])
        since = request.query_params.get(since_param)
        if since:
            bound = datetime.fromisoformat(since.replace("Z", "+00:00"))
            rows = [r for r in rows if datetime.fromisoformat(r[cursor].replace("Z", "+00:00")) >= bound]
        return rows

    @staticmethod
    def int_param(request: Request, name: str, default: int, low: int, high: int) -> int | JSONResponse:
        raw = request.query_params.get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            return JSONResponse({"error": {"message": f"{name} must be an integer from {low} to {high}"}},
                                status_code=400)
        return int(raw)

    def dump(self, stream: str) -> list[dict[str, Any]]:
        return sorted(self.objects[stream].values(), key=lambda r: r[self.keys[stream]])

    def touch(self, stream: str, count: int) -> list[str]:
        touched = []
        for record in self.dump(stream)[:count]:
            record["notes"] = f"touched {datetime.now(UTC).isoformat()}"
            record[self.cursor_fields[stream]] = iso(datetime.now(UTC))
            touched.append(record[self.keys[stream]])
        return touched
