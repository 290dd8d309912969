"""Every paginator style through the reader: pages are followed to the end, nothing is fetched twice, and a
server that repeats a cursor or never ends is stopped with a clear error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from integration_pipelines.connectors.errors import MalformedPageError, PaginationError
from integration_pipelines.connectors.http import HttpClient
from integration_pipelines.connectors.pagination import (
    BodyCursorPaginator,
    LinkHeaderPaginator,
    NextTokenPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
)
from integration_pipelines.connectors.reader import ReadWindow, read_pages
from integration_pipelines.connectors.runtime import ResolvedSystem
from integration_pipelines.connectors.spec import EnvValue, NoAuthSpec, RequestTemplate, Stream, System
from integration_pipelines.settings import SystemOverrides

RECORDS = [{"id": f"r{i:02d}"} for i in range(23)]
PAGE = 5


def resolved_for(stream: Stream) -> ResolvedSystem:
    system = System(name="fake", title="Fake", category="test", base_url="https://api.fake.test",
                    values={"tenant": EnvValue(env="FAKE_TENANT", sandbox="t1", secret=False)},
                    auth=NoAuthSpec(), streams=(stream,))
    return ResolvedSystem(system, "sandbox", "https://api.fake.test", None, {"tenant": "t1"}, SystemOverrides())


def read_all(stream: Stream, handler: Any) -> tuple[list[str], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = HttpClient(system="Fake", base_url="https://api.fake.test", transport=httpx.MockTransport(recording))
    pages = read_pages(http, resolved_for(stream), stream, ReadWindow())
    return [r["id"] for page in pages for r in page.records], seen


def ids() -> list[str]:
    return [r["id"] for r in RECORDS]


def test_body_cursor():
    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        start = ids().index(after) + 1 if after else 0
        chunk = RECORDS[start:start + PAGE]
        return httpx.Response(200, json={"object": "list", "has_more": start + PAGE < len(RECORDS), "data": chunk})

    stream = Stream(name="s", request=RequestTemplate(path="/list", params={"limit": "{page_size}"}),
                    records_path="data", primary_key="id", paginator=BodyCursorPaginator(), page_size=PAGE)
    got, seen = read_all(stream, handler)
    assert got == ids() and len(seen) == 5 and seen[0].url.params["limit"] == str(PAGE)


@pytest.mark.parametrize("location", ["query", "body"])
def test_next_token(location):
    def handler(request: httpx.Request) -> httpx.Response:
        if location == "query":
            after = request.url.params.get("after")
        else:
            after = httpx.Response(200, content=request.content).json().get("after")
        start = int(after or 0)
        body: dict[str, Any] = {"results": RECORDS[start:start + PAGE]}
        if start + PAGE < len(RECORDS):
            body["paging"] = {"next": {"after": str(start + PAGE)}}
        return httpx.Response(200, json=body)

    method = "GET" if location == "query" else "POST"
    stream = Stream(name="s", request=RequestTemplate(method=method, path="/list",
                                                      body={"limit": "{page_size}"} if method == "POST" else None),
                    records_path="results", primary_key="id", page_size=PAGE,
                    paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after",
                                                 location=location))
    got, seen = read_all(stream, handler)
    assert got == ids() and len(seen) == 5
    if method == "POST":
        assert b'"limit":5' in seen[0].content.replace(b" ", b"")  # a one-placeholder template keeps the int


def test_offset_in_a_query_text_template():
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        start = int(query.split("STARTPOSITION ")[1].split()[0])
        count = int(query.split("MAXRESULTS ")[1])
        chunk = RECORDS[start - 1:start - 1 + count]
        return httpx.Response(200, json={"QueryResponse": {"Thing": chunk} if chunk else {}})

    stream = Stream(name="s", request=RequestTemplate(
        path="/v3/company/{tenant}/query",
        params={"query": "SELECT * FROM Thing STARTPOSITION {offset} MAXRESULTS {page_size}"}),
        records_path="QueryResponse.Thing", envelope_path="QueryResponse", primary_key="id",
        paginator=OffsetPaginator(start=1), page_size=PAGE)
    got, seen = read_all(stream, handler)
    assert got == ids() and seen[0].url.path == "/v3/company/t1/query"


@pytest.mark.parametrize("use_page_count", [True, False])
def test_page_number(use_page_count):
    total_pages = -(-len(RECORDS) // PAGE)

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        chunk = RECORDS[(page - 1) * PAGE:page * PAGE]
        return httpx.Response(200, json={"pagination": {"page": page, "pageCount": total_pages}, "Items": chunk})

    stream = Stream(name="s", request=RequestTemplate(path="/items", params={"page": "{page}"}),
                    records_path="Items", primary_key="id", page_size=PAGE,
                    paginator=PageNumberPaginator(page_count_path="pagination.pageCount" if use_page_count else None))
    got, seen = read_all(stream, handler)
    assert got == ids()
    assert len(seen) == total_pages  # 23 records: the short last page ends it either way


def test_next_url_in_body():
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.path.rsplit("-", 1)[1]) if "-" in request.url.path else 0
        done = start + PAGE >= len(RECORDS)
        body = {"done": done, "records": RECORDS[start:start + PAGE]}
        if not done:
            body["nextRecordsUrl"] = f"/query/01g-{start + PAGE}"
        return httpx.Response(200, json=body)

    stream = Stream(name="s", request=RequestTemplate(path="/query", params={"q": "SELECT Id FROM X"}),
                    records_path="records", primary_key="id",
                    paginator=NextUrlPaginator(next_url_path="nextRecordsUrl", done_path="done"))
    got, seen = read_all(stream, handler)
    assert got == ids() and "q" not in seen[1].url.params


def test_link_header():
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("page_info", "0"))
        headers = {}
        if start + PAGE < len(RECORDS):
            headers["Link"] = f'<https://api.fake.test/items.json?limit={PAGE}&page_info={start + PAGE}>; rel="next"'
        return httpx.Response(200, json={"items": RECORDS[start:start + PAGE]}, headers=headers)

    stream = Stream(name="s", request=RequestTemplate(path="/items.json", params={"limit": "{page_size}"}),
                    records_path="items", primary_key="id", page_size=PAGE, paginator=LinkHeaderPaginator())
    got, _ = read_all(stream, handler)
    assert got == ids()


def test_a_repeated_cursor_stops_with_a_clear_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": RECORDS[:PAGE], "paging": {"next": {"after": "same"}}})

    stream = Stream(name="s", request=RequestTemplate(path="/list"), records_path="results", primary_key="id",
                    paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after"))
    with pytest.raises(PaginationError, match="already read"):
        read_all(stream, handler)


def test_the_hard_page_bound_stops_an_endless_api():
    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("after", "0"))
        return httpx.Response(200, json={"results": [{"id": str(n)}], "paging": {"next": {"after": str(n + 1)}}})

    stream = Stream(name="s", request=RequestTemplate(path="/list"), records_path="results", primary_key="id",
                    max_pages=50, paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after"))
    with pytest.raises(PaginationError, match="more than 50 pages"):
        read_all(stream, handler)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>Bad Gateway</html>", "not valid JSON"),
        (b'{"data": [{"id": "a"}, {"id": ', "not valid JSON"),
        (b'{"unexpected": true}', "no 'data' envelope"),
        (b'{"data": {"id": "a"}}', "not a list of objects"),
        (b'{"data": [{"name": "no key"}]}', "without its primary key"),
    ],
)
def test_malformed_pages_fail_with_an_excerpt(body, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    stream = Stream(name="s", request=RequestTemplate(path="/list"), records_path="data", envelope_path="data",
                    primary_key="id")
    with pytest.raises(MalformedPageError) as info:
        read_all(stream, handler)
    assert expected in str(info.value) and "fake/s" in str(info.value)
