"""Fault injection: the sandbox misbehaves the way real APIs do, on demand, per system.

Faults are rolled per request from one seeded RNG draw, in order: dropped connection, 429 with Retry-After,
5xx, applied-then-failed write, malformed page, duplicated record, repeated page (so their rates add up to at most
1); then, when
`latency_rate` is below 1, a second draw says whether the request is held for `latency_ms` (`methods`, when
set, limits both). Control endpoints (`/_sandbox/...`) are never faulted.

`apply_then_fail` is the fault that makes exactly-once hard: the emulator serves the request for real (the write is
stored, and an idempotency key remembers its answer) and the client is then told it failed, with a 5xx or by a
connection cut before the answer's body. The client cannot tell it from a request that never arrived; limit it to
writes with `methods` (e.g. ["POST", "PUT"]).

The two page faults act on answers, so a system configured with either has its answers buffered here and its
last page remembered (a 2xx answer carrying a list of records: JSON, or SOAP/XML). A page fault only fires on a
follow-up of that page (same request path, or the URL the page pointed to) whose records look alike, so it does not
mix two streams; when it cannot fire, the request is served untouched and logged without a fault.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn
from urllib.parse import quote_plus, unquote_plus

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .base import Emulator, RequestRecord, SandboxState


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500/502/503")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="share answered 429 with Retry-After")
    retry_after: float = Field(1.0, ge=0, description="seconds a rate-limited answer asks the client to wait")
    latency_ms: int = Field(0, ge=0, description="how long a held request waits before it is answered")
    latency_rate: float = Field(
        1.0, ge=0, le=1,
        description="share of requests held for latency_ms: 1 (the default) holds every one; below 1 it is rolled "
        "per request and a held request is logged with fault 'slow', so a client whose read timeout is shorter than "
        "latency_ms times out on exactly those",
    )
    drop_rate: float = Field(0.0, ge=0, le=1, description="share whose connection is cut mid-response")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="share answered with a broken page")
    malformed_kind: Literal["truncated", "html"] = "truncated"
    duplicate_rate: float = Field(
        0.0, ge=0, le=1,
        description="share of follow-up page requests whose answer starts with the previous page's last record "
        "again. A request that positions its page by an offset (the emulator's offset_params/offset_patterns) gets "
        "what a row inserted ahead of an offset reader causes: from this page on the read is served one row earlier, "
        "so the record shows up twice and nothing is skipped. Any other request (cursor, next URL, Link header, page "
        "number, SOAP page index) gets the record prepended to its page, as when it moved across the sort boundary "
        "while the client paged",
    )
    repeat_rate: float = Field(
        0.0, ge=0, le=1,
        description="share of follow-up page requests answered with exactly the answer given to the previous page "
        "request (status, headers, body: the same records and the same next pointer), as a stale cache or a lagging "
        "replica would; the request right after a repeated one is always answered afresh",
    )
    apply_then_fail_rate: float = Field(
        0.0, ge=0, le=1,
        description="share of requests the emulator serves for real (a write is stored) and then answers as failed: "
        "see apply_then_fail_kind; logged with fault 'apply_then_fail'",
    )
    apply_then_fail_kind: Literal["5xx", "drop"] = Field(
        "5xx", description="5xx: the stored write is answered 500/502/503; drop: the connection is cut mid-answer")
    methods: list[str] | None = Field(None, description="only fault (and hold) these methods (default: all)")
    seed: int = 0


class DroppedConnection(Exception):
    """Raised after a partial response so that the server cuts the connection, as a flaky proxy would."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


# -- pages: where an answer keeps its records -------------------------------------------------------------
def _is_record_list(node: Any) -> bool:
    return isinstance(node, list) and bool(node) and all(isinstance(item, dict) for item in node)


def _json_locate(document: Any) -> tuple[str, ...] | None:
    """The records of a JSON page: the shallowest non-empty list of objects (the longest, if several are equally
    shallow). Records' own nested lists (invoice lines) are deeper, so they never win over the page's list."""
    level: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while level:
        found = [(locator, node) for locator, node in level if _is_record_list(node)]
        if found:
            return max(found, key=lambda pair: len(pair[1]))[0]
        level = [((*locator, key), value) for locator, node in level if isinstance(node, dict)
                 for key, value in node.items()]
    return None


def _json_at(document: Any, locator: tuple[str, ...]) -> list[dict[str, Any]] | None:
    node = document
    for key in locator:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if _is_record_list(node) else None


def _elements(node: etree._Element) -> list[etree._Element]:
    return [child for child in node if isinstance(child.tag, str)]


def _xml_locate(root: etree._Element) -> tuple[str, ...] | None:
    """The records of an XML page: the shallowest element holding two or more complex children of one tag
    (NetSuite's `recordList/record`, a `stockLevels/stockLevel` list). A page of one record is found through the
    previous page's locator instead."""
    level: list[tuple[tuple[str, ...], etree._Element]] = [((root.tag,), root)]
    while level:
        for locator, node in level:
            children = _elements(node)
            if len(children) >= 2 and len({c.tag for c in children}) == 1 and all(len(c) for c in children):
                return locator
        level = [((*locator, child.tag), child) for locator, node in level for child in _elements(node)]
    return None


def _xml_parent(root: etree._Element, locator: tuple[str, ...]) -> etree._Element | None:
    if not locator or root.tag != locator[0]:
        return None
    node: etree._Element | None = root
    for tag in locator[1:]:
        node = node.find(tag) if node is not None else None
    return node


def _header(start: Message, name: bytes) -> bytes:
    return next((v for k, v in start.get("headers", []) if k.lower() == name), b"")


def _with_length(start: Message, body: bytes) -> Message:
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**start, "headers": headers}


@dataclass(frozen=True)
class _Page:
    """A 2xx answer carrying a non-empty list of records, as it was sent: what the page faults copy or replay."""

    method: str
    path: str
    start: Message
    body: bytes
    kind: Literal["json", "xml"]
    document: Any
    locator: tuple[str, ...]
    records: list[Any]

    @classmethod
    def read(cls, method: str, path: str, start: Message, body: bytes, hint: _Page | None) -> _Page | None:
        if not 200 <= start["status"] < 300:
            return None
        content_type = _header(start, b"content-type").lower()
        document: Any
        if b"json" in content_type:
            try:
                document = json.loads(body)
            except ValueError:
                return None
            locator = hint.locator if hint and hint.kind == "json" and _json_at(document, hint.locator) else None
            locator = locator or _json_locate(document)
            records: list[Any] | None = _json_at(document, locator) if locator is not None else None
            kind: Literal["json", "xml"] = "json"
        elif b"xml" in content_type:
            try:
                document = etree.fromstring(body, _XML_PARSER)
            except etree.XMLSyntaxError:
                return None
            parent = _xml_parent(document, hint.locator) if hint and hint.kind == "xml" else None
            locator = hint.locator if hint and parent is not None and _elements(parent) else _xml_locate(document)
            parent = _xml_parent(document, locator) if locator is not None else None
            records = _elements(parent) if parent is not None else None
            kind = "xml"
        else:
            return None
        if locator is None or not records:
            return None
        return cls(method, path, start, body, kind, document, locator, records)

    def precedes(self, page: _Page) -> bool:
        """Whether `page` continues the read this page belongs to: the same kind of answer and records, asked
        for by the same path or by the URL this page pointed to (a next URL in the body or a Link header)."""
        if (page.method, page.kind, page.locator) != (self.method, self.kind, self.locator):
            return False
        pointed = page.path.encode()
        if page.path != self.path and pointed not in self.body and pointed not in _header(self.start, b"link"):
            return False
        last, first = self.records[-1], page.records[0]
        if self.kind == "xml":
            return bool(last.tag == first.tag)
        return 2 * len(set(last) & set(first)) >= len(set(last) | set(first))

    def with_first(self, record: Any) -> bytes:
        """This page's body with `record` (another page's) at the start of its records."""
        document = copy.deepcopy(self.document)
        if self.kind == "json":
            records = _json_at(document, self.locator)
            assert records is not None
            records.insert(0, copy.deepcopy(record))
            return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        parent = _xml_parent(document, self.locator)
        assert parent is not None
        parent.insert(0, copy.deepcopy(record))
        return etree.tostring(document, xml_declaration=True, encoding="utf-8")


# -- offsets: where a request says how many records to skip ----------------------------------------------
@dataclass
class _OffsetRead:
    """One offset-paged read of one path as the server sees it: its first offset, the last one asked for, and
    how many rows 'were inserted' ahead of the reader since it started."""

    start: int
    last: int
    shift: int = 0


def _query_offset(query: str, emulator: Emulator) -> tuple[int, Any] | None:
    """The offset in a query string, and how to write another one in its place (other parameters untouched)."""
    parts = query.split("&") if query else []
    for index, part in enumerate(parts):
        key, _, raw = part.partition("=")
        name, value = unquote_plus(key), unquote_plus(raw)
        if name in emulator.offset_params and value.isdigit():
            def named(new: int, index: int = index, key: str = key) -> str:
                return "&".join([*parts[:index], f"{key}={new}", *parts[index + 1:]])
            return int(value), named
        for pattern in emulator.offset_patterns:
            match = pattern.search(value)
            if match:
                def embedded(new: int, index: int = index, key: str = key, value: str = value,
                             match: re.Match[str] = match) -> str:
                    text = value[:match.start(1)] + str(new) + value[match.end(1):]
                    return "&".join([*parts[:index], f"{key}={quote_plus(text)}", *parts[index + 1:]])
                return int(match.group(1)), embedded
    return None


def _json_offset(node: Any, emulator: Emulator) -> tuple[dict[str, Any], str] | None:
    """The JSON object holding the offset (a JSON-RPC call's kwargs) and its key, found depth-first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in emulator.offset_params and isinstance(value, int) and not isinstance(value, bool):
                return node, key
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _json_offset(child, emulator)
        if found is not None:
            return found
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app `body` once, then defers to the real one (which reports a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


@dataclass
class _Active:
    config: FaultConfig
    rng: random.Random
    last_page: _Page | None = None
    after_repeat: bool = False
    offset_reads: dict[str, _OffsetRead] = field(default_factory=dict)

    @property
    def pages_faulted(self) -> bool:
        return bool(self.config.duplicate_rate or self.config.repeat_rate)


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
        held = self._held(active, scope["method"]) if active else False
        slow = "slow" if held and active is not None and active.config.latency_rate < 1 else None
        record.fault = fault or slow
        if held and active is not None:
            await asyncio.sleep(active.config.latency_ms / 1000)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        emulator = self.state.emulators.get(system)
        if fault == "apply_then_fail" and active is not None:
            await self._capture(self.app, scope, receive)  # served for real: the write is stored, its answer lost
            if active.config.apply_then_fail_kind == "drop" or emulator is None:
                await self._drop(logged_send, send)
            status = active.rng.choice([500, 502, 503])
            await emulator.error_response(status, "sandbox fault injection: internal error after the write was "
                                          "applied")(scope, receive, logged_send)
            return
        if fault == "drop":
            await self._drop(logged_send, send)
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
        if active is not None and emulator is not None and active.pages_faulted:
            if not await self._paged(active, emulator, scope, receive, logged_send, fault) and fault:
                record.fault = slow  # the page fault had nothing to act on: this answer is the real one
            return
        await self.app(scope, receive, logged_send)

    @staticmethod
    async def _drop(logged_send: Send, send: Send) -> NoReturn:
        """Start an answer and cut the connection before its body is complete."""
        await logged_send({"type": "http.response.start", "status": 200,
                           "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        raise DroppedConnection("sandbox fault injection: connection dropped mid-response")

    @staticmethod
    def _roll(active: _Active, method: str) -> str | None:
        config = active.config
        after_repeat, active.after_repeat = active.after_repeat, False
        if config.methods and method not in config.methods:
            return None
        roll = active.rng.random()
        for name, rate in (("drop", config.drop_rate), ("rate_limit", config.rate_limit_rate),
                           ("error", config.error_rate), ("apply_then_fail", config.apply_then_fail_rate),
                           ("malformed", config.malformed_rate),
                           ("duplicate", config.duplicate_rate), ("repeat", config.repeat_rate)):
            if roll < rate:
                # a stale answer is followed by a fresh one: asked again, the server behaves
                return None if name == "repeat" and after_repeat else name
            roll -= rate
        return None

    @staticmethod
    def _held(active: _Active, method: str) -> bool:
        config = active.config
        if not config.latency_ms or (config.methods and method not in config.methods):
            return False
        return config.latency_rate >= 1 or active.rng.random() < config.latency_rate

    @staticmethod
    async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
        """Run the app and keep its whole answer instead of sending it."""
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        await app(scope, receive, capture)
        return captured["start"], captured["body"]

    async def _malformed(self, config: FaultConfig, scope: Scope, receive: Receive, send: Send) -> None:
        if config.malformed_kind == "html":
            body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        start, whole = await self._capture(self.app, scope, receive)
        body = whole[: max(1, len(whole) // 2)]
        await send(_with_length(start, body))
        await send({"type": "http.response.body", "body": body})

    # -- page faults -----------------------------------------------------------------------------------
    async def _paged(self, active: _Active, emulator: Emulator, scope: Scope, receive: Receive, send: Send,
                     fault: str | None) -> bool:
        """Serve one request of a system with page faults on; return whether `fault` took effect."""
        scope, receive, shifted = await self._position(active, emulator, scope, receive, fault == "duplicate")
        start, body = await self._capture(self.app, scope, receive)
        previous = active.last_page
        page = _Page.read(scope["method"], scope["path"], start, body, previous)
        fired = bool(shifted)
        follows = page is not None and previous is not None and previous.precedes(page)
        if fault == "repeat" and follows and previous is not None:
            start, body, fired = previous.start, previous.body, True
            active.after_repeat = True
            page = None  # what was sent is the remembered page itself
        elif fault == "duplicate" and shifted is None and follows and page is not None and previous is not None:
            body = page.with_first(previous.records[-1])
            start, fired = _with_length(start, body), True
            page = _Page.read(scope["method"], scope["path"], start, body, previous)
        if page is not None:
            active.last_page = page
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return fired

    async def _position(self, active: _Active, emulator: Emulator, scope: Scope, receive: Receive,
                        duplicate: bool) -> tuple[Scope, Receive, bool | None]:
        """Track offset-paged reads and serve them shifted once a `duplicate` fault 'inserted' rows ahead.

        Returns the (maybe rewritten) request and whether the fault fired here; None when the request carries no
        offset (the fault then takes the overlap form). A lower offset than the last one starts a new read."""
        query = scope.get("query_string", b"").decode("latin-1")
        found = _query_offset(query, emulator)
        in_body: tuple[dict[str, Any], str] | None = None
        document: Any = None
        original = receive
        if found is None and scope["method"] in ("POST", "PUT", "PATCH") and b"json" in _header(
                scope, b"content-type").lower():
            raw = await _read_body(original)
            receive = _replaying(raw, original)
            try:
                document = json.loads(raw)
            except ValueError:
                document = None
            in_body = _json_offset(document, emulator)
        if found is not None:
            value = found[0]
        elif in_body is not None:
            value = int(in_body[0][in_body[1]])
        else:
            return scope, receive, None
        read = active.offset_reads.get(scope["path"])
        if read is None or value < read.last:
            read = active.offset_reads[scope["path"]] = _OffsetRead(value, value)
        read.last = value
        fired = duplicate and value > read.start
        read.shift += fired
        if not read.shift:
            return scope, receive, fired
        served = max(read.start, value - read.shift)
        if found is not None:
            return {**scope, "query_string": found[1](served).encode("latin-1")}, receive, fired
        assert in_body is not None
        holder, key = in_body
        holder[key] = served
        body = json.dumps(document).encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        return {**scope, "headers": headers}, _replaying(body, original), fired


def parse_fault_config(raw: bytes) -> FaultConfig:
    return FaultConfig.model_validate(json.loads(raw or b"{}"))
