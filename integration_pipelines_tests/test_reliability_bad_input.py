"""The bad input catalog (issue 9): every parser fed malformed, oversized, wrongly typed and hostile input.

Each row of CATALOG is (parser, input, expected error substring). The contract, checked for every row:
- the input ends in the parser's documented error (a `ConnectorError`/`CustomSystemError` whose message says what
  was wrong and what to do; for the webhook receiver, a 4xx with a reason label and a logged explanation), never
  another exception and never a 500;
- nothing is written: no DuckDB table or cursor, no spool leftovers, no landing file, marker or temp file.

Parsers and the real path each input takes:
- `json_page`: a tiny HTTP server on 127.0.0.1 answers a real extract (reader `_parse`/`_records` → spool →
  warehouse) with the bad page; the one-page-per-kind cases of test_pagination.py are not repeated here.
- `soap`: a real SOAP extract (legacy ERP) whose transport answers hostile XML; the UTF-8 billion laughs, external
  entity, oversized answers and hostile WSDLs are in test_soap_security.py.
- `yaml`: a custom system file through `load_custom_file`; test_custom_systems.py holds the typo/missing-key cases.
- `webhook`: the real receiver on 127.0.0.1 (uvicorn); test_webhooks_receiver.py holds tampering, wrong secrets,
  stale timestamps, plain non-JSON, oversized bodies and hostile Standard Webhooks ids.
- `sql`: records whose field names and values carry SQL metacharacters, through a real extract into DuckDB: they
  must be loaded verbatim (and nothing else executed) or refused with a clear error.

A row marked `bug` is a defect found by this catalog in a file owned elsewhere; it is a strict xfail, so fixing the
defect turns it into a failure that asks for the marker to be removed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from integration_pipelines.connectors.custom import CustomSystemError, load_custom_file, load_custom_systems
from integration_pipelines.connectors.errors import ConnectorError
from integration_pipelines.connectors.legacy_erp import SYSTEM as ERP
from integration_pipelines.connectors.pagination import BodyCursorPaginator
from integration_pipelines.connectors.runtime import ResolvedSystem, resolve_system
from integration_pipelines.connectors.spec import NoAuthSpec, RequestTemplate, Stream, System
from integration_pipelines.extraction import extract_stream
from integration_pipelines.settings import Settings, load_overrides
from integration_pipelines.warehouse.batches import column_name
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.config import SANDBOX_SALESFORCE_ORG_IDS, SANDBOX_SECRETS, WebhookSecrets
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.simulator import Delivery, Signer
from integration_pipelines.webhooks.testing import make_receiver, scrubbed_environment_names

from .conftest import _scrub_environment
from .test_soap_security import BILLION_LAUGHS

pytestmark = pytest.mark.reliability

PUBLIC_URL = "https://hooks.example.test/base"
RUN_ID = "bad-input-run"


@dataclass(frozen=True)
class Case:
    """One catalog row: which parser, a name, the input, and the substring its error must contain."""

    parser: str
    name: str
    data: Any
    expect: str
    bug: str | None = None  # where the defect is, when this row documents one (strict xfail)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.parser}-{self.name}"


def _page(body: Any) -> bytes:
    return json.dumps(body).encode()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


GOOD_FIRST_PAGE = _page({"has_more": True, "data": [{"id": "a1", "updated": "2026-03-01T00:00:00Z"},
                                                    {"id": "a2", "updated": "2026-03-01T00:00:00Z"}]})


def _utf16_bomb(encoding: str, bom: bytes = b"") -> bytes:
    return bom + BILLION_LAUGHS.decode().replace('<?xml version="1.0"?>', "").lstrip().encode(encoding)


YAML_BASE = """name: bad_tool
title: Bad tool
category: project_management
base_url: https://bad.example.com
values:
  token: {env: BAD_TOOL_TOKEN, sandbox: FAKE-token}
auth: {kind: bearer, token: token}
streams:
  - name: things
    request: {path: /things}
    primary_key: id
"""


def _billion_laughs_yaml(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return YAML_BASE + "\n".join(lines) + "\n"


CATALOG: list[Case] = [
    # -- JSON pages through a real extract: data is the list of pages the server answers, in order --------------
    Case("json_page", "html-instead-of-json", [b"<html><body>502 Bad Gateway</body></html>"], "not valid JSON"),
    Case("json_page", "empty-body", [b""], "not valid JSON"),
    Case("json_page", "invalid-utf8", [b'{"data": [{"id": "\xff\xfe"}]}'], "not valid JSON"),
    Case("json_page", "second-page-broken", [GOOD_FIRST_PAGE, b'{"data": [{"id": '], "page 2"),
    Case("json_page", "top-level-array", [b'[{"id": "a"}]'], "has no 'data' envelope"),
    Case("json_page", "top-level-string", [b'"data"'], "has no 'data' envelope"),
    Case("json_page", "top-level-null", [b"null"], "has no 'data' envelope"),
    Case("json_page", "records-an-object", [_page({"data": {"id": "a"}})], "not a list of objects"),
    Case("json_page", "records-a-string", [_page({"data": "a,b,c"})], "not a list of objects"),
    Case("json_page", "records-numbers", [_page({"data": [1, 2, 3]})], "not a list of objects"),
    Case("json_page", "a-null-record", [_page({"data": [{"id": "a"}, None]})], "not a list of objects"),
    Case("json_page", "record-without-key", [_page({"data": [{"name": "no id"}]})], "without its primary key"),
    Case("json_page", "record-with-empty-key", [_page({"data": [{"id": ""}]})], "without its primary key"),
    Case("json_page", "huge-html-page", [b"<html>" + b"x" * 6_000_000 + b"</html>"], "not valid JSON"),
    Case("json_page", "key-is-an-object", [_page({"data": [{"id": {"a": 1, "b": 2}}]})], "primary key"),
    Case("json_page", "deeply-nested-json", [_page({"data": []})[:-1] + b", \"x\": " + _nested(100_000) + b"}"],
         "not valid JSON"),
    Case("json_page", "cursor-not-a-date", [_page({"data": [{"id": "a", "updated": "last tuesday"}]})], "updated"),
    Case("json_page", "cursor-an-object", [_page({"data": [{"id": "a", "updated": {"at": 1}}]})], "updated"),
    # -- SOAP answers through a real SOAP extract (status, body) --------------------------------------------------
    Case("soap", "billion-laughs-utf16le-no-bom", (200, _utf16_bomb("utf-16-le")), "declares a DTD"),
    Case("soap", "billion-laughs-utf16be-no-bom", (200, _utf16_bomb("utf-16-be")), "declares a DTD"),
    Case("soap", "billion-laughs-utf32-bom", (200, _utf16_bomb("utf-32-le", b"\xff\xfe\x00\x00")), "declares a DTD"),
    Case("soap", "billion-laughs-utf16-fault-status", (500, _utf16_bomb("utf-16-le")), "declares a DTD"),
    Case("soap", "odd-length-utf16", (200, b"\xff\xfe<\x00a"), "not a valid GetStockLevels response"),
    Case("soap", "odd-length-utf16-fault-status", (500, b"\xff\xfe<\x00a"), "not well-formed XML"),
    Case("soap", "deep-tree", (200, b"<a>" * 50_000 + b"</a>" * 50_000), "not a valid GetStockLevels response"),
    Case("soap", "huge-text-node", (200, b"<a>" + b"x" * 11_000_000 + b"</a>"), "not a valid GetStockLevels response"),
    Case("soap", "html-page", (200, b"<html><body>Service Unavailable"), "not a valid GetStockLevels response"),
    Case("soap", "empty-answer", (200, b""), "not a valid GetStockLevels response"),
    Case("soap", "nul-in-xml", (200, b"<a>\x00</a>"), "not a valid GetStockLevels response"),
    # -- custom system YAML (file text, or bytes for encoding cases) ----------------------------------------------
    Case("yaml", "billion-laughs-aliases", _billion_laughs_yaml(), "anchors and aliases are expanded"),
    Case("yaml", "recursive-alias", YAML_BASE + "loop: &loop [1, *loop]\n", "refers to a mapping or list that "
         "contains it"),
    Case("yaml", "deep-flow-nesting", YAML_BASE + "deep: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    Case("yaml", "deep-block-nesting", YAML_BASE + "".join(f"{'  ' * i}k{i}:\n" for i in range(60)) + "  " * 60
         + "v: 1\n", "nested more than"),
    Case("yaml", "list-as-key", YAML_BASE + "? [a, b]\n: 1\n", "a key must be plain text"),
    Case("yaml", "mapping-as-key", YAML_BASE + "? {a: 1}\n: 1\n", "a key must be plain text"),
    Case("yaml", "nul-character", YAML_BASE.replace("Bad tool", "Bad\x00tool"), "U+0000 is not allowed"),
    Case("yaml", "not-utf8", YAML_BASE.encode().replace(b"Bad tool", b"Bad \xff tool"), "not UTF-8"),
    Case("yaml", "too-large", YAML_BASE + "# " + "x" * 1_100_000 + "\n", "a system description is a few kilobytes"),
    Case("yaml", "two-documents", YAML_BASE + "---\nname: other\n", "not valid YAML"),
    Case("yaml", "tab-indentation", YAML_BASE.replace("    request:", "\trequest:"), "not valid YAML"),
    Case("yaml", "a-bare-scalar", "just some text\n", "must be a mapping"),
    Case("yaml", "python-tag", YAML_BASE.replace("title: Bad tool", "title: !!python/object/apply:os.system [id]"),
         "title: Input should be a valid string"),
    Case("yaml", "unknown-key", YAML_BASE + "retries: 3\n", "unknown key 'retries'"),
    Case("yaml", "streams-wrong-type", YAML_BASE.replace("streams:\n", "streams: 5\nunused:\n"), "valid tuple"),
    Case("yaml", "page-size-not-a-number", YAML_BASE + "    page_size: lots\n", "streams[0].page_size"),
    Case("yaml", "huge-integer", YAML_BASE + "    page_size: 1" + "0" * 5000 + "\n",
         "this value cannot be read (Exceeds the limit"),
    Case("yaml", "impossible-date", YAML_BASE + "    description: 2026-02-31\n", "quote it if it is meant as text"),
    Case("yaml", "date-as-title", YAML_BASE.replace("title: Bad tool", "title: 2026-01-01"), "valid string"),
    Case("yaml", "system-name-traversal", YAML_BASE.replace("name: bad_tool", "name: ../../etc"),
         "system name '../../etc' must be lowercase ASCII"),
    Case("yaml", "system-name-slash", YAML_BASE.replace("name: bad_tool", "name: a/b"), "system name 'a/b'"),
    Case("yaml", "system-name-unicode", YAML_BASE.replace("name: bad_tool", "name: bäd_tool"), "lowercase ASCII"),
    Case("yaml", "stream-name-traversal", YAML_BASE.replace("- name: things", "- name: ../../things"),
         "stream name '../../things'"),
    Case("yaml", "stream-name-unicode", YAML_BASE.replace("- name: things", "- name: thïngs"), "lowercase ASCII"),
    # -- webhook bodies and headers through the real receiver: (provider, body, header changes) --------------------
    Case("webhook", "stripe-deeply-nested-json", ("stripe", _nested(200_000), {}), "400 malformed",
         extra={"log": "nested too deeply"}),
    Case("webhook", "stripe-json-array", ("stripe", b"[]", {}), "400 malformed", extra={"log": "id and type"}),
    Case("webhook", "stripe-json-string", ("stripe", b'"evt_1"', {}), "400 malformed",
         extra={"log": "must be an object or an array"}),
    Case("webhook", "stripe-invalid-utf8", ("stripe", b'{"id": "\xff"}', {}), "400 malformed",
         extra={"log": "not JSON"}),
    Case("webhook", "stripe-xml-body", ("stripe", b"<event id='1'/>", {"content-type": "text/xml"}),
         "400 malformed", extra={"log": "not JSON"}),
    Case("webhook", "stripe-data-not-an-object", ("stripe", _page({"id": "evt_1", "type": "charge.succeeded",
                                                                   "data": ["ch_1"]}), {}), "400 malformed",
         extra={"log": "data must be an object"}),
    Case("webhook", "stripe-object-not-an-object", ("stripe", _page({"id": "evt_1", "type": "x",
                                                                     "data": {"object": "ch_1"}}), {}),
         "400 malformed", extra={"log": "data.object must be an object"}),
    Case("webhook", "square-counts-not-a-list", ("square", _page({"event_id": "e1", "data": {
        "type": "inventory", "object": {"inventory_counts": {"catalog_object_id": "x"}}}}), {}), "400 malformed",
         extra={"log": "inventory_counts must be an array of objects"}),
    Case("webhook", "square-count-without-its-key", ("square", _page({"event_id": "e2", "data": {
        "type": "inventory", "object": {"inventory_counts": [{"quantity": "5"}]}}}), {}), "400 malformed",
         extra={"log": "inventory count has no catalog_object_id"}),
    Case("webhook", "hubspot-array-of-numbers", ("hubspot", b"[1, 2]", {}), "400 malformed",
         extra={"log": "array of event objects"}),
    Case("webhook", "xero-events-of-numbers", ("xero", _page({"events": [1, 2]}), {}), "400 malformed",
         extra={"log": "events must be an array of objects"}),
    Case("webhook", "quickbooks-notifications-of-numbers", ("quickbooks", _page({"eventNotifications": [1]}), {}),
         "400 malformed", extra={"log": "eventNotifications must be an array of objects"}),
    Case("webhook", "quickbooks-entities-a-string", ("quickbooks", _page({"eventNotifications": [
        {"realmId": "1", "dataChangeEvent": {"entities": "Invoice"}}]}), {}), "400 malformed",
         extra={"log": "entities must be an array of objects"}),
    Case("webhook", "forms-json-declared-urlencoded", ("forms", b'{"email": "a@example.test"}',
                                                       {"content-type": "application/x-www-form-urlencoded"}),
         "400 malformed", extra={"log": "bad form encoding"}),
    Case("webhook", "forms-multipart-garbage", ("forms", b"--x\r\nContent-Disposition: form-data\r\n\r\nhi\r\n--x--",
                                                {"content-type": "multipart/form-data; boundary=x"}),
         "400 malformed", extra={"log": "not JSON"}),
    Case("webhook", "odoo-without-model", ("odoo", b'{"_id": 3}', {}), "400 malformed", extra={"log": "_model"}),
    Case("webhook", "salesforce-json", ("salesforce", b'{"OrganizationId": "00D"}', {}), "400 malformed",
         extra={"log": "not a Salesforce outbound message"}),
    Case("webhook", "salesforce-utf16-dtd", ("salesforce", (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY o "' + SANDBOX_SALESFORCE_ORG_IDS + '">]>'
        "<notifications><OrganizationId>&o;</OrganizationId></notifications>").encode("utf-16-le"), {}),
         "400 malformed", extra={"log": "not a Salesforce outbound message"}),
    Case("webhook", "stripe-duplicated-signature", ("stripe", None, {"+stripe-signature": "t=1,v1=00"}),
         "400 duplicate_header", extra={"log": "stripe-signature sent more than once"}),
    Case("webhook", "standard-duplicated-id", ("standard", None, {"+webhook-id": "msg_other"}),
         "400 duplicate_header", extra={"log": "webhook-id sent more than once"}),
    Case("webhook", "stripe-garbage-signature", ("stripe", None, {"stripe-signature": "t=abc,v1=zz"}),
         "400 malformed_header", extra={"log": "t= timestamp of Stripe-Signature is not a whole number"}),
    Case("webhook", "stripe-signature-without-v1", ("stripe", None, {"stripe-signature": "t=1767225600"}),
         "400 malformed_header", extra={"log": "lacks t= or v1="}),
    Case("webhook", "stripe-8kb-of-signatures", ("stripe", None, {"stripe-signature": "t=1767225600," + ",".join(
        ["v1=" + "0" * 64] * 110)}), "401 bad_signature", extra={"log": "no v1 signature matches"}),
    Case("webhook", "standard-timestamp-not-a-number", ("standard", None, {"webhook-timestamp": "1e9"}),
         "400 malformed_header", extra={"log": "webhook-timestamp is not a whole number"}),
    Case("webhook", "standard-signature-garbage", ("standard", None, {"webhook-signature": "v1 ,,, v2,@@@"}),
         "401 bad_signature", extra={"log": "no v1 signature matches"}),
    Case("webhook", "hubspot-negative-timestamp", ("hubspot", None, {"x-hubspot-request-timestamp": "-5"}),
         "400 malformed_header", extra={"log": "X-HubSpot-Request-Timestamp is not a whole number"}),
    Case("webhook", "shopify-empty-signature", ("shopify", None, {"x-shopify-hmac-sha256": ""}),
         "400 missing_header", extra={"log": "missing header x-shopify-hmac-sha256"}),
    # -- SQL metacharacters in field names and values, through a real extract into DuckDB ------------------------
    Case("sql", "drop-table-field-name", [{"id": "1", 'a"; DROP TABLE sentinel; --': "v"}], "verbatim"),
    Case("sql", "quotes-newlines-backslashes-in-names", [{"id": "1", "it's": 1, 'say "hi"': 2, "two\nlines": 3,
                                                          "back\\slash": 4, "tab\there": 5}], "verbatim"),
    Case("sql", "hostile-values", [{"id": "1", "v": "'); DROP TABLE sentinel; --", "q": 'a"b\'c', "b": "c:\\x\\",
                                    "nul": "a\x00b", "nl": "l1\nl2", "pct": "100%_"}], "verbatim"),
    Case("sql", "hostile-primary-key", [{"id": "'; DROP TABLE sentinel; --"}, {"id": 'x"y'}, {"id": "a\x00b"}],
         "verbatim"),
    Case("sql", "nul-in-field-name", [{"id": "1", "a\x00b": "v"}], "verbatim"),
    Case("sql", "unicode-and-spaces", [{"id": "1", "naïve ✓": "ü", " ": 1, "select": 2, "from": 3}], "verbatim"),
    Case("sql", "meta-column-names", [{"id": "1", "_pk": "spoof", "_raw": "spoof", "_run_id": "spoof"}],
         "verbatim"),
    Case("sql", "huge-integer-value", [{"id": "1", "n": 2**70}], "verbatim"),
    Case("sql", "long-field-name", [{"id": "1", "k" * 3000: "v"}], "verbatim"),
    Case("sql", "empty-field-name", [{"id": "1", "": "v"}], "verbatim"),
    Case("sql", "empty-and-C1-field-names", [{"id": "1", "": "v", "C1": "w"}], "verbatim"),
    Case("sql", "field-changes-case-between-runs", [{"id": "1", "Name": "A"}], "verbatim",
         extra={"second_run": [{"id": "2", "name": "b"}]}),
]


# == fixtures =========================================================================================================
class PageServer:
    """A tiny HTTP server on 127.0.0.1: the n-th request gets the n-th configured page (the last one repeats), so a
    bad page reaches the reader through a real socket, real headers and httpx's own decoding."""

    def __init__(self) -> None:
        self.pages: list[bytes] = []
        self.requests = 0
        pages_server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index = min(pages_server.requests, len(pages_server.pages) - 1)
                pages_server.requests += 1
                body = pages_server.pages[index]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="bad-page-server")

    def serve(self, pages: list[bytes]) -> None:
        self.pages, self.requests = list(pages), 0


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings under tmp_path, with no credential or override from the developer's shell."""
    _scrub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IP_SANDBOX_URL", "http://127.0.0.1:9")  # nothing listens: only mock transports answer
    monkeypatch.setenv("LEGACY_ERP_MAX_RETRIES", "0")
    monkeypatch.setenv("IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("IP_BATCH_ROWS", "1")  # every record is spooled at once, so leftovers would show
    return Settings()


@pytest.fixture(scope="module")
def receiver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverServer]:
    """One real receiver for every webhook row: all of them must leave its store empty."""
    with pytest.MonkeyPatch.context() as patch:
        for name in scrubbed_environment_names():
            patch.delenv(name)
        receiver, _, _ = make_receiver(tmp_path_factory.mktemp("webhook-store"), PUBLIC_URL,
                                       max_body_bytes=1024 * 1024)
        with ReceiverServer(receiver) as running:
            yield running


def _signer() -> Signer:
    _, _, config = make_receiver(Path("/nonexistent"), PUBLIC_URL)
    return Signer(WebhookSecrets(**SANDBOX_SECRETS), config)  # type: ignore[arg-type]


# == the reading side ==================================================================================================
THINGS = Stream(name="things", request=RequestTemplate(path="/v1/things", params={"limit": "{page_size}"}),
                records_path="data", envelope_path="data", primary_key="id", cursor_field="updated",
                paginator=BodyCursorPaginator(), page_size=2)
BAD_API = System(name="bad_api", title="Bad API", category="test", base_url="https://api.bad.example", values={},
                 auth=NoAuthSpec(), streams=(THINGS,))


def _extract(settings: Settings, base_url: str, stream: Stream = THINGS, run_id: str = RUN_ID) -> Any:
    resolved = ResolvedSystem(BAD_API, "sandbox", base_url, None, {}, load_overrides(BAD_API.name))
    return extract_stream(resolved=resolved, stream=stream, warehouse=Warehouse(settings.warehouse_database),
                          settings=settings, run_id=run_id)


def _assert_nothing_written(settings: Settings, schema: str) -> None:
    database = Path(settings.warehouse_database)
    if database.exists():
        with duckdb.connect(str(database), read_only=True) as con:
            tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                 [schema]).fetchall()
            assert tables == [], f"a failed read created {tables} in {schema}"
            has_state = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ops' "
                                    "AND table_name = 'stream_state'").fetchone()[0]
            if has_state:
                assert con.execute("SELECT count(*) FROM ops.stream_state").fetchone()[0] == 0
    spooled = [p for p in settings.spool_dir.rglob("*") if p.is_file()] if settings.spool_dir.exists() else []
    assert spooled == [], f"spool leftovers: {spooled}"


def _assert_clear(error: BaseException, case: Case) -> None:
    assert isinstance(error, ConnectorError), f"{type(error).__name__} is not a documented error: {error}"
    message = str(error)
    assert case.expect in message, message[:600]
    assert "Nothing from this read was committed" in message or "nothing was parsed or committed" in message, (
        f"the message must say that nothing was committed (what to do next): {message[:600]}")
    assert len(message) < 2500, "a hostile page must not be echoed into logs and alerts in full"


def run_json_page(case: Case, settings: Settings, page_server: PageServer) -> None:
    page_server.serve(case.data)
    with pytest.raises(Exception) as info:
        _extract(settings, page_server.url)
    _assert_clear(info.value, case)
    _assert_nothing_written(settings, "raw_bad_api")


def run_soap(case: Case, settings: Settings) -> None:
    status, body = case.data

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/xml; charset=utf-8"})

    started = time.monotonic()
    with pytest.raises(Exception) as info:
        extract_stream(resolved=resolve_system(ERP, settings), stream=ERP.stream("stock_levels"),
                       warehouse=Warehouse(settings.warehouse_database), settings=settings, run_id=RUN_ID,
                       client_kwargs={"transport": httpx.MockTransport(answer)})
    assert time.monotonic() - started < 10, "hostile XML must be refused quickly, not expanded"
    _assert_clear(info.value, case)
    _assert_nothing_written(settings, "raw_legacy_erp")


def run_yaml(case: Case, tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    path = folder / "bad_tool.yaml"
    if isinstance(case.data, bytes):
        path.write_bytes(case.data)
    else:
        path.write_text(case.data, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(CustomSystemError) as info:
        load_custom_file(path)
    assert time.monotonic() - started < 5, "a hostile file must be refused quickly"
    message = str(info.value)
    assert case.expect in message, message[:800]
    assert f"{path}:" in message, "the error names the file and the line to fix"
    assert len(message) < 4000
    # and the same file in a user folder stops discovery, so no half-validated system is ever registered
    with pytest.raises(CustomSystemError):
        load_custom_systems(str(folder))


def run_webhook(case: Case, server: ReceiverServer, caplog: pytest.LogCaptureFixture) -> None:
    provider, body, changes = case.data
    signer = _signer()
    if body is None:  # a valid event, so only the header changes are wrong
        body = {"stripe": _page({"id": "evt_hdr", "type": "charge.succeeded"}),
                "standard": _page({"type": "invoice.paid"}),
                "hubspot": _page([{"eventId": 1, "subscriptionType": "contact.creation"}]),
                "shopify": _page({"id": 7})}[provider]
    delivery: Delivery = signer.sign(provider, body, event_id="wh-1" if provider == "shopify" else "",
                                     topic="orders/create")
    headers: list[tuple[str, str]] = list(delivery.headers.items())
    for name, value in changes.items():
        if name.startswith("+"):  # a second copy of a header
            headers.append((name[1:], value))
        else:
            headers = [(k, v) for k, v in headers if k.lower() != name] + [(name, value)]
    caplog.set_level(logging.INFO, logger="integration_pipelines.webhooks")
    response = httpx.post(server.url + delivery.path, content=delivery.body, headers=headers, timeout=30)
    status, reason = case.expect.split(" ", 1)
    assert response.status_code == int(status), response.text[:300]
    if provider != "xero" or response.status_code != 401:
        assert response.json() == {"error": reason}
    assert case.extra["log"] in caplog.text
    root = server.receiver.store.root  # type: ignore[attr-defined]
    written = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert written == [], f"a rejected request left {written}"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {name: kind for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()}


def run_sql(case: Case, settings: Settings, page_server: PageServer) -> None:
    database = settings.warehouse_database
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE sentinel (x INTEGER)")
        con.execute("INSERT INTO sentinel VALUES (42)")
    runs = [case.data, *([case.extra["second_run"]] if "second_run" in case.extra else [])]
    expected: dict[str, dict[str, Any]] = {}
    for number, records in enumerate(runs):
        page_server.serve([_page({"has_more": False, "data": records})])
        try:
            _extract(settings, page_server.url, run_id=f"{RUN_ID}-{number}")
        except Exception as exc:  # refused: it must be a clear, documented error that names the field
            assert isinstance(exc, ConnectorError | ValueError) and not isinstance(exc, duckdb.Error), (
                f"a raw {type(exc).__name__} is not a clear refusal: {exc}")
            message = str(exc)
            named = [k for r in records for k in r if k != "id" and (repr(k) in message if k else "empty" in message)]
            assert named, f"the refusal must name the field at fault: {message}"
            return
        expected |= {str(r["id"]): r for r in records}
    with duckdb.connect(database, read_only=True) as con:
        assert con.execute("SELECT x FROM sentinel").fetchall() == [(42,)], "something other than the load ran"
        columns = _columns(con, "raw_bad_api.things")
        rows = con.execute("SELECT * FROM raw_bad_api.things").fetchall()
        names = list(columns)
    loaded = {row[names.index("_pk")]: dict(zip(names, row, strict=True)) for row in rows}
    assert sorted(loaded) == sorted(expected)
    for pk, record in expected.items():
        row = loaded[pk]
        assert json.loads(row["_raw"]) == record, "the original JSON is kept exactly"
        by_lower = {name.lower(): name for name in columns}  # DuckDB names are case-insensitive
        for key, value in record.items():
            column = by_lower.get(column_name(key).lower())  # the renames are documented in warehouse/batches.py
            assert column, f"field {key!r} has no column of its own (columns: {sorted(columns)[:12]})"
            stored = row[column]
            assert stored == value or stored == str(value), f"{key!r}: stored {stored!r}, sent {value!r}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason=c.bug)
                                               if c.bug else ()) for c in CATALOG])
def test_bad_input_is_refused_clearly_and_writes_nothing(case: Case, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    if case.parser == "json_page":
        run_json_page(case, request.getfixturevalue("isolated"), request.getfixturevalue("page_server"))
    elif case.parser == "soap":
        run_soap(case, request.getfixturevalue("isolated"))
    elif case.parser == "yaml":
        run_yaml(case, tmp_path)
    elif case.parser == "webhook":
        run_webhook(case, request.getfixturevalue("receiver_server"), request.getfixturevalue("caplog"))
    elif case.parser == "sql":
        run_sql(case, request.getfixturevalue("isolated"), request.getfixturevalue("page_server"))
    else:  # pragma: no cover - a typo in the catalog
        raise AssertionError(f"unknown parser {case.parser}")


def test_the_catalog_covers_every_parser() -> None:
    assert {c.parser for c in CATALOG} == {"json_page", "soap", "yaml", "webhook", "sql"}
    assert len({c.id for c in CATALOG}) == len(CATALOG), "catalog ids must be unique"


# == path traversal in event ids ======================================================================================
HOSTILE_IDS = ["../../etc/passwd", "evt/../../x", "..\\..\\windows\\x", "/absolute/path", "a\x00b", ".json",
               "CON", "%2e%2e%2fx", "x" * 5000, "ok-id.tmp", "", " "]


def _event(provider: str, event_id: str) -> tuple[bytes, dict[str, str]]:
    """A valid event of `provider` whose id (in the body or a header) is `event_id`."""
    if provider == "stripe":
        return _page({"id": event_id or "e", "type": "charge.succeeded"}), {}
    if provider == "square":
        return _page({"event_id": event_id or "e", "type": "payment.created", "data": {}}), {}
    if provider == "hubspot":
        return _page([{"eventId": event_id, "subscriptionType": "contact.creation"}]), {}
    if provider == "quickbooks":
        return _page([{"specversion": "1.0", "id": event_id or "e", "type": "qbo.invoice.updated.v1"}]), {}
    if provider == "shopify":
        return _page({"id": 7}), {"x-shopify-webhook-id": event_id or "e"}
    return _page({"email": "a@example.test"}), {"idempotency-key": event_id or "e"}  # forms


@pytest.mark.parametrize("provider", ["stripe", "square", "hubspot", "quickbooks", "shopify", "forms"])
def test_hostile_event_ids_never_leave_the_landing_folder(provider: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids come from the body (Stripe, Square, HubSpot, QuickBooks CloudEvents) or a header (Shopify, forms); each
    hostile one lands under landing/<provider>/<day>/ (as a hash when unsafe), and nothing appears anywhere else.
    Standard Webhooks ids are covered in test_webhooks_receiver.py."""
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    outside = tmp_path / "outside"
    store = outside / "deep" / "store"  # `../..` from the landing folder stays inside tmp_path, so it is visible
    receiver, _, _ = make_receiver(store, PUBLIC_URL)
    signer = _signer()
    ids = [i for i in HOSTILE_IDS if not (provider in ("shopify", "forms") and ("\x00" in i or i.strip() == ""))]
    with ReceiverServer(receiver) as server:
        for event_id in ids:
            body, extra = _event(provider, event_id)
            delivery = signer.sign(provider, body, event_id=extra.get("x-shopify-webhook-id", ""),
                                   topic="orders/create")
            headers = {**delivery.headers, **extra}
            response = httpx.post(server.url + delivery.path, content=delivery.body, headers=headers, timeout=30)
            assert response.status_code == 200, (event_id[:40], response.text)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    allowed = [(store / "landing" / provider).resolve(), (store / "seen" / provider).resolve()]
    strays = [p for p in files if not any(a in p.resolve().parents for a in allowed)]
    assert strays == [], f"files outside the landing and dedupe folders: {strays}"
    landed = sorted((store / "landing" / provider).rglob("*.json"))
    assert landed, "the hostile ids were valid events and must land (safely)"
    for path in landed:
        assert path.parent.parent == (store / "landing" / provider)
        assert "/" not in path.stem and ".." not in path.stem and "\x00" not in path.name
        assert not path.name.startswith(".")
    assert not [p for p in files if p.name.endswith(".tmp")], "no temp files left behind"
