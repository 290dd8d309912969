"""A fast synthetic Stripe `/v1/charges` list endpoint on loopback, for the extract benchmark.

Same envelope and pagination as the sandbox's Stripe emulator (`object: list`, `url`, `has_more`, `data`,
newest first, `limit`, `starting_after`, `created[gte]`/`created[lt]`), but records are generated lazily and
deterministically from their index: the id encodes the index (`ch_bench00000123`), so `starting_after` needs no
lookup table and the server never holds more than one page. Each record has 26 top-level fields, nested
`metadata`, `billing_details`, `outcome` and a `refunds` list (one refund on every fifth charge).

Run: `python -m benchmarks.synthetic_stripe --records 50000` prints `PORT <n>` once listening and serves until
stdin closes or `--max-seconds` pass (it stops itself; a benchmark that dies cannot leave it behind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import threading
from datetime import UTC, datetime
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


def page_body(query: str, total: int) -> tuple[int, bytes]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    try:
        limit = int(params.get("limit", "10"))
    except ValueError:
        return 400, b'{"error":{"type":"invalid_request_error","message":"Invalid integer: limit"}}'
    if not 1 <= limit <= 100:
        return 400, b'{"error":{"type":"invalid_request_error","message":"limit must be 1..100"}}'
    gte = int(params.get("created[gte]", "-1"))
    lt = int(params.get("created[lt]", str(2**62)))
    after = params.get("starting_after")
    start = 0
    if after:
        if not after.startswith(PREFIX) or not after[len(PREFIX):].isdigit():
            return 400, b'{"error":{"type":"invalid_request_error","message":"No such charge"}}'
        start = int(after[len(PREFIX):]) + 1
    # every record lies inside [DAY_START, DAY_START + 86400); a window that misses the day is empty
    if lt <= DAY_START or gte >= DAY_START + 86_400:
        start = total
    end = min(start + limit, total)
    records = ",".join(record_json(i, total) for i in range(start, end) if gte <= created_at(i, total) < lt)
    has_more = "true" if end < total else "false"
    body = f'{{"object":"list","url":"/v1/charges","has_more":{has_more},"data":[{records}]}}'
    return 200, body.encode()


class App:
    """A bare ASGI app (no framework) so the server costs little next to the clients it serves."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.requests = 0

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        self.requests += 1
        if scope["path"] == "/_bench/requests":
            status, body = 200, str(self.requests).encode()
        elif scope["path"] != "/v1/charges":
            status, body = 404, b'{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}'
        elif scope["method"] != "GET":
            status, body = 405, b'{"error":{"type":"invalid_request_error","message":"GET only"}}'
        else:
            status, body = page_body(scope["query_string"].decode("latin-1"), self.total)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def serve(total: int, port: int, max_seconds: float) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(App(total), log_level="warning", access_log=False, lifespan="off",
                            timeout_keep_alive=60, backlog=256)
    server = uvicorn.Server(config)

    def watchdog() -> None:
        # stop when the parent closes our stdin (or dies), or after max_seconds, whichever comes first
        done = threading.Event()

        def wait_stdin() -> None:
            with contextlib.suppress(Exception):
                sys.stdin.read()
            done.set()

        threading.Thread(target=wait_stdin, daemon=True).start()
        done.wait(max_seconds)
        server.should_exit = True

    threading.Thread(target=watchdog, daemon=True).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    serve(args.records, args.port, args.max_seconds)


if __name__ == "__main__":
    main()
