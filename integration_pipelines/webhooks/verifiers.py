"""One verifier per signature scheme, exactly as ../shared/API_NOTES.md ("Webhook signatures") describes.

Why this shape: every verifier sees only the raw body bytes, the headers, and the URL the vendor signed (the
configured public URL, not `request.url`, which differs behind a proxy). It never parses the body, so nothing
from an unauthenticated sender reaches a JSON or XML parser. Every comparison is constant time, and every
verifier accepts a list of secrets so a secret can be rotated without rejecting in-flight events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

SIGNATURE_HEADERS = frozenset({
    "stripe-signature", "webhook-signature", "svix-signature", "x-square-hmacsha256-signature",
    "x-hubspot-signature", "x-hubspot-signature-v3", "x-shopify-hmac-sha256", "x-xero-signature",
    "intuit-signature", "authorization", "cookie",
})

# Headers that decide whether a request is authentic and which event it is. Each must appear at most once: with
# two copies, which one a verifier reads and which one names the landed file would be an accident of the code.
SINGLE_HEADERS = (SIGNATURE_HEADERS - {"authorization", "cookie"}) | frozenset({
    "webhook-id", "webhook-timestamp", "svix-id", "svix-timestamp", "x-hubspot-request-timestamp",
    "x-shopify-webhook-id", "x-shopify-event-id", "idempotency-key",
})


class Rejection(Exception):
    """A request that must not be acknowledged: `status` is the HTTP answer, `reason` the metric label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignedRequest:
    """What a verifier may look at: never the parsed body."""

    method: str
    url: str  # the public URL the vendor signed (configured base + path + query)
    headers: Mapping[str, str]  # lower-case names
    body: bytes


Verifier = Callable[[SignedRequest], None]
Clock = Callable[[], float]


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(digest: bytes) -> bytes:
    return base64.b64encode(digest)


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _header(request: SignedRequest, *names: str) -> str:
    for name in names:
        value = request.headers.get(name)
        if value:
            return value
    raise Rejection(400, "missing_header", f"missing header {names[0]}")


def _integer(value: str, what: str) -> int:
    """A timestamp header as the vendors send it: ASCII digits only. `int()` alone also takes signs, underscores
    and other scripts' digits, so two different header texts could verify as the same time."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise Rejection(400, "malformed_header", f"{what} is not a whole number")
    return int(text)


def _ascii(value: str) -> bytes:
    return value.strip().encode("utf-8", "replace")


def _any_base64_match(given: str, secrets: Sequence[str], message: bytes) -> None:
    """Base64 HMAC-SHA256 of `message` under any of `secrets` (Square, Shopify, Xero, QuickBooks, HubSpot)."""
    received = _ascii(given)
    if not any(_same(_b64(_hmac(secret.encode(), message)), received) for secret in secrets):
        raise Rejection(401, "bad_signature", "signature does not match")


# -- Stripe -------------------------------------------------------------------------------------------
def stripe_verifier(secrets: Sequence[str], tolerance: int = 300, clock: Clock = time.time) -> Verifier:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `"<t>." + body`; the key is the whole `whsec_…`
    string, not decoded. Older than `tolerance` seconds is a replay."""

    def verify(request: SignedRequest) -> None:
        header = _header(request, "stripe-signature")
        timestamp: int | None = None
        candidates: list[bytes] = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                timestamp = _integer(value, "the t= timestamp of Stripe-Signature")
            elif key == "v1":
                candidates.append(_ascii(value))
        if timestamp is None or not candidates:
            raise Rejection(400, "malformed_header", "Stripe-Signature lacks t= or v1=")
        signed = str(timestamp).encode() + b"." + request.body
        expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest().encode() for s in secrets]
        if not any(_same(e, c) for e in expected for c in candidates):
            raise Rejection(401, "bad_signature", "no v1 signature matches")
        if timestamp < clock() - tolerance:
            raise Rejection(401, "stale_timestamp", "timestamp outside the tolerance zone")

    return verify


# -- Standard Webhooks (Svix) -------------------------------------------------------------------------
def _standard_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret must be base64 (optionally prefixed whsec_)") from exc


def standard_verifier(secrets: Sequence[str], tolerance: int = 300, clock: Clock = time.time) -> Verifier:
    """`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> …` (or `svix-*`) over
    `"<id>.<timestamp>." + body`; key = base64-decode(secret without `whsec_`); ±tolerance both ways."""
    keys = [_standard_key(s) for s in secrets]

    def verify(request: SignedRequest) -> None:
        msg_id = _header(request, "webhook-id", "svix-id")
        stamp = _header(request, "webhook-timestamp", "svix-timestamp")
        header = _header(request, "webhook-signature", "svix-signature")
        timestamp = _integer(stamp, "webhook-timestamp")
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        expected = [_b64(_hmac(key, signed)) for key in keys]
        given = [_ascii(part.split(",", 1)[1]) for part in header.split() if part.startswith("v1,")]
        if not any(_same(e, g) for e in expected for g in given):
            raise Rejection(401, "bad_signature", "no v1 signature matches")
        now = clock()
        if timestamp < now - tolerance:
            raise Rejection(401, "stale_timestamp", "message timestamp too old")
        if timestamp > now + tolerance:
            raise Rejection(401, "future_timestamp", "message timestamp too new")

    return verify


# -- Square ---------------------------------------------------------------------------------------------
def square_verifier(secrets: Sequence[str]) -> Verifier:
    """`x-square-hmacsha256-signature` = base64 HMAC-SHA256(notification URL exactly as configured + body)."""

    def verify(request: SignedRequest) -> None:
        header = _header(request, "x-square-hmacsha256-signature")
        _any_base64_match(header, secrets, request.url.encode() + request.body)

    return verify


# -- HubSpot v3 -----------------------------------------------------------------------------------------
def hubspot_verifier(secrets: Sequence[str], tolerance: int = 300, clock: Clock = time.time) -> Verifier:
    """`X-HubSpot-Signature-v3` = base64 HMAC-SHA256(client secret, METHOD + URI + body + timestamp);
    `X-HubSpot-Request-Timestamp` is in **milliseconds**; older than 5 minutes is a replay."""

    def verify(request: SignedRequest) -> None:
        header = _header(request, "x-hubspot-signature-v3")
        stamp = _header(request, "x-hubspot-request-timestamp")
        millis = _integer(stamp, "X-HubSpot-Request-Timestamp")
        message = request.method.upper().encode() + request.url.encode() + request.body + stamp.encode()
        _any_base64_match(header, secrets, message)
        if millis / 1000 < clock() - tolerance:
            raise Rejection(401, "stale_timestamp", "request timestamp older than the tolerance")

    return verify


# -- raw-body HMACs: Shopify, Xero, QuickBooks -------------------------------------------------------------
def body_hmac_verifier(header_name: str, secrets: Sequence[str]) -> Verifier:
    """base64 HMAC-SHA256 of the raw body in one header (Shopify, Xero, QuickBooks Online)."""

    def verify(request: SignedRequest) -> None:
        _any_base64_match(_header(request, header_name), secrets, request.body)

    return verify


# -- path tokens: web forms, Odoo -------------------------------------------------------------------------
def token_matches(given: str, tokens: Sequence[str]) -> bool:
    """Constant-time membership of an unsigned sender's secret path token."""
    received = _ascii(given)
    return any(_same(token.encode(), received) for token in tokens)
