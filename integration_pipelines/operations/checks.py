"""`systems check`: one authenticated, read-only request per system and credential set, reported for a person.

What an operator of Airbyte's "test connection" or Hightouch's "test source" expects: is the service reachable,
are the credentials accepted, which mode (sandbox or live) is in use, how much of the rate limit is left, and when
it fails the vendor's own words plus the variable to fix. The request is the first page of the system's first
stream with a page size of 1 (its cheapest list call), made through the connector engine itself (auth, login step,
SOAP), with no retries: a check reports, it does not wait out an outage.

Scopes: where the vendor's token endpoint says what a token was granted (OAuth `scope`: Xero, Salesforce), the
check compares it with what the credential set needs (`System.scopes`, with what a granted scope implies) and fails
a connection that lacks one, naming the scopes and the variable; where the vendor does not say (API keys, Intuit),
the report says "not reported".

For a system with writers the check runs twice: with the read credentials (`<SYSTEM>_READ_*`, as extraction
resolves them) and with the write credentials (`<SYSTEM>_WRITE_*`, as the syncs do). The write set is tried with the
same read request (nothing is ever written), so a write-only key the vendor will not let list anything shows up as
refused, with a note saying so.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ..connectors.errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ConnectorError,
    MalformedPageError,
    PaginationError,
    TransientError,
)
from ..connectors.reader import ReadWindow, read_pages
from ..connectors.redaction import redact, redact_url
from ..connectors.runtime import Purpose, ResolvedSystem, build_client, resolve_system, url_variable
from ..connectors.spec import System
from ..settings import Settings

CHECK_TIMEOUT_SECONDS = 15.0


@dataclass
class CheckResult:
    system: str
    purpose: str
    mode: str = ""
    base_url: str = ""
    stream: str = ""
    ok: bool = False
    reachable: bool | None = None
    auth_ok: bool | None = None
    status: int | None = None
    latency_ms: int | None = None
    requests: int = 0
    rate_limit: str | None = None
    #: what the token was granted, when the vendor's token endpoint says (OAuth `scope`); None: not reported
    scopes_granted: list[str] | None = None
    scopes_missing: list[str] = field(default_factory=list)
    error: str | None = None
    fix: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def state(self) -> str:
        if self.skipped:
            return "skipped"
        if self.ok:
            return "ok"
        if self.scopes_missing:
            return "scopes missing"
        if self.reachable is False:
            return "unreachable"
        if self.auth_ok is False:
            return "auth failed"
        if self.mode == "":
            return "misconfigured"
        return "error"

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "state": self.state}


# -- which variable to fix ------------------------------------------------------------------------------------
def credential_variables_used(resolved: ResolvedSystem) -> list[str]:
    """The secret variables this resolution read (or, in sandbox mode, the ones that would switch it to live)."""
    system = resolved.system
    if resolved.mode == "sandbox":
        from ..connectors.runtime import purpose_variable

        return [f"{purpose_variable(system, v.env, resolved.purpose)} (or {v.env})"
                for v in system.values.values() if v.secret]
    return [resolved.sources.get(key, spec.env) for key, spec in system.values.items() if spec.secret]


def first_in_chain(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
                   ) -> BaseException | None:
    """The first error of `kinds` in the exception's cause/context chain (a wrapper may carry the real one)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, kinds):
            return node
        node = node.__cause__ or node.__context__
    return None


def network_cause(exc: BaseException) -> BaseException | None:
    """The httpx transport error (connect refused, DNS, timeout) behind a connector error, if there is one."""
    return first_in_chain(exc, (httpx.TransportError, httpx.TimeoutException))


# -- rate-limit headers ---------------------------------------------------------------------------------------
def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def rate_limit_headroom(headers: httpx.Headers | dict[str, str] | None) -> str | None:
    """What is left of the vendor's limit, from whichever rate-limit headers the answer carries; None if none."""
    if not headers:
        return None
    h = {k.lower(): v for k, v in headers.items()}
    parts: list[str] = []
    if "x-shopify-shop-api-call-limit" in h:  # "used/bucket"
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", h["x-shopify-shop-api-call-limit"])
        if match:
            used, size = int(match.group(1)), int(match.group(2))
            parts.append(f"{size - used}/{size} calls left in the bucket")
    if "sforce-limit-info" in h:  # "api-usage=18/100000"
        match = re.search(r"api-usage=(\d+)/(\d+)", h["sforce-limit-info"])
        if match:
            used, size = int(match.group(1)), int(match.group(2))
            parts.append(f"{size - used}/{size} API calls left today")
    remaining, most = _int(h.get("x-hubspot-ratelimit-remaining")), _int(h.get("x-hubspot-ratelimit-max"))
    if remaining is not None:
        window = _int(h.get("x-hubspot-ratelimit-interval-milliseconds"))
        per = f" per {window // 1000} s" if window else ""
        parts.append(f"{remaining}/{most if most is not None else '?'}{per}")
        daily = _int(h.get("x-hubspot-ratelimit-daily-remaining"))
        if daily is not None:
            parts.append(f"{daily}/{h.get('x-hubspot-ratelimit-daily', '?')} today")
    for header, label in (("x-minlimit-remaining", "this minute"), ("x-daylimit-remaining", "today"),
                          ("x-appminlimit-remaining", "this minute (app)")):  # Xero
        if header in h:
            parts.append(f"{h[header]} left {label}")
    for prefix in ("x-ratelimit-", "ratelimit-", "x-rate-limit-"):  # the common and the IETF draft forms
        remaining = _int(h.get(f"{prefix}remaining"))
        if remaining is not None:
            limit = h.get(f"{prefix}limit")
            parts.append(f"{remaining}/{limit.split(',')[0].split(';')[0] if limit else '?'} left")
            break
    return "; ".join(parts) or None


class _Capture(httpx.BaseTransport):
    """Keeps the last answer's status and headers (the rate-limit headers), passing everything through."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.status: int | None = None
        self.headers: httpx.Headers | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.status, self.headers = response.status_code, response.headers
        return response

    def close(self) -> None:
        self.inner.close()


# -- the check ---------------------------------------------------------------------------------------------------
def _for_check(resolved: ResolvedSystem) -> ResolvedSystem:
    """Page size 1, no retries, a short timeout: the cheapest request, reported as it is."""
    overrides = resolved.overrides.model_copy(update={
        "page_size": 1, "max_retries": 0,
        "timeout_seconds": min(resolved.overrides.timeout_seconds, CHECK_TIMEOUT_SECONDS)})
    return dataclasses.replace(resolved, overrides=overrides)


def _window() -> ReadWindow:
    end = datetime.now(UTC).replace(microsecond=0)
    return ReadWindow(start=end - timedelta(days=1), end=end)  # a partitioned stream reads one day


def check_one(system: System, settings: Settings, purpose: Purpose = "read",
              transport: httpx.BaseTransport | None = None) -> CheckResult:
    stream = system.streams[0]
    result = CheckResult(system.name, purpose, stream=stream.name)
    try:
        resolved = resolve_system(system, settings, purpose=purpose)
    except ConfigurationError as exc:
        result.error = redact(str(exc))
        result.fix = sorted(set(re.findall(rf"\b{system.env_prefix}_[A-Z0-9_]+", str(exc))))
        return result
    result.mode, result.base_url = resolved.mode, redact_url(resolved.base_url)
    checked = _for_check(resolved)
    capture = _Capture(transport or httpx.HTTPTransport())
    started = time.monotonic()
    client: Any = None
    try:
        if system.soap:
            from ..connectors.soap import build_soap_client, read_soap_pages

            client = build_soap_client(checked, transport=capture)
            pages = read_soap_pages(client, checked, stream, _window())
        else:
            client = build_client(checked, transport=capture)
            pages = read_pages(client, checked, stream, _window())
        try:
            next(iter(pages), None)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        result.ok = result.reachable = result.auth_ok = True
        _judge_scopes(result, system, purpose, getattr(getattr(client, "auth", None), "granted_scopes", None),
                      resolved)
    except AuthError as exc:
        result.reachable, result.auth_ok = True, False
        result.error = str(exc)
        result.fix = credential_variables_used(resolved)
        if purpose == "write" and resolved.mode == "live":
            result.error += (" (The write credentials were tried with a read request; a key that may only write "
                             "can be refused here and still work for the syncs.)")
    except ConnectorError as exc:
        cause = network_cause(exc)
        if cause is not None or (isinstance(exc, TransientError) and capture.status is None):
            result.reachable = False
            variable = url_variable(system, settings, resolved.mode)
            what = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            result.error = redact(f"{system.title} is not reachable at {resolved.base_url} ({what}). Is the URL "
                                  f"right? It comes from {variable}.")
            result.fix = [variable]
        else:
            result.reachable = True
            result.auth_ok = None if capture.status in (None, 429) else capture.status not in (401, 403)
            result.error = str(exc)
            if isinstance(exc, (ApiError, MalformedPageError, PaginationError)):
                result.fix = [f"{system.env_prefix}_BASE_URL"] if capture.status == 404 else []
    except ConfigurationError as exc:  # a template that needs a value this deployment lacks
        result.error = redact(str(exc))
    except httpx.HTTPError as exc:  # the engine wraps these; a bare one is a connection problem all the same
        result.reachable = False
        variable = url_variable(system, settings, resolved.mode)
        result.error = redact(f"{type(exc).__name__} talking to {resolved.base_url}: {exc}. It comes from "
                              f"{variable}.")
        result.fix = [variable]
    finally:
        if client is not None:
            client.close()
    result.latency_ms = int((time.monotonic() - started) * 1000)
    result.status = capture.status
    result.requests = getattr(getattr(client, "http", client), "requests_sent", 0) if client is not None else 0
    result.rate_limit = rate_limit_headroom(capture.headers)
    return result


def _judge_scopes(result: CheckResult, system: System, purpose: Purpose, granted: tuple[str, ...] | None,
                  resolved: ResolvedSystem) -> None:
    """Compare what the token was granted with what this credential set needs (docs/systems.md's scopes): a write
    connection without a write scope passes its read request and would fail every sync later, so the check says so
    now, naming the scopes and the variable of the connection to redo."""
    if granted is None:
        return
    result.scopes_granted = sorted(granted)
    needed = system.scopes.read if purpose == "read" else system.scopes.write
    result.scopes_missing = system.scopes.not_granted(needed, granted)
    if result.scopes_missing:
        result.ok = False
        # the connection is its refresh token: that is the variable to replace (the app's id and secret stay)
        token_key = getattr(system.auth, "refresh_token", None)
        read_from = resolved.sources.get(token_key) if resolved.mode == "live" and token_key else None
        result.fix = [read_from] if read_from else credential_variables_used(resolved)
        result.error = (f"the {purpose} connection was granted {' '.join(sorted(granted)) or 'no scopes'}, without "
                        f"{', '.join(result.scopes_missing)}: connect the app again with those scopes and put the new "
                        f"refresh token in {' or '.join(result.fix)}.")


def purposes_of(system: System) -> list[Purpose]:
    writes = bool(system.writers) or bool(system.soap and system.soap.writers)
    return ["read", "write"] if writes else ["read"]


def check_systems(systems: Iterable[System], settings: Settings, *, workers: int = 8) -> list[CheckResult]:
    """Every system's checks, a few at a time (one slow host does not hold up the rest), in a stable order."""
    systems = list(systems)
    jobs: list[tuple[System, Purpose]] = []
    results: list[CheckResult] = []
    for system in systems:
        if not settings.system_enabled(system.name):
            results.append(CheckResult(system.name, "read", skipped="disabled (IP_ENABLED_SYSTEMS or "
                                                                       f"{system.env_prefix}_ENABLED)", ok=True))
            continue
        jobs += [(system, purpose) for purpose in purposes_of(system)]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1))) as pool:
        results += list(pool.map(lambda job: check_one(job[0], settings, job[1]), jobs))
    order = {system.name: i for i, system in enumerate(systems)}
    return sorted(results, key=lambda r: (order[r.system], r.purpose != "read"))


def markdown_table(results: list[CheckResult]) -> str:
    lines = ["| system | credentials | mode | state | HTTP | ms | rate-limit headroom | scopes | fix | error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        error = (r.error or r.skipped or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.system} | {r.purpose} | {r.mode} | {r.state} | {r.status or ''} | "
                     f"{r.latency_ms if r.latency_ms is not None else ''} | {r.rate_limit or ''} | "
                     f"{scopes_text(r)} | {', '.join(r.fix)} | {error} |")
    return "\n".join(lines)


def scopes_text(result: CheckResult) -> str:
    """The scopes column: what the token was granted and what it lacks, or that the vendor does not say."""
    if result.scopes_granted is None:
        return "not reported" if result.ok or result.auth_ok else ""
    granted = " ".join(result.scopes_granted)
    return f"{granted}; missing {', '.join(result.scopes_missing)}" if result.scopes_missing else granted
