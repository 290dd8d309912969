"""Process-wide secret redaction.

Every credential value read from the environment is registered here the moment it is read, so that log lines,
exception messages and metadata can be scrubbed without each caller knowing which strings are secret.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

REDACTED = "***"
_MIN_SECRET_LENGTH = 4
_SENSITIVE_PARAM = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|apikey|signature|sig|code|auth|session)", re.IGNORECASE
)

_lock = threading.Lock()
_secrets: set[str] = set()


def encoded_forms(value: str) -> set[str]:
    """The ways a secret shows up in text besides itself: percent-encoded as a query parameter or form field
    (`quote`, `quote_plus`, upper- and lower-case hex: a key with `+/=` in a logged URL), base64 and URL-safe
    base64 with and without padding (a token inside a Basic header or a JSON document), and escaped inside a
    JSON string (a `"` or `\\` in a password; `/` written as `\\/` by some encoders)."""
    escaped = json.dumps(value)[1:-1]
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, safe="/"),
             escaped, json.dumps(value, ensure_ascii=False)[1:-1], escaped.replace("/", "\\/")}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in forms if "%" in form}
    raw = value.encode()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Remember a secret, and its encoded forms (`encoded_forms`), so that `redact` removes it from any text from
    now on, however it was written there."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        forms = encoded_forms(value)
        with _lock:
            _secrets.update(forms)


def _cut_piece(secret: str) -> int:
    """The shortest piece of a secret, cut off at the edge of a text, that still counts as the secret."""
    return max(_MIN_SECRET_LENGTH, min(8, len(secret) // 2))


def redact(text: object) -> str:
    """Return `text` with every registered secret replaced, longest first (a secret may contain another).

    A secret cut off at either end of the text also goes: callers excerpt long bodies (`text[:300]`) before
    handing them over, and the excerpt may end with the first half of a key. The piece must be a fair part of
    the secret (see `_cut_piece`), so ordinary text is left alone."""
    out = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, REDACTED)
    for secret in known:
        out = _redact_cut(out, secret)
    return out


def _redact_cut(out: str, secret: str) -> str:
    shortest = _cut_piece(secret)
    # the text ends with the secret's beginning: look for that beginning among its last len(secret) - 1 chars
    tail_start = max(0, len(out) - len(secret) + 1)
    at = out.find(secret[:shortest], tail_start)
    while at != -1:
        if secret.startswith(out[at:]):
            out = out[:at] + REDACTED
            break
        at = out.find(secret[:shortest], at + 1)
    # the text starts with the secret's end
    head = out[:len(secret) - 1]
    at = head.find(secret[-shortest:])
    while at != -1:
        if secret.endswith(head[:at + shortest]):
            return REDACTED + out[at + shortest:]
        at = head.find(secret[-shortest:], at + 1)
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
