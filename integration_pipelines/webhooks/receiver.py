"""The webhook receiver: a Starlette app with one endpoint per provider.

Order of work for every request, and why:
1. cap the body (`Content-Length` first, then while streaming): an unauthenticated sender gets no free memory;
2. verify the raw bytes (signature, replay window, token or org id) before anything parses them;
3. parse and identify the event (its provider id, sanitised for use as a file name);
4. land it durably (temp file, fsync, rename, directory fsync) and only then answer 2xx, so an acknowledged
   event survives a crash; a duplicate id is acknowledged and not written twice.
Rejections write nothing, are counted on `/metrics` per provider and reason, and are logged without secrets.

Each provider is live, sandbox or off (`config.provider_states`, decided once when the receiver is built): a
provider that is off because its secret is not configured while its system is live keeps its route and answers
every request 503 `not_configured` with a log line naming the variable, so the vendor retries until it is set
instead of the receiver accepting the sandbox's published secret.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..connectors.redaction import redact
from ..settings import Settings, load_settings
from . import verifiers as v
from .config import (
    ProviderStatus,
    WebhookSecrets,
    WebhookSettings,
    check_public_secrets,
    load_webhook_secrets,
    load_webhook_settings,
    provider_states,
)
from .events import MalformedPayload, identify, parse_body
from .landing import LandingStore, open_landing_store, safe_event_id

logger = logging.getLogger("integration_pipelines.webhooks")

SOAP_ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)
_SESSION_ID = re.compile(rb"(<(?:\w+:)?SessionId\b[^>]*>)[^<]*(</(?:\w+:)?SessionId>)")
_AUDIT_DROP = ("signature", "hmac", "authorization", "cookie", "token", "secret", "api-key", "apikey")


class Metrics:
    """Prometheus-style counters, per provider and outcome/reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()

    def reject(self, provider: str, reason: str) -> None:
        with self._lock:
            self.rejected[(provider, reason)] += 1

    def accept(self, provider: str, duplicate: bool) -> None:
        with self._lock:
            (self.duplicates if duplicate else self.accepted)[provider] += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP webhook_events_accepted_total Verified events landed durably.",
                     "# TYPE webhook_events_accepted_total counter"]
            lines += [f'webhook_events_accepted_total{{provider="{p}"}} {n}' for p, n in sorted(self.accepted.items())]
            lines += ["# HELP webhook_events_duplicate_total Verified events whose id was already landed.",
                      "# TYPE webhook_events_duplicate_total counter"]
            lines += [f'webhook_events_duplicate_total{{provider="{p}"}} {n}'
                      for p, n in sorted(self.duplicates.items())]
            lines += ["# HELP webhook_requests_rejected_total Requests refused, by reason; nothing was written.",
                      "# TYPE webhook_requests_rejected_total counter"]
            lines += [f'webhook_requests_rejected_total{{provider="{p}",reason="{r}"}} {n}'
                      for (p, r), n in sorted(self.rejected.items())]
        return "\n".join(lines) + "\n"


@dataclass
class Provider:
    name: str
    verify: Callable[[Request, v.SignedRequest], None]
    accepted: Callable[[bool], Response]


def _json_ack(duplicate: bool) -> Response:
    return JSONResponse({"received": True, "duplicate": duplicate})


def _empty_ack(duplicate: bool) -> Response:
    return Response(status_code=200)


def _soap_ack(duplicate: bool) -> Response:
    return Response(SOAP_ACK, media_type="text/xml; charset=utf-8")


def _signed_only(verifier: v.Verifier) -> Callable[[Request, v.SignedRequest], None]:
    def verify(request: Request, signed: v.SignedRequest) -> None:
        verifier(signed)
    return verify


def _path_token(tokens: list[str]) -> Callable[[Request, v.SignedRequest], None]:
    def verify(request: Request, signed: v.SignedRequest) -> None:
        if not v.token_matches(request.path_params.get("token", ""), tokens):
            raise v.Rejection(404, "unknown_token", "unknown path token")
    return verify


def _salesforce(org_ids: list[str]) -> Callable[[Request, v.SignedRequest], None]:
    def verify(request: Request, signed: v.SignedRequest) -> None:
        try:
            org = parse_body("salesforce", signed.body).get("OrganizationId", "")
        except MalformedPayload:
            raise v.Rejection(400, "malformed", "not a Salesforce outbound message") from None
        # 15- and 18-character forms of one org id share their first 15 characters
        if not any(v.token_matches(org, [o]) or v.token_matches(org[:15], [o[:15]]) for o in org_ids):
            raise v.Rejection(403, "unknown_organization", "OrganizationId is not allowed")
    return verify


def build_providers(secrets: WebhookSecrets, config: WebhookSettings,
                    states: Mapping[str, ProviderStatus] | None = None) -> dict[str, Provider]:
    """The providers that accept requests (live or sandbox in `states`); a disabled one has no route, so its
    endpoint is a 404, and one that is off for want of a secret is answered by `Receiver.refuse`."""
    s = secrets.values
    states = states if states is not None else provider_states(config, secrets)
    enabled = [name for name in config.enabled_providers() if states[name].state != "off"]
    factories: dict[str, Callable[[], Provider]] = {
        "stripe": lambda: Provider("stripe", _signed_only(v.stripe_verifier(
            s("stripe_webhook_secret"), config.stripe_tolerance_seconds)), _json_ack),
        "standard": lambda: Provider("standard", _signed_only(v.standard_verifier(
            s("standard_webhook_secret"), config.standard_tolerance_seconds)), _json_ack),
        "square": lambda: Provider("square", _signed_only(v.square_verifier(
            s("square_webhook_signature_key"))), _json_ack),
        "hubspot": lambda: Provider("hubspot", _signed_only(v.hubspot_verifier(
            s("hubspot_webhook_secret"), config.hubspot_tolerance_seconds)), _json_ack),
        "shopify": lambda: Provider("shopify", _signed_only(v.body_hmac_verifier(
            "x-shopify-hmac-sha256", s("shopify_webhook_secret"))), _json_ack),
        "xero": lambda: Provider("xero", _signed_only(v.body_hmac_verifier(
            "x-xero-signature", s("xero_webhook_key"))), _empty_ack),
        "quickbooks": lambda: Provider("quickbooks", _signed_only(v.body_hmac_verifier(
            "intuit-signature", s("quickbooks_webhook_verifier_token"))), _json_ack),
        "salesforce": lambda: Provider("salesforce", _salesforce(s("salesforce_webhook_organization_ids")), _soap_ack),
        "forms": lambda: Provider("forms", _path_token(s("forms_webhook_token")), _json_ack),
        "odoo": lambda: Provider("odoo", _path_token(s("odoo_webhook_token")), _json_ack),
    }
    return {name: factories[name]() for name in enabled}


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def audit_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers worth keeping for audit: everything except signatures, credentials and cookies."""
    return {k: val for k, val in sorted(headers.items()) if not any(word in k for word in _AUDIT_DROP)}


def envelope(provider: str, event_id: str, kind: str, received_at: datetime, headers: dict[str, str],
             body: bytes, verified_as: str | None = None) -> bytes:
    """The landed file: provider, received time, audit headers, the raw body (text, or base64), and
    `verified_as`: whether a live or a sandbox secret verified it (a change poll: the mode it read in). Ingest
    writes that mode into every row the event yields, so sandbox events never pass for real ones."""
    if provider == "salesforce":
        body = _SESSION_ID.sub(rb"\1***\2", body)
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        import base64

        text, encoding = base64.b64encode(body).decode(), "base64"
    document = {"provider": provider, "event_id": event_id, "type": kind,
                "received_at": received_at.isoformat(), "headers": audit_headers(headers),
                "body": text, "body_encoding": encoding}
    if verified_as is not None:
        document["verified_as"] = verified_as
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")


class Receiver:
    """The receiver's state: settings, secrets, the landing store and the metrics."""

    def __init__(self, store: LandingStore, config: WebhookSettings, secrets: WebhookSecrets,
                 clock: Callable[[], datetime] | None = None, *, states: Mapping[str, ProviderStatus] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.config = config
        #: every provider's state (live, sandbox, off): what the start lines print and what the routes do
        self.states = dict(states) if states is not None else provider_states(config, secrets, environ)
        self.providers = build_providers(secrets, config, self.states)
        self.refused = {name: status for name, status in self.states.items()
                        if status.state == "off" and not status.disabled}
        self.metrics = Metrics()
        self.clock = clock or (lambda: datetime.now(UTC))

    def _reject(self, provider: str, rejection: v.Rejection, request: Request) -> Response:
        self.metrics.reject(provider, rejection.reason)
        client = request.client.host if request.client else "?"
        logger.warning(redact(f"webhook {provider} rejected from {client}: {rejection.reason} ({rejection})"))
        if provider == "xero" and rejection.status == 401:
            return Response(status_code=401)  # Xero's handshake wants an empty 401
        return JSONResponse({"error": rejection.reason}, status_code=rejection.status)

    async def handle(self, request: Request) -> Response:
        name = request.url.path.split("/")[2]
        provider = self.providers[name]
        try:
            try:
                body = await _read_capped(request, self.config.max_body_bytes)
            except _TooLarge:
                raise v.Rejection(413, "too_large", "body exceeds the size limit") from None
            headers = {k.lower(): val for k, val in request.headers.items()}
            repeated = sorted({name for name, _ in request.headers.items()
                               if name.lower() in v.SINGLE_HEADERS and len(request.headers.getlist(name)) > 1})
            if repeated:
                raise v.Rejection(400, "duplicate_header", f"header {', '.join(repeated)} sent more than once")
            signed = v.SignedRequest(request.method, self.config.endpoint_url(request.url.path, request.url.query),
                                     headers, body)
            provider.verify(request, signed)
            try:
                payload = parse_body(name, body, headers.get("content-type", ""))
                if name == "xero" and isinstance(payload, dict) and payload.get("events") == []:
                    return Response(status_code=200)  # intent to receive: valid signature, nothing to land
                raw_id, kind = identify(name, headers, payload, body)
            except MalformedPayload as exc:
                raise v.Rejection(400, "malformed", str(exc)) from None
        except v.Rejection as rejection:
            return self._reject(name, rejection, request)
        event_id = safe_event_id(raw_id)
        received = self.clock()
        data = envelope(name, event_id, kind, received, headers, body, verified_as=self.states[name].state)
        written = await run_in_threadpool(self.store.land, name, received.strftime("%Y-%m-%d"), event_id, data)
        self.metrics.accept(name, duplicate=not written)
        logger.info(f"webhook {name} {kind} {event_id}: {'landed' if written else 'duplicate, acknowledged'}")
        return provider.accepted(not written)

    async def refuse(self, request: Request) -> Response:
        """A provider that is off for want of a secret: 503 (the vendor retries), and a log line naming it."""
        name = request.url.path.split("/")[2]
        status = self.refused[name]
        self.metrics.reject(name, "not_configured")
        logger.warning(f"webhook {name} refused: not configured; {status.why}")
        return JSONResponse({"error": "not_configured"}, status_code=503)

    def start_lines(self) -> list[str]:
        """One line per provider (provider, state, and for an off one the variable that switches it on)."""
        return [status.line() for status in self.states.values()]

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "providers": sorted(self.providers)})

    def app(self) -> Starlette:
        routes = [Route("/healthz", self.health), Route("/metrics", self.metrics_endpoint)]
        for name in [*self.providers, *self.refused]:
            path = f"/webhooks/{name}/{{token}}" if name in ("forms", "odoo") else f"/webhooks/{name}"
            routes.append(Route(path, self.handle if name in self.providers else self.refuse, methods=["POST"]))
        application = Starlette(routes=routes)
        application.state.receiver = self
        return application


def build_receiver(settings: Settings | None = None, config: WebhookSettings | None = None,
                   secrets: WebhookSecrets | None = None) -> Receiver:
    """The production receiver; refuses (ConfigurationError) to be reachable from outside with sandbox secrets."""
    settings = settings or load_settings()
    config = config or load_webhook_settings()
    secrets = secrets or load_webhook_secrets()
    states = provider_states(config, secrets)
    check_public_secrets(config, secrets, states)
    store = open_landing_store(settings, config)
    return Receiver(store, config, secrets, states=states)


def create_app() -> Starlette:
    """uvicorn factory: `uvicorn --factory integration_pipelines.webhooks.receiver:create_app`. The providers'
    states go to the receiver's logger (`webhooks serve` prints them instead)."""
    receiver = build_receiver()
    for line in receiver.start_lines():  # WARNING: under uvicorn's logging config only that reaches the console
        logger.warning(f"webhook provider {line}")
    return receiver.app()
