"""What every emulator shares: its place in the sandbox, a request log, idempotency replay, error bodies."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from .world import World


@dataclass
class RequestRecord:
    system: str
    method: str
    path: str
    query: str
    status: int
    at: float
    fault: str | None = None


@dataclass
class StoredResponse:
    fingerprint: str
    status: int
    body: Any


@dataclass
class SandboxState:
    """Everything the running sandbox holds in memory for its life."""

    world: World
    emulators: dict[str, Emulator] = field(default_factory=dict)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=200_000))
    idempotency: dict[tuple[str, str], StoredResponse] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def request_log(self, system: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(r) for r in self.requests if system is None or r.system == system]

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Emulator:
    """One vendor API. Subclasses set `name` and `prefixes` and build their objects from the world."""

    name: str = ""
    prefixes: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    #: How a list request says how many records to skip: query parameters or JSON body keys with these names
    #: (`?offset=`, OData `$skip`, a JSON-RPC `"offset"`), or a number inside a query-language parameter
    #: (QuickBooks' `STARTPOSITION n`). The `duplicate` fault moves these back by one, as a row inserted ahead
    #: of an offset reader does; requests without one get the fault as an overlap between pages instead.
    offset_params: tuple[str, ...] = ("offset", "$skip")
    offset_patterns: tuple[re.Pattern[str], ...] = (re.compile(r"\bSTARTPOSITION\s+(\d+)", re.IGNORECASE),)

    def __init__(self, world: World, sandbox: SandboxState) -> None:
        self.world = world
        self.sandbox = sandbox

    # -- what subclasses provide ----------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def dump(self, stream: str) -> list[dict[str, Any]]:
        """Every record the API holds for `stream`, in the API's own shape: the ground truth for tests."""
        raise NotImplementedError

    def touch(self, stream: str, count: int) -> list[str]:
        """Change `count` records (as a user of the system would) and return their ids."""
        raise NotImplementedError

    def simulate(self, stream: str, request: dict[str, Any]) -> dict[str, Any]:
        """Create a new business event (a payment, an order) as a user of the system would: the activity
        simulator's hook. Emulators that support it override this."""
        raise NotImplementedError(f"{self.name} cannot simulate {stream}")

    def error_response(self, status: int, message: str) -> Response:
        return JSONResponse({"error": {"message": message}}, status_code=status)

    def route_error(self, request: Request, status: int, allowed: frozenset[str] = frozenset()) -> Response:
        """The vendor's answer to a request no route serves: an unknown path (404), or a known path asked with a
        method it does not take (405, `allowed` naming the methods it does take). The app calls this for every
        404/405 under the emulator's prefixes, so a client never meets Starlette's plain-text answers; each
        emulator overrides it with its vendor's wording and status (Stripe answers both with a 404)."""
        message = "Method Not Allowed" if status == 405 else "Not Found"
        response = self.error_response(status, message)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    def rate_limit_response(self, retry_after: float) -> Response:
        response = self.error_response(429, "Too many requests")
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    # -- helpers ---------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time()

    def replay_or_store(self, key: str | None, payload: Any, produce: Any) -> tuple[int, Any, bool]:
        """Idempotent writes: the same key and payload replays the first answer; another payload is refused.

        Returns (status, body, replayed); `produce()` runs only for a key not seen before. A key reused with
        a different payload returns status -1 so the emulator can answer with its vendor's own error.
        """
        if not key:
            status, body = produce()
            return status, body, False
        digest = fingerprint(payload)
        with self.sandbox.lock:
            stored = self.sandbox.idempotency.get((self.name, key))
            if stored is not None:
                if stored.fingerprint != digest:
                    return -1, None, False
                return stored.status, stored.body, True
            status, body = produce()
            if status < 500:
                self.sandbox.idempotency[(self.name, key)] = StoredResponse(digest, status, body)
        return status, body, False


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None
