"""The one HTTP client every REST system uses.

Retries follow the AWS "full jitter" backoff (sleep uniform(0, min(cap, base * 2**n))), never shorter than a
`Retry-After` the server sent; only 429, 5xx, 408, timeouts and dropped connections are retried, because a
400/401/403/404/422 will fail the same way every time. Every attempt is logged with secrets redacted.

A request that is not safe to repeat (`replay_safe=False`: a create without an idempotency key, such as an Odoo
JSON-RPC `create` or an email) is retried only when the service provably did not process it: the connection was
never made (connect error or connect timeout), or the service answered 429 (or a rate-limit marker), which refuses
the request before doing anything. After a 5xx, a dropped connection or a read timeout the request may have been
applied; repeating it could create a second record, so the client raises `OutcomeUnknownError` instead and the
caller decides (the sync engine looks the record up, or holds it for an operator).
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import tenacity

from .errors import ApiError, AuthError, ConnectorError, RetriesExhaustedError, TransientError, UnreachableError
from .ratelimit import TokenBucket
from .redaction import redact, redact_url

logger = logging.getLogger("integration_pipelines.http")

DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
_MAX_HONORED_RETRY_AFTER = 300.0


class NotProcessedError(TransientError):
    """A transient failure after which the service provably did not apply the request: no connection was made, or
    it answered 429 / a rate-limit marker. Always safe to retry, even for a request that is not idempotent."""


class OutcomeUnknownError(ConnectorError):
    """A request that is not safe to repeat failed after it may have reached the service (5xx, a dropped
    connection, a read timeout, an unreadable success answer): it may or may not have been applied."""


class LogSink(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    """A system's retry budget: attempts in all (first try included) and the backoff curve."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(n-1))) for the n-th retry."""
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (retry_number - 1)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def json_path(document: Any, path: str | Sequence[str]) -> Any:
    """Walk a dotted path (`paging.next.after`, `Fault.Error.0.Message`) through dicts and lists."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    node = document
    for part in parts:
        if part == "":
            continue
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


@dataclass
class HttpClient:
    """A configured client for one system: base URL, auth, retries, rate limit, error vocabulary.

    `error_message_paths` are where the vendor puts a readable message in an error body; the first one
    present wins. `credential_hint` names the environment variables to fix when the service rejects us.
    """

    system: str
    base_url: str
    auth: httpx.Auth | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limiter: TokenBucket | None = None
    timeout: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    error_message_paths: Sequence[str] = ("error.message", "message", "error")
    credential_hint: str = ""
    is_rate_limited: Callable[[httpx.Response], bool] | None = None
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    log: LogSink | None = None
    log_every_request: bool = False
    env_prefix: str = ""  # the system's variables' prefix (`QUICKBOOKS`): messages name real variables
    #: URL prefix → the variable it comes from (`STRIPE_BASE_URL`, `IP_SANDBOX_URL`, `XERO_TOKEN_URL`): a run that
    #: cannot connect names what to fix, without the CLI's help (`runtime.build_client` fills it)
    url_variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=self.auth,
            timeout=self.timeout,
            headers={"User-Agent": "integration-pipelines/0.1", **dict(self.headers)},
            transport=self.transport,
            follow_redirects=False,
            verify=_default_ssl_context(),
        )
        self.requests_sent = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request loop --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool = True,
    ) -> httpx.Response:
        """Send one logical request, retrying transient failures within the system's budget.

        `replay_safe=False` (a write that creates without an idempotency key) retries only failures the service
        provably did not process, and raises `OutcomeUnknownError` when it may have been applied."""
        attempt_number = 0

        def wait(retry_state: tenacity.RetryCallState) -> float:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            delay = self.retry.backoff(retry_state.attempt_number, self.rng)
            if isinstance(error, TransientError) and error.retry_after is not None:
                delay = max(delay, min(error.retry_after, _MAX_HONORED_RETRY_AFTER))
            return delay

        def one_attempt() -> httpx.Response:
            nonlocal attempt_number
            attempt_number += 1
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            return self._send_once(method, url, attempt_number, params, json, data, content, headers)

        def retryable(error: BaseException) -> bool:
            return isinstance(error, NotProcessedError) or (replay_safe and isinstance(error, TransientError))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(one_attempt)
        except TransientError as last:
            cause = last.__cause__
            if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)):  # never connected, on any attempt
                variable = self._url_variable(cause, url)
                raise UnreachableError(self.system, self._unreachable(method, url, cause, attempt_number, variable),
                                       url_variable=variable) from last
            if not retryable(last):
                raise OutcomeUnknownError(
                    self.system,
                    f"{self.system} {method} {redact_url(url)} may or may not have been applied: {last}. It is "
                    "not repeated automatically, because it is not safe to repeat (no idempotency key).",
                ) from last
            raise RetriesExhaustedError(
                self.system,
                f"{self.system} {method} {redact_url(url)} still failing after {attempt_number} attempts: "
                f"{last}. The service may be degraded; rerun later, or raise "
                f"{self.env_prefix or self.system.upper().replace(' ', '_')}_MAX_RETRIES to retry longer.",
            ) from last

    def _url_variable(self, cause: httpx.HTTPError, url: str) -> str:
        """The variable the failed request's URL comes from: the longest matching prefix of `url_variables`, so a
        token endpoint on another host names its own variable; `<PREFIX>_BASE_URL` when nothing matches."""
        try:
            failed = str(cause.request.url)
        except RuntimeError:  # an error raised without its request
            failed = str(self._client.base_url.join(url))
        matches = [(len(prefix), variable) for prefix, variable in self.url_variables.items()
                   if prefix and failed.startswith(prefix.rstrip("/"))]
        if matches:
            return max(matches)[1]
        return f"{self.env_prefix or self.system.upper().replace(' ', '_')}_BASE_URL"

    def _unreachable(self, method: str, url: str, cause: httpx.HTTPError, attempts: int, variable: str) -> str:
        """One paragraph for a connection that was never made: where, why (the OS's or TLS's own words), and the
        variable to check. Only the URL's origin is shown in full; the path has its query redacted."""
        try:
            target = cause.request.url
        except RuntimeError:
            target = self._client.base_url.join(url)
        origin = f"{target.scheme}://{target.netloc.decode('ascii', 'replace').rsplit('@', 1)[-1]}"
        return redact(
            f"Could not connect to {self.system} at {origin} ({type(cause).__name__}: {cause}; {method} "
            f"{redact_url(url)}, {attempts} attempt{'s' if attempts != 1 else ''}). The URL comes from {variable}: "
            "check it, and that the service is up and reachable from here."
        )

    def _send_once(
        self,
        method: str,
        url: str,
        attempt: int,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        started = time.monotonic()
        shown = redact_url(str(httpx.URL(url).copy_merge_params(params or {})))
        try:
            self.requests_sent += 1
            response = self._client.request(
                method, url, params=params, json=json, data=data, content=content, headers=headers
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            ms = (time.monotonic() - started) * 1000
            self._log("warning", method, shown, type(exc).__name__, attempt, ms)
            # no connection, no request: only these prove the service never saw it
            never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
            raise (NotProcessedError if never_sent else TransientError)(
                self.system, f"{type(exc).__name__} talking to {self.system} ({method} {shown}): {exc}"
            ) from exc
        ms = (time.monotonic() - started) * 1000
        status = response.status_code
        self._log("debug" if status < 400 else "warning", method, shown, status, attempt, ms)
        rate_limited = status == 429 or bool(self.is_rate_limited and self.is_rate_limited(response))
        if status in self.retry.retry_statuses or rate_limited:
            raise (NotProcessedError if rate_limited else TransientError)(
                self.system,
                f"{self.system} answered {status} to {method} {shown}: {self._message(response)}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise AuthError(
                self.system,
                f"{self.system} rejected our credentials ({status} on {method} {shown}: "
                f"{self._message(response)}). {self.credential_hint}",
            )
        if status >= 400:
            raise ApiError(
                self.system,
                f"{self.system} refused {method} {shown} with {status}: {self._message(response)}",
                status=status,
                body=response.text[:2000],
            )
        return response

    def _message(self, response: httpx.Response) -> str:
        """The vendor's own error message when it has one, else an excerpt of the body."""
        try:
            body = response.json()
        except ValueError:
            return redact(response.text[:300].strip() or response.reason_phrase)
        for path in self.error_message_paths:
            found = json_path(body, path)
            if found and not isinstance(found, (dict, list)):
                return redact(str(found))
            if isinstance(found, (dict, list)) and found:
                return redact(str(found)[:300])
        return redact(str(body)[:300])

    def _log(self, level: str, method: str, shown: str, status: object, attempt: int, ms: float) -> None:
        """Every request goes to the `integration_pipelines.http` logger; only the ones worth a look (retries,
        errors) also go to the run's log. A line per page in the run log costs an event-log write per page
        (a 500k-record read is 5,000 of them) and buries the warnings; the run reports pages and requests in
        its metadata instead, and `<SYSTEM>_LOG_REQUESTS=true` (or this logger at DEBUG) shows every request."""
        line = "%s %s %s -> %s attempt=%d %.0fms"
        args = (self.system, method, shown, status, attempt, ms)
        getattr(logger, level)(line, *args)
        if self.log is not None and (level != "debug" or self.log_every_request):
            getattr(self.log, "info" if level == "debug" else level)(redact(line % args))


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's own default context (certifi's roots, SSL_CERT_FILE/SSL_CERT_DIR honoured), built once per process:
    loading the roots takes ~40 ms, and a run builds a client per system and stream (an event lane batch several)."""
    return httpx.create_ssl_context()
