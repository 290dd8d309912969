"""The fault matrix: every pagination style under every fault the sandbox injects lands exactly the source's ids.

One stream per style, read with small pages so that faults hit follow-up pages, not just the first request:
body cursor (Stripe), offset (SAP OData `$skip`), page number (Xero), next URL (Salesforce `nextRecordsUrl`),
Link header (Shopify) and SOAP page index (the legacy ERP). Faults: 429 with Retry-After, 5xx, a read timeout
(answers held longer than the client's timeout), a connection cut mid-answer, a record duplicated across pages,
and a page served twice by a stale backend. After the extract asset is materialized, the raw table's keys (with
duplicates) must equal the sandbox's ids, and the sandbox's request log must show the fault really hit a
follow-up page, so that no case passes because nothing happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from integration_pipelines.connectors.errors import PaginationError
from integration_pipelines.connectors.http import HttpClient, json_path
from integration_pipelines.connectors.pagination import PageNumberPaginator
from integration_pipelines.connectors.reader import REPEAT_REFETCHES, ReadWindow, read_pages
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import ResolvedSystem
from integration_pipelines.connectors.spec import NoAuthSpec, RequestTemplate, Stream, System
from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.settings import Settings, SystemOverrides

from .conftest import loaded_keys, materialize_stream

pytestmark = pytest.mark.reliability

TIMEOUT_SECONDS = 0.5
"""The client's read timeout in the timeout cases; held answers wait three times as long."""
HELD_MS = 1500


@dataclass(frozen=True)
class Style:
    """One pagination style: the stream that shows it, its page size, and its partition when it has them."""

    system: str
    stream: str
    page_size: int
    partition: str | None = None

    @property
    def env_prefix(self) -> str:
        return get_system(self.system).env_prefix

    @property
    def primary_key(self) -> str:
        return get_system(self.system).stream(self.stream).primary_key

    @property
    def data_prefix(self) -> str:
        """Where this stream's page requests go (the fixed part of its path), as opposed to token requests."""
        spec = get_system(self.system)
        path = spec.soap.endpoint_path if spec.soap else spec.stream(self.stream).request.path
        return path.split("{", 1)[0]

    def truth(self, sandbox: Sandbox) -> list[str]:
        """The source's ids: every record the emulator holds (for a partition, those created on that day)."""
        records = sandbox.emulator(self.system).dump(self.stream)
        if self.partition is not None:
            records = [r for r in records
                       if datetime.fromtimestamp(r["created"], UTC).date().isoformat() == self.partition]
        return sorted(str(json_path(r, self.primary_key)) for r in records)


STYLES: dict[str, Style] = {
    "body_cursor": Style("stripe", "charges", 4, partition="2026-03-09"),
    "offset": Style("sap", "business_partners", 9),
    "page_number": Style("xero", "contacts", 7),
    "next_url": Style("salesforce", "accounts", 3),
    "link_header": Style("shopify", "customers", 4),
    "soap": Style("legacy_erp", "stock_levels", 4),
}

FAULTS: dict[str, dict[str, Any]] = {
    "rate_limit": {"rate_limit_rate": 0.45, "retry_after": 0},
    "server_error": {"error_rate": 0.45},
    "timeout": {"latency_ms": HELD_MS, "latency_rate": 0.35},
    "dropped_connection": {"drop_rate": 0.45},
    "duplicate_record": {"duplicate_rate": 0.45},
    "repeated_page": {"repeat_rate": 0.45},
}
LOGGED = {"rate_limit": "rate_limit", "server_error": "error", "timeout": "slow", "dropped_connection": "drop",
          "duplicate_record": "duplicate", "repeated_page": "repeat"}


def _cases() -> list[Any]:
    return [pytest.param(style, fault, id=f"{style}-{fault}") for style in STYLES for fault in FAULTS]


def _configure(monkeypatch: pytest.MonkeyPatch, style: Style, fault: str) -> None:
    prefix = style.env_prefix
    monkeypatch.setenv(f"{prefix}_PAGE_SIZE", str(style.page_size))
    monkeypatch.setenv(f"{prefix}_MAX_RETRIES", "12")
    monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "1000")  # throttling is not under test here
    if fault == "timeout":
        monkeypatch.setenv(f"{prefix}_TIMEOUT_SECONDS", str(TIMEOUT_SECONDS))


def _metadata(result: Any, style: Style) -> dict[str, Any]:
    materialization = result.asset_materializations_for_node(f"{style.system}__{style.stream}")[0]
    return {name: value.value for name, value in materialization.metadata.items()}


@pytest.mark.parametrize(("style_name", "fault"), _cases())
def test_every_pagination_style_lands_exactly_the_source_ids_under_each_fault(
    settings: Settings, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, style_name: str, fault: str
) -> None:
    style = STYLES[style_name]
    truth = style.truth(sandbox)
    assert len(truth) > 2 * style.page_size, "the stream must span several pages for faults to hit follow-ups"
    _configure(monkeypatch, style, fault)
    sandbox.set_faults(style.system, seed=1, **FAULTS[fault])

    result = materialize_stream(settings, style.system, style.stream, style.partition)

    assert loaded_keys(settings, style.system, style.stream) == truth  # no loss, no duplicate
    metadata = _metadata(result, style)
    assert metadata["pages"] >= math.ceil(len(truth) / style.page_size)
    pages = [r for r in sandbox.state.request_log(style.system) if r["path"].startswith(style.data_prefix)]
    hit = [i for i, r in enumerate(pages) if r["fault"] == LOGGED[fault]]
    assert any(i > 0 for i in hit), f"{fault} must have hit a follow-up page: {[r['fault'] for r in pages]}"
    if fault == "duplicate_record":
        # the duplicate really reached the reader (and the warehouse kept one row per id)
        assert metadata["records_read"] > len(truth)
    if fault == "repeated_page":
        # the stale copy was asked for again and dropped, never loaded
        assert metadata["records_read"] == len(truth)
        for i in hit:
            assert i + 1 < len(pages) and pages[i + 1]["fault"] is None
            assert (pages[i + 1]["path"], pages[i + 1]["query"]) == (pages[i]["path"], pages[i]["query"])


# -- the two page faults, seen on the wire --------------------------------------------------------------
def _stripe_pages(url: str, pages: int) -> list[dict[str, Any]]:
    """Page through Stripe charges by hand (limit 3), asking each page once, as a naive client would."""
    key = get_system("stripe").values["api_key"].sandbox
    answers, after = [], None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(pages):
            params = {"limit": 3, **({"starting_after": after} if after else {})}
            answers.append(client.get("/v1/charges", params=params).json())
            after = answers[-1]["data"][-1]["id"]
    return answers


def test_page_faults_are_set_through_the_control_api_and_replay_with_the_same_seed(sandbox_server: Any,
                                                                                  sandbox: Sandbox) -> None:
    url = sandbox_server.url
    config = {"duplicate_rate": 0.3, "repeat_rate": 0.3, "seed": 4}
    logs = []
    for _ in range(2):
        answer = httpx.put(f"{url}/_sandbox/faults/stripe", json=config)
        assert answer.status_code == 200 and answer.json()["faults"]["repeat_rate"] == 0.3
        sandbox.state.clear_requests()
        answers = _stripe_pages(url, 6)
        logs.append([r["fault"] for r in sandbox.state.request_log("stripe")])
        for previous, page, fault in zip(answers[:-1], answers[1:], logs[-1][1:], strict=True):
            if fault == "repeat":  # the previous answer again: same records, same has_more
                assert page == previous
            elif fault == "duplicate":  # the previous page's last record first, then the page asked for
                assert page["data"][0] == previous["data"][-1] and len(page["data"]) == 4
            else:
                assert {c["id"] for c in page["data"]}.isdisjoint(c["id"] for c in previous["data"])
    assert logs[0] == logs[1], "the same seed must fault the same requests"
    assert {"repeat", "duplicate"} <= set(logs[0]), logs[0]
    assert httpx.delete(f"{url}/_sandbox/faults").status_code == 200


def test_a_repeated_page_is_answered_afresh_when_asked_again(sandbox_server: Any, sandbox: Sandbox) -> None:
    sandbox.set_faults("stripe", repeat_rate=1.0)  # every page request would be stale, but never twice in a row
    key = get_system("stripe").values["api_key"].sandbox
    with httpx.Client(base_url=sandbox_server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        first = client.get("/v1/charges", params={"limit": 3}).json()
        after = {"limit": 3, "starting_after": first["data"][-1]["id"]}
        stale, fresh = client.get("/v1/charges", params=after).json(), client.get("/v1/charges", params=after).json()
    assert stale == first and fresh != first and fresh["data"][0]["id"] not in {c["id"] for c in first["data"]}
    assert [r["fault"] for r in sandbox.state.request_log("stripe")] == [None, "repeat", None]


def test_an_offset_reader_sees_a_row_inserted_ahead_as_one_shifted_page(sandbox_server: Any, sandbox: Sandbox,
                                                                       settings: Settings,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The offset form of `duplicate`: every later page starts one row earlier, so a naive offset reader sees the
    record twice and skips none (the form a pointer-paged API gets, the overlap, is checked above)."""
    monkeypatch.setenv("SAP_PAGE_SIZE", "9")
    monkeypatch.setenv("SAP_REQUESTS_PER_SECOND", "1000")
    sandbox.set_faults("sap", duplicate_rate=1.0)
    truth = STYLES["offset"].truth(sandbox)
    metadata = _metadata(materialize_stream(settings, "sap", "business_partners"), STYLES["offset"])
    pages = [r for r in sandbox.state.request_log("sap") if r["path"].startswith(STYLES["offset"].data_prefix)]
    skips = [int(parse_qs(r["query"])["$skip"][0]) for r in pages]
    assert skips == [9 * n for n in range(len(skips))], "the client asks for the offsets it computed"
    assert [r["fault"] for r in pages][1:] == ["duplicate"] * (len(pages) - 1)
    # each fault 'inserted' one more row ahead: page n repeats n - 1 rows, and the short last page still ends it
    assert metadata["records_read"] == len(truth) + len(pages) - 1
    assert loaded_keys(settings, "sap", "business_partners") == truth


# -- the reader: a stale page is asked for again, a persistent one stops the read -----------------------
RECORDS = [{"id": f"r{i:02d}"} for i in range(11)]
PAGE = 3


def _page_number_read(stale_answers: int) -> tuple[list[str] | Exception, list[int]]:
    """Read RECORDS by page number from a server that answers page 2 with page 1's content `stale_answers` times."""
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(page)
        served = page - 1 if page == 2 and asked.count(2) <= stale_answers else page
        return httpx.Response(200, json={"Items": RECORDS[(served - 1) * PAGE:served * PAGE]})

    stream = Stream(name="s", request=RequestTemplate(path="/items", params={"page": "{page}"}),
                    records_path="Items", primary_key="id", page_size=PAGE, paginator=PageNumberPaginator())
    system = System(name="fake", title="Fake", category="test", base_url="https://api.fake.test", values={},
                    auth=NoAuthSpec(), streams=(stream,))
    resolved = ResolvedSystem(system, "sandbox", "https://api.fake.test", None, {}, SystemOverrides())
    http = HttpClient(system="Fake", base_url="https://api.fake.test", transport=httpx.MockTransport(handler),
                      sleep=lambda seconds: None)
    try:
        return [r["id"] for page in read_pages(http, resolved, stream, ReadWindow()) for r in page.records], asked
    except PaginationError as exc:
        return exc, asked


@pytest.mark.parametrize("stale_answers", range(1, REPEAT_REFETCHES + 1))
def test_a_stale_page_is_asked_for_again_and_never_loaded(stale_answers: int) -> None:
    got, asked = _page_number_read(stale_answers)
    assert got == [r["id"] for r in RECORDS], "page 2 must be neither loaded twice as page 1 nor skipped"
    assert asked == [1, *[2] * (stale_answers + 1), 3, 4]


def test_a_page_that_stays_stale_stops_the_read_with_what_to_do() -> None:
    error, asked = _page_number_read(stale_answers=REPEAT_REFETCHES + 1)
    assert isinstance(error, PaginationError)
    assert asked == [1, *[2] * (REPEAT_REFETCHES + 1)], "bounded: the stale page is asked for a fixed number of times"
    text = str(error)
    assert "fake/s: page 2" in text and "exactly the records of page 1" in text and "already read" in text
    assert "nothing from this read was committed" in text and "rerun the asset later" in text
