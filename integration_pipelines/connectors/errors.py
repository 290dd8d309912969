"""The errors a connector raises. Each message says what failed, where, and what the user can do about it.

Messages are passed through `redact` at construction, so no code path can leak a secret by formatting one.
"""

from __future__ import annotations

from .redaction import redact


class ConnectorError(Exception):
    """Base class: carries the system name so that a failed step names the system at fault."""

    def __init__(self, system: str, message: str) -> None:
        self.system = system
        super().__init__(redact(message))


class AuthError(ConnectorError):
    """The service rejected a credential (401/403, or the token endpoint refused to issue a token)."""


class ApiError(ConnectorError):
    """A non-retryable error answer (400, 404, 422 ...): retrying the same request cannot succeed."""

    def __init__(self, system: str, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = redact(body)
        super().__init__(system, message)


class TransientError(ConnectorError):
    """A failure worth retrying: 429, 5xx, timeouts, dropped connections."""

    def __init__(self, system: str, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(system, message)


class RetriesExhaustedError(ConnectorError):
    """Transient failures outlasted the system's retry budget."""


class UnreachableError(RetriesExhaustedError):
    """No connection could be made at all (refused, DNS, TLS handshake, connect timeout), on every attempt.

    Distinct from a degraded service: waiting rarely helps, the URL or the network is usually wrong, so the message
    names the variable the URL comes from (`url_variable`), in a Dagster run as much as on the command line."""

    def __init__(self, system: str, message: str, *, url_variable: str = "") -> None:
        self.url_variable = url_variable
        super().__init__(system, message)


class MalformedPageError(ConnectorError):
    """A page that cannot be parsed: HTML instead of JSON, truncated JSON, a missing envelope key."""


class PaginationError(ConnectorError):
    """Pagination that would never end: a repeated cursor or request, or more pages than the hard bound."""


class ConfigurationError(Exception):
    """A setting or a spec is wrong; the message names the variable or key to fix."""
