"""A cached, fast synthetic Stripe `/v1/charges` list endpoint on loopback, for the extract benchmark.

The benchmark measures the clients, so the server must never be what sets the pace: every page of the standard
read (the connector's `limit=100` over the whole day, following `starting_after`) is rendered once, before any
timing starts, into a disk cache of complete HTTP responses (`BENCH_CACHE_DIR`, default
`<tmp>/ip-bench-cache`, keyed by record count, page size and a hash of this file, so a changed generator never
serves stale bytes). The server maps that file and answers each request with a slice of it: a few microseconds
of header parsing and one socket write per page, on a bare asyncio protocol (uvloop when installed) with no
HTTP framework in between. `benchmarks.workers.extract_server_alone` measures that: a raw-socket client reading
every page and discarding it.

Same envelope and pagination as the sandbox's Stripe emulator and the connector
(`integration_pipelines/connectors/stripe.py`): `object: list`, `url`, `has_more`, `data`, newest first, `limit`
1..100, `starting_after` (the last record's id), `created[gte]`/`created[lt]`, a 401 without an API key. A
request outside the cached shape (another limit, a narrower window, a cursor mid-page) is rendered on the spot
by the same function that built the cache, so any client gets correct answers and only the standard read is
fast. Records are generated deterministically from their index: the id encodes the index
(`ch_bench00000123`), so `starting_after` needs no lookup table. Each record has 26 top-level fields, nested
`metadata`, `billing_details`, `outcome` and a `refunds` list (one refund on every fifth charge).

Run: `python -m benchmarks.synthetic_stripe --records 50000` builds or reuses the cache, then prints
`PORT <n> ...` once listening and serves until stdin closes or `--max-seconds` pass (it stops itself; a
benchmark that dies cannot leave it behind). `GET /_bench/stats` returns the requests served so far and how
many came from the cache (not counted itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import mmap
import os
import sys
import tempfile
import threading
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

DAY = datetime(2026, 3, 9, tzinfo=UTC)  # the one daily partition holding every record
DAY_START = int(DAY.timestamp())
PARTITION = "2026-03-09"
PARTITIONS_START = "2026-03-01"
API_KEY = "sk_test_FAKE_sandbox_key_integration_pipelines"
PREFIX = "ch_bench"

_CURRENCIES = ("usd", "eur", "gbp", "chf")
_TIERS = ("free", "pro", "enterprise")
_COUNTRIES = ("US", "DE", "FR", "GB", "CH", "NL")

_REFUND = '{"id":"re_bench%08d","object":"refund","amount":%d,"charge":"ch_bench%08d","created":%d,' \
          '"currency":"%s","reason":"requested_by_customer","status":"succeeded"}'
_RECORD = (
    '{"id":"ch_bench%(i)08d","object":"charge","amount":%(amount)d,"amount_captured":%(amount)d,'
    '"amount_refunded":%(refunded)d,"balance_transaction":"txn_bench%(i)08d",'
    '"billing_details":{"address":{"city":"City %(city)d","country":"%(country)s","line1":"%(i)d Main Street",'
    '"line2":null,"postal_code":"%(postal)05d","state":null},"email":"customer%(cust)d@example.com",'
    '"name":"Customer %(cust)d","phone":"+1555%(cust)07d"},'
    '"captured":true,"created":%(created)d,"currency":"%(currency)s","customer":"cus_bench%(cust)07d",'
    '"description":"Payment for invoice INV-%(i)08d","disputed":false,"failure_code":null,'
    '"failure_message":null,"invoice":"in_bench%(i)08d","livemode":false,'
    '"metadata":{"order_id":"ord_%(i)d","customer_tier":"%(tier)s","channel":"web"},'
    '"outcome":{"network_status":"approved_by_network","risk_level":"normal","risk_score":%(risk)d,'
    '"seller_message":"Payment complete.","type":"authorized"},'
    '"paid":true,"payment_intent":"pi_bench%(i)08d","payment_method":"pm_bench%(i)08d",'
    '"receipt_email":"customer%(cust)d@example.com","refunded":%(fully)s,'
    '"refunds":{"object":"list","data":[%(refunds)s],"has_more":false,"total_count":%(nrefunds)d,'
    '"url":"/v1/charges/ch_bench%(i)08d/refunds"},"status":"succeeded"}'
)


def created_at(index: int, total: int) -> int:
    """Newest first: index 0 is the latest second of the day, the last index the earliest."""
    return DAY_START + 86_399 - (index * 86_399) // max(total, 1)


def record_json(index: int, total: int) -> str:
    created = created_at(index, total)
    amount = 500 + (index * 7919) % 100_000
    currency = _CURRENCIES[index % len(_CURRENCIES)]
    has_refund = index % 5 == 0
    refunded = amount // 4 if has_refund else 0
    refunds = _REFUND % (index, refunded, index, created + 60, currency) if has_refund else ""
    return _RECORD % {
        "i": index, "amount": amount, "refunded": refunded, "city": index % 997, "country":
        _COUNTRIES[index % len(_COUNTRIES)], "postal": index % 100_000, "cust": index % 20_011,
        "created": created, "currency": currency, "tier": _TIERS[index % 3], "risk": index % 100,
        "fully": "false", "refunds": refunds, "nrefunds": 1 if has_refund else 0,
    }


def render_page(start: int, limit: int, gte: int, lt: int, total: int) -> bytes:
    """The body of the list page holding records `start .. start + limit` that fall inside `[gte, lt)`."""
    end = min(start + limit, total)
    records = ",".join(record_json(i, total) for i in range(start, end) if gte <= created_at(i, total) < lt)
    has_more = "true" if end < total else "false"
    return f'{{"object":"list","url":"/v1/charges","has_more":{has_more},"data":[{records}]}}'.encode()


_NO_WINDOW = (-1, 2**62)


def parse_list_query(query: str, total: int) -> tuple[int, int, int, int] | bytes:
    """(start index, limit, created[gte], created[lt]) of a list request, or the body of Stripe's 400."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    try:
        limit = int(params.get("limit", "10"))
        gte = int(params.get("created[gte]", str(_NO_WINDOW[0])))
        lt = int(params.get("created[lt]", str(_NO_WINDOW[1])))
    except ValueError:
        return b'{"error":{"type":"invalid_request_error","message":"Invalid integer"}}'
    if not 1 <= limit <= 100:
        return b'{"error":{"type":"invalid_request_error","message":"limit must be 1..100"}}'
    after = params.get("starting_after")
    start = 0
    if after:
        if not after.startswith(PREFIX) or not after[len(PREFIX):].isdigit():
            return b'{"error":{"type":"invalid_request_error","message":"No such charge"}}'
        start = int(after[len(PREFIX):]) + 1
    # every record lies inside [DAY_START, DAY_START + 86400); a window that misses the day is empty
    if lt <= DAY_START or gte >= DAY_START + 86_400:
        start = total
    return min(start, total), limit, gte, lt


def page_body(query: str, total: int) -> tuple[int, bytes]:
    """Render one list page from its query string: the slow path, and what the cache is built from."""
    parsed = parse_list_query(query, total)
    if isinstance(parsed, bytes):
        return 400, parsed
    start, limit, gte, lt = parsed
    return 200, render_page(start, limit, gte, lt, total)


_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 405: b"Method Not Allowed"}


def http_response(status: int, body: bytes, *, close: bool = False) -> bytes:
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, _REASONS.get(status, b"Error"), len(body), b"connection: close\r\n" if close else b""))
    return head + body


# -- the page cache ------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path(tempfile.gettempdir()) / "ip-bench-cache")


class PageCache:
    """Every page of the standard read (page size `page_size` over the whole day) as a complete HTTP response,
    concatenated in one file with an index of offsets; the server maps the file and serves slices of it.

    A disk cache rather than bytes built in the server's heap: 500k records are ~570 MB of responses, which the
    kernel's page cache holds once (and keeps between runs) instead of the server's RSS doubling while it
    renders them. The key includes a hash of this file, so editing the generator invalidates it."""

    def __init__(self, total: int, page_size: int, directory: Path | None = None) -> None:
        self.total, self.page_size = total, page_size
        self.pages = max(1, -(-total // page_size))
        fingerprint = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
        stem = (directory or cache_dir()) / f"stripe-charges-{total}-{page_size}-{fingerprint}"
        self.data_path, self.index_path = stem.with_suffix(".http"), stem.with_suffix(".idx")
        started = time.perf_counter()
        self.built = not self._valid()
        if self.built:
            self._build()
        self.offsets = array("Q")
        with open(self.index_path, "rb") as handle:
            self.offsets.frombytes(handle.read())
        self._file = open(self.data_path, "rb")  # noqa: SIM115 - mapped for the life of the server
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.view = memoryview(self._map)
        self._warm()
        self.seconds = time.perf_counter() - started
        self._check()

    @property
    def size_mb(self) -> float:
        return self.offsets[-1] / 2**20

    def response(self, start: int) -> memoryview:
        page = start // self.page_size
        return self.view[self.offsets[page]:self.offsets[page + 1]]

    def covers(self, start: int, limit: int, gte: int, lt: int) -> bool:
        """Whether the request is one the cache answers byte for byte: a page boundary of the standard read
        whose window spans the whole day."""
        return (limit == self.page_size and start % self.page_size == 0 and start < max(self.total, 1)
                and gte <= DAY_START and lt >= DAY_START + 86_400)

    def _valid(self) -> bool:
        try:
            index_size, data_size = self.index_path.stat().st_size, self.data_path.stat().st_size
        except OSError:
            return False
        if index_size != 8 * (self.pages + 1):
            return False
        last = array("Q")
        with open(self.index_path, "rb") as handle:
            handle.seek(-8, os.SEEK_END)
            last.frombytes(handle.read(8))
        return last[0] == data_size

    def _build(self) -> None:
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        offsets = array("Q", [0])
        tmp_data = self.data_path.with_suffix(f".http.{os.getpid()}.tmp")
        tmp_index = self.index_path.with_suffix(f".idx.{os.getpid()}.tmp")
        with open(tmp_data, "wb") as out:
            for page in range(self.pages):
                start = page * self.page_size
                response = http_response(200, render_page(start, self.page_size, DAY_START, DAY_START + 86_400,
                                                          self.total))
                out.write(response)
                offsets.append(offsets[-1] + len(response))
        with open(tmp_index, "wb") as out:
            offsets.tofile(out)
        os.replace(tmp_data, self.data_path)
        os.replace(tmp_index, self.index_path)  # the index last: its presence says the data is complete

    def _warm(self) -> None:
        """Fault every page in before the first request (reads it from disk if the kernel dropped it), so no
        client pays for the disk or for the server's page faults."""
        with contextlib.suppress(AttributeError, OSError):
            self._map.madvise(mmap.MADV_WILLNEED)
        for offset in range(0, len(self._map), mmap.PAGESIZE):
            self._map[offset]  # the read is the point: it faults the page in

    def _check(self) -> None:
        """The cached bytes must be what the slow path renders: compare the first and last pages."""
        for start in {0, (self.pages - 1) * self.page_size}:
            expected = http_response(200, render_page(start, self.page_size, DAY_START, DAY_START + 86_400,
                                                      self.total))
            if bytes(self.response(start)) != expected:
                raise RuntimeError(f"{self.data_path} does not match the generator; delete it and rerun")


# -- the server ------------------------------------------------------------------------------------------------
_MAX_HEAD = 64 * 1024


class Server:
    """The request handler shared by every connection: the cache for the standard read, the renderer for the
    rest, and counters for `/_bench/stats`."""

    def __init__(self, total: int, cache: PageCache) -> None:
        self.total, self.cache = total, cache
        self.requests = self.cached = self.rendered = 0

    def respond(self, method: bytes, target: bytes, headers: dict[bytes, bytes], close: bool
                ) -> bytes | memoryview:
        path, _, query = target.partition(b"?")
        if path == b"/_bench/stats":
            body = json.dumps({"requests": self.requests, "cached": self.cached, "rendered": self.rendered})
            return http_response(200, body.encode(), close=close)
        self.requests += 1
        if path != b"/v1/charges":
            return http_response(404, b'{"error":{"type":"invalid_request_error","message":"Unrecognized request '
                                      b'URL"}}', close=close)
        if method != b"GET":
            return http_response(405, b'{"error":{"type":"invalid_request_error","message":"GET only"}}',
                                 close=close)
        if not headers.get(b"authorization", b"").lower().startswith((b"bearer ", b"basic ")):
            return http_response(401, b'{"error":{"type":"invalid_request_error","message":"You did not provide '
                                      b'an API key."}}', close=close)
        parsed = parse_list_query(query.decode("latin-1"), self.total)
        if isinstance(parsed, bytes):
            return http_response(400, parsed, close=close)
        start, limit, gte, lt = parsed
        if not close and self.cache.covers(start, limit, gte, lt):
            self.cached += 1
            return self.cache.response(start)
        self.rendered += 1
        return http_response(200, render_page(start, limit, gte, lt, self.total), close=close)


class Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive (and pipelining, for free): requests are GETs, so a body is read and ignored."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self.transport.write(http_response(400, b'{"error":{"message":"bad request line"}}', close=True))
                self.transport.close()
                return
            method, target, version = parts
            connection = headers.get(b"connection", b"").lower()
            close = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
            self.transport.write(self.server.respond(method, target, headers, close))
            if close:
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(total: int, port: int, max_seconds: float, page_size: int) -> None:
    try:
        import uvloop
    except ImportError:  # the standard loop is slower per request but still far from the clients' cost
        uvloop = None  # type: ignore[assignment]
    cache = PageCache(total, page_size)
    server = Server(total, cache)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def wait_stdin() -> None:
            # stop when the parent closes our stdin (or dies)
            with contextlib.suppress(Exception):
                sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=wait_stdin, daemon=True).start()
        loop.call_later(max_seconds, stop.set)
        listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", port, backlog=256,
                                            reuse_address=True)
        bound = listener.sockets[0].getsockname()[1]
        print(f"PORT {bound} loop={'uvloop' if uvloop else 'asyncio'} cache={'built' if cache.built else 'reused'}"
              f" cache_seconds={cache.seconds:.2f} cache_mb={cache.size_mb:.0f} pages={cache.pages}", flush=True)
        await stop.wait()
        listener.close()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--page-size", type=int, default=100, help="the page the cache holds (the connector's)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    serve(args.records, args.port, args.max_seconds, args.page_size)


if __name__ == "__main__":
    main()
