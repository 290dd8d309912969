"""Fault injection: the sandbox misbehaves the way real APIs do, on demand, per system.

Faults are rolled per request from a seeded RNG, in order: latency, dropped connection, 429 with Retry-After,
5xx, malformed page. Control endpoints (`/_sandbox/...`) are never faulted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .base import RequestRecord, SandboxState


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500/502/503")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="share answered 429 with Retry-After")
    retry_after: float = Field(1.0, ge=0)
    latency_ms: int = Field(0, ge=0)
    drop_rate: float = Field(0.0, ge=0, le=1, description="share whose connection is cut mid-response")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="share answered with a broken page")
    malformed_kind: Literal["truncated", "html"] = "truncated"
    methods: list[str] | None = Field(None, description="only fault these methods (default: all)")
    seed: int = 0


class DroppedConnection(Exception):
    """Raised after a partial response so that the server cuts the connection, as a flaky proxy would."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


@dataclass
class _Active:
    config: FaultConfig
    rng: random.Random


class FaultInjector:
    """ASGI middleware: pick the system by path prefix, log the request, maybe misbehave."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state
        self.active: dict[str, _Active] = {}

    def configure(self, system: str, config: FaultConfig | None) -> None:
        if config is None:
            self.active.pop(system, None)
        else:
            self.active[system] = _Active(config, random.Random(config.seed))

    def clear(self) -> None:
        self.active.clear()

    def system_for(self, path: str) -> str | None:
        best, length = None, -1
        for name, emulator in self.state.emulators.items():
            for prefix in emulator.prefixes:
                if path.startswith(prefix) and len(prefix) > length:
                    best, length = name, len(prefix)
        return best

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        system = self.system_for(scope["path"]) or "unknown"
        record = RequestRecord(system, scope["method"], scope["path"], scope.get("query_string", b"").decode(),
                               0, time.time())
        with self.state.lock:
            self.state.requests.append(record)
        active = self.active.get(system) or self.active.get("*")
        fault = self._roll(active, scope["method"]) if active else None
        record.fault = fault
        if active and active.config.latency_ms:
            await asyncio.sleep(active.config.latency_ms / 1000)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        emulator = self.state.emulators.get(system)
        if fault == "drop":
            await logged_send({"type": "http.response.start", "status": 200,
                               "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
            raise DroppedConnection("sandbox fault injection: connection dropped mid-response")
        if fault == "rate_limit" and emulator is not None and active is not None:
            await emulator.rate_limit_response(active.config.retry_after)(scope, receive, logged_send)
            return
        if fault == "error" and emulator is not None and active is not None:
            status = active.rng.choice([500, 502, 503])
            await emulator.error_response(status, "sandbox fault injection: internal error")(
                scope, receive, logged_send)
            return
        if fault == "malformed" and active is not None:
            await self._malformed(active.config, scope, receive, logged_send)
            return
        await self.app(scope, receive, logged_send)

    @staticmethod
    def _roll(active: _Active, method: str) -> str | None:
        config = active.config
        if config.methods and method not in config.methods:
            return None
        roll = active.rng.random()
        for name, rate in (("drop", config.drop_rate), ("rate_limit", config.rate_limit_rate),
                           ("error", config.error_rate), ("malformed", config.malformed_rate)):
            if roll < rate:
                return name
            roll -= rate
        return None

    async def _malformed(self, config: FaultConfig, scope: Scope, receive: Receive, send: Send) -> None:
        if config.malformed_kind == "html":
            body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
            else:
                captured["body"] += message.get("body", b"")

        await self.app(scope, receive, capture)
        body = captured["body"][: max(1, len(captured["body"]) // 2)]
        start = captured["start"]
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parse_fault_config(raw: bytes) -> FaultConfig:
    return FaultConfig.model_validate(json.loads(raw or b"{}"))
