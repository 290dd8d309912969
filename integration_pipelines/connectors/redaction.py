"""Process-wide secret redaction.

Every credential value read from the environment is registered here the moment it is read, so that log lines,
exception messages and metadata can be scrubbed without each caller knowing which strings are secret.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
_MIN_SECRET_LENGTH = 4
_SENSITIVE_PARAM = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|apikey|signature|sig|code|auth|session)", re.IGNORECASE
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it from any text from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: object) -> str:
    """Return `text` with every registered secret replaced, longest first (a secret may contain another)."""
    out = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, REDACTED)
    return out


def redact_url(url: str) -> str:
    """Drop credentials from a URL: userinfo and the values of query parameters that look sensitive."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [(k, REDACTED if _SENSITIVE_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="[]*",
    )
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))
