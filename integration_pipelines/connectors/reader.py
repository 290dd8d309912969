"""Read one stream page by page: render the request, send it, validate the page, hand over its records.

Pages are yielded one at a time and never accumulated. Every pagination loop has a hard page bound and stops
with a clear error when the API sends us back to a request we already made (a repeated cursor would
otherwise loop forever).

A page whose records are exactly the previous page's is a stale answer (a cache or lagging replica serving the
last response again), not data: yielding it would load nothing new and, for offset and page-number paging, step
over the page we actually asked for. It is asked for again, a bounded number of times with the retry backoff;
only a repeat that persists stops the read, with the same "already read" loop error. Page reads are reads (list
GETs, search POSTs), so asking again is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from .errors import ApiError, AuthError, MalformedPageError, PaginationError
from .http import HttpClient, json_path
from .pagination import PageState
from .redaction import redact, redact_url
from .runtime import ResolvedSystem
from .spec import RequestTemplate, Stream, render_template, time_variables

logger = logging.getLogger("integration_pipelines.reader")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXCERPT = 240
REPEAT_REFETCHES = 2
"""How many times a page that repeats the previous page's records is asked for again before the read stops."""


@dataclass(frozen=True)
class Page:
    number: int
    url: str
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class ReadWindow:
    """What part of a stream to read: a partition's time window and/or everything changed since a cursor."""

    start: datetime | None = None
    end: datetime | None = None
    cursor: datetime | None = None


_DOTNET_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


def parse_cursor(value: Any, fmt: str) -> datetime | None:
    """Turn a record's cursor field into an aware UTC datetime, whatever form the API uses."""
    if value in (None, ""):
        return None
    if fmt == "dotnet":
        match = _DOTNET_DATE.fullmatch(str(value))
        if match is None:
            raise ValueError(f"not a /Date(ms)/ value: {value!r}")
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)  # the offset is display-only
    if fmt == "unix":
        return datetime.fromtimestamp(float(value), UTC)
    if fmt == "ms":
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def template_variables(
    resolved: ResolvedSystem, stream: Stream, window: ReadWindow, session: dict[str, Any] | None = None
) -> dict[str, Any]:
    variables: dict[str, Any] = {
        **resolved.values, **(session or {}), "page_size": resolved.page_size(stream.page_size)
    }
    if window.start is not None and window.end is not None:
        variables |= time_variables("window_start", window.start) | time_variables("window_end", window.end)
    since = max((window.cursor or EPOCH) - timedelta(seconds=stream.lookback_seconds), EPOCH)
    if stream.max_history_seconds is not None:
        since = max(since, datetime.now(UTC) - timedelta(seconds=stream.max_history_seconds))
    variables |= time_variables("cursor", since)
    return variables


def choose_request(stream: Stream, window: ReadWindow) -> RequestTemplate:
    if window.cursor is not None and stream.incremental_request is not None:
        return stream.incremental_request
    return stream.request


def read_pages(
    client: HttpClient, resolved: ResolvedSystem, stream: Stream, window: ReadWindow
) -> Iterator[Page]:
    template = choose_request(stream, window)
    where = f"{resolved.system.name}/{stream.name}"
    base_vars = template_variables(resolved, stream, window, login_variables(client, resolved))
    state = stream.paginator.initial()
    state = PageState(variables={**base_vars, **state.variables})
    seen: set[str] = set()
    stale = StalePageGuard(client, resolved.system.title, where)
    for number in range(1, stream.max_pages + 1):
        method, url, params, body_kwargs = _render(template, state, where)
        fingerprint = _fingerprint(method, url, params, body_kwargs)
        if fingerprint in seen:
            raise PaginationError(
                resolved.system.title,
                f"{where}: the API sent us back to a page we already read (page {number}, "
                f"{redact_url(url)}); stopping instead of looping forever. This is a bug in the API's "
                "pagination or a changed cursor format; report it with this message.",
            )
        seen.add(fingerprint)
        asked_again = 0
        while True:
            response = client.request(method, url, params=params, **body_kwargs)
            body = _parse(response, resolved, where, number)
            records = _records(body, resolved, stream, where, number, response)
            if stale.fresh(records, number, str(response.request.url), asked_again):
                break
            asked_again += 1
        yield Page(number, redact_url(str(response.request.url)), records)
        stale.keep(records)
        next_state = stream.paginator.next_page(state, response, body, records)
        if next_state is None:
            return
        state = next_state
    raise PaginationError(
        resolved.system.title,
        f"{where}: more than {stream.max_pages} pages; stopping. Raise the stream's max_pages if this "
        "volume is real, or narrow the window (partitions).",
    )


def login_variables(client: HttpClient, resolved: ResolvedSystem) -> dict[str, Any]:
    """Run the system's login step once per client and keep what it yields (a uid, a session id)."""
    login = resolved.system.login
    if login is None:
        return {}
    cached = getattr(client, "login_variables", None)
    if cached is not None:
        return cached
    where = f"{resolved.system.name} login"
    method, url, params, body_kwargs = _render(login.request, PageState(variables=dict(resolved.values)), where)
    response = client.request(method, url, params=params, **body_kwargs)
    body = _parse(response, resolved, where, 1)
    error_path = resolved.system.body_error_path
    found = {name: json_path(body, path) for name, path in login.variables.items()}
    if (error_path and json_path(body, error_path) is not None) or any(v in (None, False) for v in found.values()):
        raise AuthError(
            resolved.system.title,
            f"{resolved.system.title} refused the login ({_excerpt(response)}). {resolved.system.credential_hint()}",
        )
    client.login_variables = found  # type: ignore[attr-defined]
    return found


def _render(
    template: RequestTemplate, state: PageState, where: str
) -> tuple[str, str, dict[str, Any] | None, dict[str, Any]]:
    variables = state.variables
    if state.url is not None:
        # next-URL styles: the server's URL already carries every parameter it needs.
        return template.method, state.url, None, _body(template, variables, state, where)
    path = render_template(template.path, variables, where=where)
    params = {**render_template(template.params, variables, where=where), **state.params}
    return template.method, path, params, _body(template, variables, state, where)


def _body(template: RequestTemplate, variables: dict[str, Any], state: PageState, where: str) -> dict:
    """Body and headers: headers are templates too (`If-Modified-Since: {cursor_http}`)."""
    headers = {k: str(v) for k, v in render_template(template.headers, variables, where=where).items()}
    if template.method == "GET":
        return {"headers": headers} if headers else {}
    if template.text_body is not None:
        return {
            "content": render_template(template.text_body, variables, where=where),
            "headers": {"Content-Type": "application/text", **headers},
        }
    body = {**render_template(template.body or {}, variables, where=where), **state.body}
    key = "data" if template.body_format == "form" else "json"
    return {key: body, "headers": headers or None}


def _fingerprint(method: str, url: str, params: dict | None, body: dict) -> str:
    payload = json.dumps([method, url, params, body.get("json"), body.get("content")], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class StalePageGuard:
    """Catches a page whose records are exactly the previous page's: a stale answer, asked for again.

    A reader calls `fresh` on every page it fetched (False: fetch the same request again) and `keep` on every page
    it yielded. Shared by the REST and SOAP readers so that both treat a lagging backend alike.
    """

    def __init__(self, client: HttpClient, title: str, where: str) -> None:
        self.client = client
        self.title = title
        self.where = where
        self.previous: list[dict[str, Any]] = []

    def fresh(self, records: list[dict[str, Any]], number: int, url: str, asked_again: int) -> bool:
        """Whether to keep this page. A repeat is logged and waited on (the retry backoff: a lagging replica needs
        a moment) and asked for again up to REPEAT_REFETCHES times; a repeat that persists raises.

        Plain equality with the previous page's records: two different pages differ in their first record's id,
        so the usual case costs one dict comparison, not a hash of the page. Empty pages are never a repeat."""
        if not records or records != self.previous:
            return True
        shown = redact_url(url)
        if asked_again >= REPEAT_REFETCHES:
            raise PaginationError(
                self.title,
                f"{self.where}: page {number} ({shown}) came back with exactly the records of page {number - 1}, "
                f"{asked_again + 1} times in a row: the API keeps sending us back to a page we already read. "
                "Stopping instead of loading that page twice and skipping the one we asked for; nothing from this "
                "read was committed. A cache or replica that lags behind clears up on its own: rerun the asset "
                "later. If it persists, the API ignores the paging parameter or changed its format; report it with "
                "this message.",
            )
        line = (f"{self.where}: page {number} ({shown}) repeated the previous page's records; asking again "
                f"({asked_again + 1}/{REPEAT_REFETCHES})")
        logger.warning(line)
        if self.client.log is not None:
            self.client.log.warning(line)
        self.client.sleep(self.client.retry.backoff(asked_again + 1, self.client.rng))
        return False

    def keep(self, records: list[dict[str, Any]]) -> None:
        """Remember the page just yielded (one page: the reader still never accumulates)."""
        self.previous = records


def _excerpt(response: httpx.Response) -> str:
    text = response.text
    return redact(text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else ""))


# A JSON number of 19+ digits may not fit 64 bits, and orjson would turn it into a float and lose digits. Any run
# of 19 digits (in a string too) sends the page to the standard library; mapping digits to "0" and searching
# is ~10x faster than a regular expression over a 100 KB page.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


def _decode_json(response: httpx.Response) -> Any:
    """orjson for speed (page parsing is on every record's path); the standard library where orjson would
    change a value (integers beyond 64 bits) or refuses what `json` accepts (NaN, a non-UTF-8 charset)."""
    content = response.content
    if content.translate(_DIGITS_TO_ZERO).find(_LONG_DIGIT_RUN) < 0:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and its error is the one the user reads
    return response.json()


def _parse(response: httpx.Response, resolved: ResolvedSystem, where: str, number: int) -> Any:
    try:
        return _decode_json(response)
    except (ValueError, RecursionError) as exc:  # RecursionError: `[[[[…` nested deeper than the decoder goes
        raise MalformedPageError(
            resolved.system.title,
            f"{where}: page {number} from {redact_url(str(response.request.url))} is not valid JSON "
            f"({type(exc).__name__}: {exc}); content-type {response.headers.get('content-type')!r}. "
            f"Body starts: {_excerpt(response)!r}. Nothing from this read was committed; rerun the "
            "asset once the service answers normally.",
        ) from exc


def _records(
    body: Any, resolved: ResolvedSystem, stream: Stream, where: str, number: int, response: httpx.Response
) -> list[dict[str, Any]]:
    error_path = resolved.system.body_error_path
    if error_path and json_path(body, error_path) is not None:
        raise ApiError(
            resolved.system.title,
            f"{where}: {resolved.system.title} answered page {number} with an error: "
            f"{redact(str(json_path(body, error_path))[:500])}",
            status=response.status_code,
            body=response.text[:2000],
        )

    def malformed(what: str) -> MalformedPageError:
        return MalformedPageError(
            resolved.system.title,
            f"{where}: page {number} from {redact_url(str(response.request.url))} {what}. "
            f"Body starts: {_excerpt(response)!r}. Nothing from this read was committed.",
        )

    if stream.envelope_path and json_path(body, stream.envelope_path) is None:
        raise malformed(f"has no {stream.envelope_path!r} envelope")
    if stream.records_path:
        records = json_path(body, stream.records_path)
        if records is None:
            if stream.envelope_path:  # the envelope is there, the list is not: an empty result
                return []
            raise malformed(f"has no {stream.records_path!r} list")
    else:
        records = body
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise malformed(f"has {stream.records_path or 'a body'} that is not a list of objects")
    problem = primary_key_problem(records, stream.primary_key)
    if problem:
        raise malformed(problem)
    return records


def primary_key_problem(records: list[dict[str, Any]], primary_key: str) -> str | None:
    """What is wrong with a page's primary keys, if anything (the REST and SOAP readers both refuse such pages):
    a record without one, or one whose key is an object or array, whose text would depend on key order."""
    for record in records:
        key = json_path(record, primary_key)
        if key in (None, ""):
            return f"has a record without its primary key {primary_key!r}"
        if isinstance(key, dict | list):
            return (f"has a record whose primary key {primary_key!r} is a JSON "
                    f"{'object' if isinstance(key, dict) else 'array'}, not a single value; point the stream's "
                    "primary_key at the field inside it that identifies the record")
    return None
