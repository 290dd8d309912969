"""Property tests for the three pieces whose correctness is arithmetic rather than plumbing (issue 9).

- Paginators (connectors/pagination.py through reader.read_pages): for arbitrary record counts, page sizes and
  opaque tokens, walking a simulated server yields every record exactly once, in order, with the exact number of
  requests; offsets and page numbers advance by what was read; tokens, next URLs and Link headers round-trip byte
  for byte; a server that repeats itself or never ends is stopped. test_pagination.py holds one worked example per
  style; these explore the space around them.
- Signature verification (webhooks/verifiers.py), per provider: sign-then-verify accepts arbitrary bodies, secrets
  and timestamps inside the tolerance; any single-byte change to the body, the signature or the timestamp, a wrong
  secret, or a timestamp outside the tolerance is rejected; arbitrary header garbage only ever raises `Rejection`.
  The signers below are written from ../shared/API_NOTES.md, independently of the verifiers; the vendors' own SDKs
  are checked against the receiver in test_webhooks_receiver.py.
- The sync diff (syncs/engine.py plan_sync) on real DuckDB files: for arbitrary model rows and ledger states,
  matching hashes are unchanged, new rows are creates, changed or failed rows updates, removed rows deletes only in
  mirror mode; planning is deterministic and independent of row order, and applying a plan makes the next one empty.

Example counts are modest and deadlines off, so the file stays well under a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import duckdb
import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from integration_pipelines.connectors.errors import PaginationError
from integration_pipelines.connectors.pagination import (
    BodyCursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
)
from integration_pipelines.connectors.spec import RequestTemplate, Stream
from integration_pipelines.syncs.engine import SyncPlan, SyncResult, _Outcome, _record, idempotency_key, plan_sync
from integration_pipelines.syncs.ledger import ensure_ledger
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks import verifiers as v

from .test_pagination import read_all

pytestmark = pytest.mark.reliability

# Modest example counts and no deadline: the suite runs on a loaded 2-core machine. Failing examples are kept in
# hypothesis' own (self-git-ignored) `.hypothesis/` folder and replayed first on the next run.
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_SCHEME = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE = "https://api.fake.test"
# Opaque tokens and ids as servers really mint them, plus every character that needs escaping in a query, a path,
# a JSON string or a Link header (`;`, `,`, `<`, `>`, quotes, `%`, `+`, `#`, `&`, `=`, `/`, space, non-ASCII).
TOKEN_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)


def _ids(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(count)]


def _records(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def _pages_needed(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


# == (a) paginators =================================================================================================
@FAST
@given(ids=st.lists(TOKEN_TEXT, unique=True, max_size=40), size=st.integers(1, 9))
def test_body_cursor_walks_every_record_once_with_arbitrary_ids(ids: list[str], size: int) -> None:
    """Stripe style: the next page starts after the last record's id, whatever characters the id holds."""
    position = {record_id: index for index, record_id in enumerate(ids)}
    starts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        start = position[after] + 1 if after is not None else 0
        starts.append(start)
        chunk = ids[start:start + size]
        return httpx.Response(200, json={"object": "list", "has_more": start + size < len(ids),
                                         "data": _records(chunk)})

    stream = Stream(name="s", request=RequestTemplate(path="/v1/things", params={"limit": "{page_size}"}),
                    records_path="data", primary_key="id", paginator=BodyCursorPaginator(), page_size=size)
    got, seen = read_all(stream, handler)
    assert got == ids
    assert len(seen) == _pages_needed(len(ids), size)
    assert starts == [size * n for n in range(len(seen))]


@FAST
@given(count=st.integers(0, 45), size=st.integers(1, 9), prefix=TOKEN_TEXT,
       mode=st.sampled_from([("GET", "query"), ("POST", "body"), ("GET", "auto"), ("POST", "auto")]))
def test_next_token_round_trips_opaque_tokens(count: int, size: int, prefix: str, mode: tuple[str, str]) -> None:
    """HubSpot/Square style: whatever the token holds comes back exactly, in the query or the JSON body."""
    method, location = mode
    ids = _ids(count, "r")
    issued: dict[str, int] = {}
    starts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            token = request.url.params.get("after")
        else:
            token = httpx.Response(200, content=request.content).json().get("after")
        start = issued[token] if token is not None else 0
        starts.append(start)
        body: dict[str, Any] = {"results": _records(ids[start:start + size])}
        if start + size < count:
            nxt = f"{prefix}{start + size}"
            issued[nxt] = start + size
            body["paging"] = {"next": {"after": nxt}}
        return httpx.Response(200, json=body)

    stream = Stream(name="s", request=RequestTemplate(method=method, path="/crm/v3/objects/things",
                                                      body={"limit": "{page_size}"} if method == "POST" else None),
                    records_path="results", primary_key="id", page_size=size,
                    paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after",
                                                 location=location))  # type: ignore[arg-type]
    got, seen = read_all(stream, handler)
    assert got == ids
    assert len(seen) == _pages_needed(count, size)
    assert starts == [size * n for n in range(len(seen))]
    assert all(r.method == method for r in seen)


@FAST
@given(count=st.integers(0, 45), size=st.integers(1, 9), start=st.sampled_from([0, 1]))
def test_offset_arithmetic_never_skips_or_repeats(count: int, size: int, start: int) -> None:
    """Each request's offset is exactly `start` plus the records already read; a short page is the last one."""
    ids = _ids(count, "o")
    offsets: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        offsets.append(offset)
        return httpx.Response(200, json={"items": _records(ids[offset - start:offset - start + limit])})

    stream = Stream(name="s", request=RequestTemplate(path="/items", params={"offset": "{offset}",
                                                                             "limit": "{page_size}"}),
                    records_path="items", primary_key="id", page_size=size, paginator=OffsetPaginator(start=start))
    got, seen = read_all(stream, handler)
    assert got == ids
    # a full last page costs one more (empty) request: the API gives no other end signal
    assert len(seen) == count // size + 1
    assert offsets == [start + size * n for n in range(len(seen))]


@FAST
@given(count=st.integers(0, 45), size=st.integers(1, 9), start=st.sampled_from([0, 1]), with_count=st.booleans())
def test_page_numbers_advance_by_one_and_stop(count: int, size: int, start: int, with_count: bool) -> None:
    """Xero style `page=N`: pages are requested in order from `start`, none twice, and the walk ends."""
    assume(start == 1 or not with_count)  # a page count is a 1-based last page number
    ids = _ids(count, "p")
    pages: list[int] = []
    total_pages = math.ceil(count / size)

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        pages.append(page)
        first = (page - start) * size
        body: dict[str, Any] = {"Items": _records(ids[first:first + size])}
        if with_count:
            body["pagination"] = {"page": page, "pageCount": total_pages}
        return httpx.Response(200, json=body)

    stream = Stream(name="s", request=RequestTemplate(path="/Items", params={"page": "{page}"}),
                    records_path="Items", primary_key="id", page_size=size,
                    paginator=PageNumberPaginator(start=start,
                                                  page_count_path="pagination.pageCount" if with_count else None))
    got, seen = read_all(stream, handler)
    assert got == ids
    assert pages == list(range(start, start + len(seen)))
    expected = max(1, total_pages) if with_count else count // size + 1
    assert len(seen) == expected


@FAST
@given(count=st.integers(0, 40), size=st.integers(1, 9), prefix=TOKEN_TEXT, absolute=st.booleans())
def test_next_url_round_trips_the_servers_url(count: int, size: int, prefix: str, absolute: bool) -> None:
    """Salesforce style: the reader follows `nextRecordsUrl` verbatim (relative or absolute, any escaped token),
    sends none of the first request's parameters again, and stops on `done`."""
    ids = _ids(count, "n")
    issued: dict[str, int] = {}
    starts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii").split("?")[0]
        if path.startswith("/query/next/"):
            start = issued[unquote(path.removeprefix("/query/next/"))]
            assert not request.url.params, "a next URL carries its own state; the first query is not resent"
        else:
            assert request.url.params["q"] == "SELECT Id FROM Thing"
            start = 0
        starts.append(start)
        done = start + size >= count
        body: dict[str, Any] = {"done": done, "records": _records(ids[start:start + size])}
        if not done:
            token = f"{prefix}{start + size}"
            issued[token] = start + size
            relative = "/query/next/" + quote(token, safe="")
            body["nextRecordsUrl"] = BASE + relative if absolute else relative
        return httpx.Response(200, json=body)

    stream = Stream(name="s", request=RequestTemplate(path="/query", params={"q": "SELECT Id FROM Thing"}),
                    records_path="records", primary_key="id", page_size=size,
                    paginator=NextUrlPaginator(next_url_path="nextRecordsUrl", done_path="done"))
    got, seen = read_all(stream, handler)
    assert got == ids
    assert len(seen) == _pages_needed(count, size)
    assert starts == [size * n for n in range(len(seen))]


@FAST
@given(count=st.integers(0, 40), size=st.integers(1, 9), prefix=TOKEN_TEXT, with_previous=st.booleans())
def test_link_header_round_trips_page_info(count: int, size: int, prefix: str, with_previous: bool) -> None:
    """Shopify style `Link: <…>; rel="previous", <…>; rel="next"`: the `next` URL is parsed out of the header and
    followed as is, so the server gets back exactly the `page_info` it minted, whatever it contains."""
    ids = _ids(count, "l")
    issued: dict[str, int] = {}
    starts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_info")
        start = issued[token] if token is not None else 0
        starts.append(start)
        links = []
        if with_previous and start:
            links.append(f'<{httpx.URL(BASE + "/items.json", params={"page_info": "back"})}>; rel="previous"')
        if start + size < count:
            token = f"{prefix}{start + size}"
            issued[token] = start + size
            url = httpx.URL(BASE + "/items.json", params={"limit": size, "page_info": token})
            links.append(f'<{url}>; rel="next"')
        headers = {"Link": ", ".join(links)} if links else {}
        return httpx.Response(200, json={"items": _records(ids[start:start + size])}, headers=headers)

    stream = Stream(name="s", request=RequestTemplate(path="/items.json", params={"limit": "{page_size}"}),
                    records_path="items", primary_key="id", page_size=size, paginator=LinkHeaderPaginator())
    got, seen = read_all(stream, handler)
    assert got == ids
    assert len(seen) == _pages_needed(count, size)
    assert starts == [size * n for n in range(len(seen))]


def _endless(style: str) -> tuple[Stream, Callable[[httpx.Request], httpx.Response]]:
    """A server that always says 'there is more', with fresh records and a fresh cursor on every page."""
    counter = {"n": 0}

    def page() -> list[dict[str, Any]]:
        counter["n"] += 1
        return [{"id": f"e{counter['n']}"}]

    def handler(request: httpx.Request) -> httpx.Response:
        n = counter["n"]
        if style == "body_cursor":
            return httpx.Response(200, json={"has_more": True, "data": page()})
        if style == "next_token":
            return httpx.Response(200, json={"data": page(), "next": f"t{n}"})
        if style == "next_url":
            return httpx.Response(200, json={"data": page(), "next": f"/more/{n}"})
        if style == "link_header":
            return httpx.Response(200, json={"data": page()}, headers={"Link": f'<{BASE}/more?p={n}>; rel="next"'})
        return httpx.Response(200, json={"data": page()})  # offset, page_number: always a full page of one

    paginators: dict[str, Any] = {
        "body_cursor": BodyCursorPaginator(), "next_token": NextTokenPaginator(token_path="next", token_param="c"),
        "next_url": NextUrlPaginator(next_url_path="next"), "link_header": LinkHeaderPaginator(),
        "offset": OffsetPaginator(), "page_number": PageNumberPaginator(),
    }
    params = {"offset": {"offset": "{offset}"}, "page_number": {"page": "{page}"}}.get(style, {})
    return Stream(name="s", request=RequestTemplate(path="/more", params=params), records_path="data",
                  primary_key="id", page_size=1, paginator=paginators[style]), handler


@SLOWER
@given(style=st.sampled_from(["body_cursor", "next_token", "next_url", "link_header", "offset", "page_number"]),
       max_pages=st.integers(1, 12))
def test_every_style_stops_an_endless_api_at_the_hard_bound(style: str, max_pages: int) -> None:
    stream, handler = _endless(style)
    stream = stream.model_copy(update={"max_pages": max_pages})
    seen: list[httpx.Request] = []

    def counting(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    with pytest.raises(PaginationError, match=f"more than {max_pages} pages"):
        read_all(stream, counting)
    assert len(seen) == max_pages


@FAST
@given(pages_before=st.integers(1, 8), back_to=st.integers(1, 8), size=st.integers(1, 5), prefix=TOKEN_TEXT)
def test_a_server_that_sends_an_old_cursor_again_is_stopped(pages_before: int, back_to: int, size: int,
                                                            prefix: str) -> None:
    """After `pages_before` good pages the server answers with a token it already issued: the reader must refuse
    to re-request it (no loop, no duplicate records) and say so."""
    back_to = min(back_to, pages_before)
    served = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal served
        page = served
        served += 1
        nxt = page + 1 if page < pages_before else back_to
        return httpx.Response(200, json={"results": _records(_ids(size, f"p{page}-")),
                                         "paging": {"next": {"after": f"{prefix}{nxt}"}}})

    stream = Stream(name="s", request=RequestTemplate(path="/list"), records_path="results", primary_key="id",
                    page_size=size, paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after"))
    with pytest.raises(PaginationError, match="already read"):
        read_all(stream, handler)
    assert served == pages_before + 1


# == (b) webhook signatures ===========================================================================================
NOW = 1_767_225_600  # a fixed clock: tolerance checks are exact, not racing the wall clock
TOLERANCE = 300
URL = "https://hooks.example.test/base/webhooks/provider?x=1"


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Scheme:
    """One provider's scheme as API_NOTES.md describes it: how to build its verifier and how to sign."""

    name: str
    build: Callable[[list[str], Callable[[], float]], v.Verifier]
    sign: Callable[[str, bytes, int, str], dict[str, str]]  # secret, body, timestamp (s), msg id → headers
    signature_header: str
    timestamp_header: str | None = None  # a header holding only the timestamp (Stripe's is inside its signature)
    id_header: str | None = None
    rejects_future: bool = False

    def request(self, headers: dict[str, str], body: bytes) -> v.SignedRequest:
        return v.SignedRequest("POST", URL, headers, body)


def _stripe_sign(secret: str, body: bytes, ts: int, _id: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={ts},v1={digest}"}


def _standard_sign(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + _b64_hmac(key, f"{msg_id}.{ts}.".encode() + body)}


def _hubspot_sign(secret: str, body: bytes, ts: int, _id: str) -> dict[str, str]:
    millis = str(ts * 1000)
    return {"x-hubspot-request-timestamp": millis,
            "x-hubspot-signature-v3": _b64_hmac(secret.encode(), b"POST" + URL.encode() + body + millis.encode())}


def _body_sign(header: str) -> Callable[[str, bytes, int, str], dict[str, str]]:
    return lambda secret, body, _ts, _id: {header: _b64_hmac(secret.encode(), body)}


SCHEMES = {
    "stripe": Scheme("stripe", lambda s, clock: v.stripe_verifier(s, TOLERANCE, clock), _stripe_sign,
                     "stripe-signature"),
    "standard": Scheme("standard", lambda s, clock: v.standard_verifier(s, TOLERANCE, clock), _standard_sign,
                       "webhook-signature", "webhook-timestamp", "webhook-id", rejects_future=True),
    "square": Scheme("square", lambda s, clock: v.square_verifier(s),
                     lambda secret, body, _ts, _id: {"x-square-hmacsha256-signature":
                                                     _b64_hmac(secret.encode(), URL.encode() + body)},
                     "x-square-hmacsha256-signature"),
    "hubspot": Scheme("hubspot", lambda s, clock: v.hubspot_verifier(s, TOLERANCE, clock), _hubspot_sign,
                      "x-hubspot-signature-v3", "x-hubspot-request-timestamp"),
    "shopify": Scheme("shopify", lambda s, clock: v.body_hmac_verifier("x-shopify-hmac-sha256", s),
                      _body_sign("x-shopify-hmac-sha256"), "x-shopify-hmac-sha256"),
    "xero": Scheme("xero", lambda s, clock: v.body_hmac_verifier("x-xero-signature", s),
                   _body_sign("x-xero-signature"), "x-xero-signature"),
    "quickbooks": Scheme("quickbooks", lambda s, clock: v.body_hmac_verifier("intuit-signature", s),
                         _body_sign("intuit-signature"), "intuit-signature"),
}
TIMED = ["stripe", "standard", "hubspot"]

# What an HTTP header can carry once the server has decoded it (latin-1), minus the line breaks HTTP forbids.
HEADER_TEXT = st.text(alphabet=st.characters(max_codepoint=255, exclude_categories=("Cs", "Cc")), max_size=60)
MSG_IDS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)


@st.composite
def secrets_for(draw: st.DrawFn, scheme: str) -> str:
    if scheme == "standard":
        return "whsec_" + base64.b64encode(draw(st.binary(min_size=16, max_size=40))).decode()
    text = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40))
    return ("whsec_" + text) if scheme == "stripe" else text


@st.composite
def signed_requests(draw: st.DrawFn, scheme_name: str, skew: tuple[int, int] | None = None
                    ) -> tuple[Scheme, str, bytes, int, dict[str, str]]:
    """(scheme, secret, body, timestamp, headers) of a correctly signed request."""
    scheme = SCHEMES[scheme_name]
    secret = draw(secrets_for(scheme.name))
    body = draw(st.binary(max_size=300))
    low, high = skew if skew is not None else (-TOLERANCE, TOLERANCE)
    ts = NOW + draw(st.integers(low, high))
    headers = scheme.sign(secret, body, ts, draw(MSG_IDS))
    return scheme, secret, body, ts, headers


def _clock() -> float:
    return float(NOW)


@pytest.mark.parametrize("scheme_name", sorted(SCHEMES))
@PER_SCHEME
@given(data=st.data())
def test_sign_then_verify_accepts_inside_the_tolerance(scheme_name: str, data: st.DataObject) -> None:
    scheme, secret, body, _ts, headers = data.draw(signed_requests(scheme_name))
    scheme.build([secret], _clock)(scheme.request(headers, body))  # raises on rejection
    # key rotation: any of several configured secrets may sign
    scheme.build(["an-older-secret-" if scheme.name != "standard" else "whsec_b2xkLWtleS0xMjM0NTY3OA==", secret],
                 _clock)(scheme.request(headers, body))


def _replace_char(text: str, index: int, replacement: str) -> str:
    return text[:index] + replacement + text[index + 1:]


@pytest.mark.parametrize("scheme_name", sorted(SCHEMES))
@PER_SCHEME
@given(data=st.data())
def test_any_single_byte_change_is_rejected(scheme_name: str, data: st.DataObject) -> None:
    """Flip one byte of the body, or replace one character of the signature header, the timestamp header, or the
    message id (everything the provider signs): the verifier must refuse, with a 4xx, never accept."""
    scheme, secret, body, _ts, headers = data.draw(signed_requests(scheme_name))
    targets = ["signature"] + (["body"] if body else []) + (["timestamp"] if scheme.timestamp_header else []) + (
        ["id"] if scheme.id_header else [])
    target = data.draw(st.sampled_from(targets))
    headers = dict(headers)
    if target == "body":
        index = data.draw(st.integers(0, len(body) - 1))
        body = body[:index] + bytes([body[index] ^ data.draw(st.integers(1, 255))]) + body[index + 1:]
    else:
        name = {"signature": scheme.signature_header, "timestamp": scheme.timestamp_header,
                "id": scheme.id_header}[target]
        assert name is not None
        value = headers[name]
        index = data.draw(st.integers(0, len(value) - 1))
        replacement = data.draw(st.characters(min_codepoint=32, max_codepoint=255).filter(lambda c: c != value[index]))
        headers[name] = _replace_char(value, index, replacement)
    with pytest.raises(v.Rejection) as info:
        scheme.build([secret], _clock)(scheme.request(headers, body))
    assert info.value.status in (400, 401)


@pytest.mark.parametrize("scheme_name", sorted(SCHEMES))
@PER_SCHEME
@given(data=st.data())
def test_a_wrong_secret_is_rejected(scheme_name: str, data: st.DataObject) -> None:
    scheme, secret, body, _ts, headers = data.draw(signed_requests(scheme_name))
    other = data.draw(secrets_for(scheme.name).filter(lambda s: s != secret))
    with pytest.raises(v.Rejection) as info:
        scheme.build([other], _clock)(scheme.request(headers, body))
    assert (info.value.status, info.value.reason) == (401, "bad_signature")


@pytest.mark.parametrize("scheme_name", TIMED)
@PER_SCHEME
@given(late=st.integers(1, 10 * 365 * 86400), future=st.booleans(), data=st.data())
def test_a_timestamp_outside_the_tolerance_is_rejected(scheme_name: str, late: int, future: bool,
                                                       data: st.DataObject) -> None:
    """Older than the tolerance is a replay for all three; Standard Webhooks also refuses the future (Stripe and
    HubSpot do not, exactly like their SDKs: a future timestamp cannot be forged without the secret)."""
    scheme = SCHEMES[scheme_name]
    future = future and scheme.rejects_future
    offset = TOLERANCE + late
    _, secret, body, _ts, headers = data.draw(signed_requests(scheme_name, (offset, offset) if future
                                                              else (-offset, -offset)))
    with pytest.raises(v.Rejection) as info:
        scheme.build([secret], _clock)(scheme.request(headers, body))
    assert info.value.status == 401
    assert info.value.reason == ("future_timestamp" if future else "stale_timestamp")


SIGNATURE_HEADER_NAMES = sorted({s.signature_header for s in SCHEMES.values()} | {
    "webhook-id", "webhook-timestamp", "svix-id", "svix-timestamp", "svix-signature", "x-hubspot-request-timestamp"})
STRIPE_LIKE = st.lists(st.tuples(st.sampled_from(["t", "v1", "v0", "", " t"]), HEADER_TEXT), max_size=4).map(
    lambda items: ",".join(f"{k}={val}" for k, val in items))


@pytest.mark.parametrize("scheme_name", sorted(SCHEMES))
@PER_SCHEME
@given(headers=st.dictionaries(st.sampled_from(SIGNATURE_HEADER_NAMES) | st.text(max_size=10),
                               HEADER_TEXT | STRIPE_LIKE | st.from_regex(r"v1,[A-Za-z0-9+/=]{0,50}", fullmatch=True)
                               | st.integers(-(10**30), 10**30).map(str), max_size=6),
       body=st.binary(max_size=200))
def test_header_garbage_only_ever_raises_rejection(scheme_name: str, headers: dict[str, str], body: bytes) -> None:
    """Whatever an unauthenticated sender puts in the headers, the verifier answers with a `Rejection` (a 4xx),
    never another exception (a 500 and a retry storm) and never an acceptance."""
    scheme = SCHEMES[scheme_name]
    secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=" if scheme_name == "standard" else "whsec_garbage-secret"
    with pytest.raises(v.Rejection) as info:
        scheme.build([secret], _clock)(scheme.request(headers, body))
    assert 400 <= info.value.status < 500


@FAST
@given(token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       data=st.data())
def test_path_tokens_match_only_themselves(token: str, data: st.DataObject) -> None:
    """Forms and Odoo are unsigned: the secret path token is the whole authentication."""
    assert v.token_matches(token, [token])
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(min_codepoint=32, max_codepoint=255).filter(lambda c: c != token[index]))
    assert not v.token_matches(_replace_char(token, index, replacement), [token])
    assert not v.token_matches(token[:-1], [token]) and not v.token_matches(token + "x", [token])


# == (c) the sync diff ================================================================================================
SYNC = "prop_sync"
# Keys the engine accepts: never blank ('' or spaces only; the engine refuses those like null keys, see below).
KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=6).filter(
    lambda k: k.strip(" ") != "")
ROWS = st.tuples(st.none() | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                                     max_size=5),
                 st.none() | st.integers(-(10**6), 10**6),
                 st.none() | st.sampled_from(["T-1", "T-2", "T-3"]))  # (name, amount, ext)
Row = tuple[str | None, int | None, str | None]
STATUSES_KEPT = ["absent", "synced", "failed", "failed_create"]  # a ledger entry of a row still in the model
STATUSES_GONE = [*STATUSES_KEPT, "deleted"]  # ... and of a row that left it


@dataclass(frozen=True)
class Ledger:
    row_hash: str | None
    external_id: str | None
    status: str


@st.composite
def sync_worlds(draw: st.DrawFn) -> dict[str, Any]:
    """An older model (what was last synced), the ledger it left, and the model as it is now."""
    old: dict[str, Row] = draw(st.dictionaries(KEYS, ROWS, min_size=1, max_size=10))
    new: dict[str, Row] = {}
    statuses: dict[str, str] = {}
    for key, row in old.items():
        fate = draw(st.sampled_from(["same", "changed", "removed"]))
        if fate == "same":
            new[key] = row
        elif fate == "changed":
            new[key] = draw(ROWS.filter(lambda r, row=row: r != row))
        statuses[key] = draw(st.sampled_from(STATUSES_KEPT if key in new else STATUSES_GONE))
    for key, row in draw(st.dictionaries(KEYS, ROWS, max_size=6)).items():
        new.setdefault(key, row)
    mode = draw(st.sampled_from(["insert", "update", "upsert", "mirror"]))
    return {"old": old, "new": new, "statuses": statuses, "mode": mode,
            "ext_column": mode == "update" or draw(st.booleans()), "required": draw(st.booleans()),
            "order": draw(st.randoms(use_true_random=False))}


def _spec(mode: str, ext_column: bool, required: bool) -> SyncSpec:
    return SyncSpec(name=SYNC, title="Property sync", description="plan_sync under arbitrary ledgers",
                    source_sql="SELECT k, name, amount, ext FROM model", key="k", target="quickbooks",
                    mode=mode,  # type: ignore[arg-type]
                    create_writer="create", update_writer="update", delete_writer="delete",
                    external_id_column="ext" if ext_column else None, payload={},
                    required_columns=("amount",) if required else ())


def _load_model(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, Row]]) -> None:
    con.execute("CREATE OR REPLACE TABLE model (k VARCHAR, name VARCHAR, amount BIGINT, ext VARCHAR)")
    if rows:
        con.executemany("INSERT INTO model VALUES (?, ?, ?, ?)", [(k, *row) for k, row in rows])


def _hashes(con: duckdb.DuckDBPyConnection, model: dict[str, Row]) -> dict[str, str]:
    """The engine's own row hash of every row (an upsert plan with an empty ledger creates every row)."""
    _load_model(con, list(model.items()))
    ensure_ledger(con)
    con.execute("DELETE FROM sync.ledger")
    plan = plan_sync(con, _spec("upsert", False, False))
    assert len(plan.creates) == len(model)
    return {r.key: r.row_hash for r in plan.creates}


def _ledger_for(statuses: dict[str, str], old_hashes: dict[str, str]) -> dict[str, Ledger]:
    ledger = {}
    for index, (key, status) in enumerate(sorted(statuses.items())):
        if status == "failed_create":  # a create that never succeeded: no id, no hash
            ledger[key] = Ledger(None, None, "failed")
        elif status != "absent":
            ledger[key] = Ledger(old_hashes[key], f"X-{index}", status)
    return ledger


def _plan_signature(plan: SyncPlan) -> tuple[Any, ...]:
    def records(items: list[Any]) -> list[tuple[Any, ...]]:
        return [(r.key, r.row_hash, r.external_id, sorted(r.row.items())) for r in items]

    return (records(plan.creates), records(plan.updates), records(plan.deletes), records(plan.linked),
            plan.unchanged, plan.waiting)


def _returning_world(key: str) -> dict[str, Any]:
    """A row a mirror sync archived (ledger `deleted`) that is back in the model of an insert sync."""
    row: Row = ("", None, None)
    return {"old": {key: row}, "new": {key: row}, "statuses": {key: "deleted"}, "mode": "insert",
            "ext_column": False, "required": False, "order": random.Random(0)}


@FAST
@given(world=sync_worlds())
# Found by a fresh clone: an empty-string key, archived by a mirror sync (ledger `deleted`), back in the model of an
# insert sync. Two questions, two decisions:
# - The archived record: the engine creates it again and it was the test's rules that were wrong. `deleted` means the
#   target holds no live record for the row (the mirror archived it), so the row is as new to the target as one never
#   sent; a bookkeeper whose customer comes back expects an active customer, not an archived one nobody sees. The
#   mirror-only test below says the same for mirror mode; insert and upsert follow the same rule (the ledger's id of
#   an archived record is never used, neither to skip nor to update).
# - The empty key: not a key. A blank key is nearly always a missing value turned into text; the ledger would take
#   every blank-keyed row, run after run, for the same record, and update or skip the wrong one. The engine refuses
#   it like a null key (the sync fails with a message naming the key column), and the strategy draws only real keys.
@example(world=_returning_world(""))
@example(world=_returning_world("k"))
def test_plan_matches_the_ledger_and_applying_it_leaves_nothing_to_do(world: dict[str, Any]) -> None:
    old, new, mode = world["old"], world["new"], world["mode"]
    spec = _spec(mode, world["ext_column"], world["required"])
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "warehouse.duckdb")
        with duckdb.connect(database) as con:
            if any(k.strip(" ") == "" for k in [*old, *new]):  # a blank key is refused, whatever else the world holds
                _load_model(con, list(new.items()))
                with pytest.raises(ValueError, match="null or blank 'k'"):
                    plan_sync(con, spec)
                return
            old_hashes = _hashes(con, old)
            new_hashes = _hashes(con, new)
            con.execute("DELETE FROM sync.ledger")
            ledger = _ledger_for(world["statuses"], old_hashes)
            for key, entry in ledger.items():
                con.execute("INSERT INTO sync.ledger VALUES (?, ?, ?, ?, ?, 0, NULL, NULL, NULL)",
                            [SYNC, key, entry.row_hash, entry.external_id, entry.status])
            rows = list(new.items())
            world["order"].shuffle(rows)
            _load_model(con, rows)
            plan = plan_sync(con, spec)

            # the expected plan, from the rules in plain words
            can_create, can_update = mode in ("insert", "upsert", "mirror"), mode in ("update", "upsert", "mirror")
            creates, updates, linked, waiting, unchanged = set(), {}, {}, 0, 0
            for key, (_name, amount, ext) in new.items():
                entry = ledger.get(key)
                # an archived record (`deleted`) is no record: its id is neither skipped nor updated
                ledger_id = entry.external_id if entry and entry.status != "deleted" else None
                external_id = ledger_id or (ext if world["ext_column"] else None)
                if world["required"] and amount is None:
                    waiting += 1
                elif ledger_id is None and external_id is not None and not can_update:
                    linked[key] = external_id  # exists in the target, unknown to the ledger: recorded, not sent
                elif external_id is None and can_create:
                    creates.add(key)
                elif external_id is not None and can_update and (
                        entry is None or entry.row_hash != new_hashes[key] or entry.status == "failed"):
                    updates[key] = external_id
                else:
                    unchanged += 1
            deletes = {k: e.external_id for k, e in ledger.items()
                       if mode == "mirror" and k not in new and e.external_id and e.status != "deleted"}

            assert {r.key for r in plan.creates} == creates
            assert {r.key: r.external_id for r in plan.updates} == updates
            assert {r.key: r.external_id for r in plan.deletes} == deletes
            assert {r.key: r.external_id for r in plan.linked} == linked
            assert (plan.waiting, plan.unchanged) == (waiting, unchanged)
            for record in [*plan.creates, *plan.updates]:
                assert record.row_hash == new_hashes[record.key]
                assert (record.row["name"], record.row["amount"], record.row["ext"]) == new[record.key]
            # a row whose content equals what the ledger recorded is never re-sent
            for key in new:
                entry = ledger.get(key)
                if entry and entry.status == "synced" and old.get(key) == new[key]:
                    assert key not in creates and key not in updates

            # deterministic: the same inputs in another physical order give the very same plan, twice
            first = _plan_signature(plan)
            assert _plan_signature(plan_sync(con, spec)) == first
            _load_model(con, list(reversed(rows)))
            assert _plan_signature(plan_sync(con, spec)) == first

        # apply the plan through the engine's own ledger bookkeeping, as a fully successful run would
        warehouse = Warehouse(database)
        result = SyncResult(plan=plan, dry_run=False)
        for operation, records in (("create", plan.creates), ("update", plan.updates), ("delete", plan.deletes)):
            outcomes = [_Outcome(r, r.external_id or f"new-{i}", None, {}) for i, r in enumerate(records)]
            if outcomes:
                _record(warehouse, spec, operation, outcomes, "run-1", result)
        if plan.linked:
            _record(warehouse, spec, "create", [_Outcome(r, r.external_id, None, {}, status="linked")
                                                for r in plan.linked], "run-1", result)
        assert (result.created, result.updated, result.deleted, result.linked) == (
            len(creates), len(updates), len(deletes), len(linked))

        with duckdb.connect(database) as con:
            again = plan_sync(con, spec)
        assert (again.creates, again.updates, again.deletes, again.linked) == ([], [], [], [])
        assert again.waiting == waiting


def test_a_row_that_returns_after_a_mirror_delete_is_sent_again(tmp_path: Path) -> None:
    """A mirror sync archives the target record when its row leaves the model (ledger status `deleted`, hash and
    external id kept). When the same row comes back, the target holds only an archived record, so the plan must
    create (or restore) it; planning it as `unchanged` leaves the record archived forever."""
    spec = _spec("mirror", False, False)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        _load_model(con, [("k1", ("Ada", 10, None))])
        [record] = plan_sync(con, spec).creates
        con.execute("INSERT INTO sync.ledger VALUES (?, 'k1', ?, 'X-1', 'deleted', 0, NULL, "
                    "TIMESTAMPTZ '2026-03-09 10:00:00+00', NULL)", [SYNC, record.row_hash])
        plan = plan_sync(con, spec)
    [again] = plan.creates
    assert (again.key, again.external_id, plan.updates) == ("k1", None, [])
    # a target that remembers idempotency keys must not replay the first create's answer (the archived record)
    assert idempotency_key(spec, "create", [again]) != idempotency_key(spec, "create", [record])


def test_property_tests_run_with_the_ci_profile_in_ci() -> None:
    """`make test` in CI must give the same verdict on every fresh clone: the settings objects this module built at
    import (after conftest loaded the profile) carry derandomize and no example database when CI is set."""
    in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    for profile in (FAST, SLOWER, PER_SCHEME, settings.default):
        assert profile.derandomize is in_ci
        if in_ci:
            assert profile.database is None and profile.print_blob
