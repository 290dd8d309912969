"""Resolve a system spec plus the environment into a configured `HttpClient`.

Sandbox or live is decided per system by its secrets: none set → the sandbox at `IP_SANDBOX_URL` with the
spec's fake values; all set → the real service; some set → a configuration error naming what is missing,
because half-configured credentials are a mistake, never an intent.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ..settings import Settings, SystemOverrides, load_overrides
from .auth import BasicAuth, BearerAuth, HeaderAuth, OAuth2Auth
from .errors import ConfigurationError
from .http import DEFAULT_RETRY_STATUSES, HttpClient, LogSink, RetryPolicy
from .ratelimit import TokenBucket
from .redaction import register_secret
from .spec import BasicAuthSpec, BearerAuthSpec, HeaderAuthSpec, OAuth2AuthSpec, System, render_template


@dataclass(frozen=True)
class ResolvedSystem:
    system: System
    mode: Literal["sandbox", "live"]
    base_url: str
    token_url: str | None
    values: dict[str, str]
    overrides: SystemOverrides

    def page_size(self, default: int) -> int:
        return self.overrides.page_size or default

    @property
    def public_values(self) -> dict[str, str]:
        """Values that are not secret (realm ids, tenant ids): safe for metadata and messages."""
        return {k: v for k, v in self.values.items() if not self.system.values[k].secret}


def _rebase(url: str, base: str) -> str:
    parts = urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def resolve_system(system: System, settings: Settings, environ: dict[str, str] | None = None) -> ResolvedSystem:
    env = os.environ if environ is None else environ
    overrides = load_overrides(system.name)
    secrets = {k: v for k, v in system.values.items() if v.secret}
    present = [v.env for v in secrets.values() if env.get(v.env)]
    if present and len(present) < len(secrets):
        missing = [v.env for v in secrets.values() if not env.get(v.env)]
        raise ConfigurationError(
            f"{system.title}: {', '.join(present)} set but {', '.join(missing)} not. Set all of them to use "
            f"the real {system.title}, or unset them all to use the sandbox."
        )
    mode: Literal["sandbox", "live"] = "live" if present else "sandbox"
    values: dict[str, str] = {}
    for key, spec in system.values.items():
        # In live mode every value must come from the environment: a sandbox default (a fake realm id, a
        # `.invalid` host) would send real credentials to the wrong place.
        value = env.get(spec.env) or (spec.sandbox if mode == "sandbox" else "")
        if not value:
            raise ConfigurationError(f"{system.title}: set {spec.env} ({spec.description or key}).")
        if spec.secret:
            register_secret(value)
        values[key] = value
    if mode == "live":
        base_url = overrides.base_url or render_template(system.base_url, values, where=f"{system.name} base_url")
        token_url = getattr(system.auth, "token_url", None)
    else:
        base_url = overrides.base_url or settings.sandbox_url
        real_token = getattr(system.auth, "token_url", None)
        token_url = _rebase(real_token, settings.sandbox_url) if real_token else None
    token_url = overrides.token_url or token_url
    return ResolvedSystem(system, mode, base_url, token_url, values, overrides)


def build_auth(resolved: ResolvedSystem) -> httpx.Auth | None:
    spec, values, system = resolved.system.auth, resolved.values, resolved.system
    if isinstance(spec, BearerAuthSpec):
        return BearerAuth(values[spec.token])
    if isinstance(spec, HeaderAuthSpec):
        return HeaderAuth(spec.header, values[spec.value], spec.prefix)
    if isinstance(spec, BasicAuthSpec):
        return BasicAuth(values[spec.username], values[spec.password])
    if isinstance(spec, OAuth2AuthSpec):
        assert resolved.token_url is not None
        return OAuth2Auth(
            system=system.title,
            token_url=resolved.token_url,
            client_id=values[spec.client_id],
            client_secret=values[spec.client_secret],
            refresh_token=values[spec.refresh_token] if spec.refresh_token else None,
            grant_type=spec.grant_type,
            scope=spec.scope,
            client_auth=spec.client_auth,
            instance_url_field=spec.instance_url_field,
            credential_hint=system.credential_hint(),
        )
    return None


def _rate_limit_detector(system: System) -> Callable[[httpx.Response], bool] | None:
    markers = system.rate_limit_markers
    if not markers:
        return None

    def detect(response: httpx.Response) -> bool:
        return any(response.status_code == status and marker in response.text for status, marker in markers)

    return detect


def build_client(
    resolved: ResolvedSystem,
    *,
    log: LogSink | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> HttpClient:
    system, overrides = resolved.system, resolved.overrides
    attempts = (overrides.max_retries + 1) if overrides.max_retries is not None else system.max_attempts
    rate = overrides.requests_per_second or system.requests_per_second
    headers = render_template(dict(system.headers), resolved.values, where=f"{system.name} headers")
    return HttpClient(
        system=system.title,
        base_url=resolved.base_url,
        auth=build_auth(resolved),
        retry=RetryPolicy(
            max_attempts=attempts,
            backoff_base=overrides.backoff_base_seconds if overrides.backoff_base_seconds is not None else 0.5,
            backoff_cap=overrides.backoff_cap_seconds if overrides.backoff_cap_seconds is not None else 30.0,
            retry_statuses=DEFAULT_RETRY_STATUSES | frozenset(system.extra_retry_statuses),
        ),
        rate_limiter=TokenBucket(rate, burst=system.burst, sleep=sleep),
        timeout=overrides.timeout_seconds,
        headers=headers,
        error_message_paths=system.error_message_paths,
        credential_hint=system.credential_hint(),
        is_rate_limited=_rate_limit_detector(system),
        transport=transport,
        sleep=sleep,
        rng=rng or random.Random(),
        log=log,
        log_every_request=overrides.log_requests,
    )
