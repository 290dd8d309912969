"""Resolve a system spec plus the environment into a configured `HttpClient`.

Sandbox or live is decided per system by its secrets: none set → the sandbox at `IP_SANDBOX_URL` with the
spec's fake values; all set → the real service; some set → a configuration error naming what is missing,
because half-configured credentials are a mistake, never an intent.

Least privilege: a system is resolved for a purpose. Extraction resolves `purpose="read"` and reads
`<SYSTEM>_READ_<VAR>`, falling back to `<SYSTEM>_<VAR>`; syncs resolve `purpose="write"` and read
`<SYSTEM>_WRITE_<VAR>`, falling back the same way. A read never even reads a `_WRITE_` variable, so an extract run
holds no write credential when a read-only one is configured. Any credential of a system, for any purpose, means
"use the real service": a purpose whose set is then incomplete is an error, never a quiet fall-back to the sandbox
(reads from the real Stripe and writes into the sandbox would be worse than failing). Each value may also come from
`<VAR>_FILE` or the secrets manager (`connectors/secrets.py`). A live write into a warehouse holding data extracted
from a sandbox is refused (`integration_pipelines.provenance`).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ..settings import Settings, SystemOverrides, load_overrides
from .auth import BasicAuth, BearerAuth, HeaderAuth, OAuth2Auth
from .errors import ConfigurationError
from .http import DEFAULT_RETRY_STATUSES, HttpClient, LogSink, RetryPolicy
from .ratelimit import TokenBucket
from .redaction import register_secret
from .secrets import is_set, lookup
from .spec import (
    BasicAuthSpec,
    BearerAuthSpec,
    EnvValue,
    HeaderAuthSpec,
    OAuth2AuthSpec,
    System,
    check_web_url,
    render_template,
)
from .token_store import TokenStore

Purpose = Literal["read", "write"]
PURPOSES: tuple[Purpose, ...] = ("read", "write")


@dataclass(frozen=True)
class ResolvedSystem:
    system: System
    mode: Literal["sandbox", "live"]
    base_url: str
    token_url: str | None
    values: dict[str, str]
    overrides: SystemOverrides
    purpose: Purpose = "read"
    #: value key → the variable it was read from (`STRIPE_READ_API_KEY`, `STRIPE_API_KEY`); absent = sandbox default
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def credential_hint(self) -> str:
        """Which variables to check when the service refuses us: the ones this purpose actually used."""
        system = self.system
        names = [self.sources.get(key, spec.env) for key, spec in system.values.items() if spec.secret]
        if self.mode == "sandbox":
            return system.credential_hint()
        return (f"Check {', '.join(names)} (the {self.purpose} credentials; see docs/credentials.md and "
                "docs/systems.md for the scopes they need), or unset them to use the sandbox.")

    def page_size(self, default: int) -> int:
        return self.overrides.page_size or default

    @property
    def public_values(self) -> dict[str, str]:
        """Values that are not secret (realm ids, tenant ids): safe for metadata and messages."""
        return {k: v for k, v in self.values.items() if not self.system.values[k].secret}


def _rebase(url: str, base: str) -> str:
    parts = urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def purpose_variable(system: System, env: str, purpose: Purpose) -> str:
    """`STRIPE_API_KEY` → `STRIPE_READ_API_KEY` / `STRIPE_WRITE_API_KEY`."""
    prefix = f"{system.env_prefix}_"
    rest = env[len(prefix):] if env.startswith(prefix) else env
    return f"{prefix}{purpose.upper()}_{rest}"


def credential_variables(system: System) -> list[str]:
    """Every variable that can hold one of the system's secrets, for any purpose."""
    return [name for spec in system.values.values() if spec.secret
            for name in (spec.env, *(purpose_variable(system, spec.env, p) for p in PURPOSES))]


def _source(system: System, spec: EnvValue, purpose: Purpose, env: dict[str, str] | os._Environ[str]) -> str | None:
    """The variable that holds this value for `purpose`: the purpose's own, else the shared one, else None."""
    for name in (purpose_variable(system, spec.env, purpose), spec.env):
        if is_set(name, env):
            return name
    return None


def resolve_system(system: System, settings: Settings, environ: dict[str, str] | None = None, *,
                   purpose: Purpose = "read") -> ResolvedSystem:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be 'read' or 'write', not {purpose!r}")
    env = os.environ if environ is None else environ
    overrides = load_overrides(system.name)
    secrets = {k: v for k, v in system.values.items() if v.secret}
    sources = {k: _source(system, v, purpose, env) for k, v in system.values.items()}
    present = [sources[k] for k in secrets if sources[k]]
    configured = [name for name in credential_variables(system) if is_set(name, env)]
    if configured and len(present) < len(secrets):
        missing = [f"{purpose_variable(system, v.env, purpose)} (or {v.env})" for k, v in secrets.items()
                   if not sources[k]]
        raise ConfigurationError(
            f"{system.title} ({purpose}s): {', '.join(configured)} set but {', '.join(missing)} not. Set all of "
            f"them to use the real {system.title} for {purpose}s, or unset them all to use the sandbox."
        )
    mode: Literal["sandbox", "live"] = "live" if present else "sandbox"
    values: dict[str, str] = {}
    used: dict[str, str] = {}
    for key, spec in system.values.items():
        # In live mode every value must come from the environment: a sandbox default (a fake realm id, a
        # `.invalid` host) would send real credentials to the wrong place.
        name = sources[key] or spec.env
        value = lookup(name, env, secret=spec.secret) if sources[key] else None
        if value:
            used[key] = name
        else:
            value = spec.sandbox if mode == "sandbox" else ""
        if not value:
            raise ConfigurationError(
                f"{system.title}: set {purpose_variable(system, spec.env, purpose)} or {spec.env} "
                f"({spec.description or key}).")
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
    base_url = check_web_url(base_url, _url_source(system, "base_url", overrides.base_url, mode))
    if token_url:
        check_web_url(token_url, _url_source(system, "token_url", overrides.token_url, mode))
    resolved = ResolvedSystem(system, mode, base_url, token_url, values, overrides, purpose, used)
    if purpose == "write" and mode == "live":
        from ..provenance import refuse_sandbox_data_in_live

        refuse_sandbox_data_in_live(resolved, settings, env)
    return resolved


def _url_source(system: System, field: str, override: str | None, mode: str) -> str:
    """Where a URL came from, as the user would fix it: the `<SYSTEM>_BASE_URL` variable, the variables its
    template is made of, the system's YAML file, or IP_SANDBOX_URL."""
    if override:
        return f"{system.env_prefix}_{field.upper()}"
    if mode == "sandbox":
        return "IP_SANDBOX_URL"
    template = system.base_url if field == "base_url" else getattr(system.auth, "token_url", "") or ""
    used = [system.values[key].env for key in re.findall(r"{(\w+)}", template) if key in system.values]
    where = f"{system.title}'s {field}" + (f" in {system.source_file}" if system.source_file else "")
    return f"{' / '.join(used)} (rendered into {where})" if used else where


def url_variable(system: System, settings: Settings | None = None, mode: str | None = None) -> str:
    """The variable the system's URL comes from: `<SYSTEM>_BASE_URL` when set (or in live mode, where it overrides
    the vendor's URL), else `IP_SANDBOX_URL`, which every system in sandbox mode talks to.

    Lives here, beside `resolve_system`, so the HTTP client (a run in the UI) and the CLI name the same variable."""
    if load_overrides(system.name).base_url:
        return f"{system.env_prefix}_BASE_URL"
    if mode is None:
        try:
            mode = resolve_system(system, settings or Settings()).mode
        except ConfigurationError:
            mode = "live"
    return "IP_SANDBOX_URL" if mode == "sandbox" else f"{system.env_prefix}_BASE_URL"


def url_variables(resolved: ResolvedSystem) -> dict[str, str]:
    """Each URL the resolved system talks to → the variable that sets it, for messages about a failed connection."""
    system, overrides = resolved.system, resolved.overrides
    found = {resolved.base_url: url_variable(system, mode=resolved.mode)}
    if resolved.token_url and resolved.token_url not in found:
        found[resolved.token_url] = (f"{system.env_prefix}_TOKEN_URL" if overrides.token_url or resolved.mode == "live"
                                     else "IP_SANDBOX_URL")
    return found


def token_store_for(resolved: ResolvedSystem) -> TokenStore | None:
    """Where rotated refresh tokens of this resolution are kept: the system's store for the shared credentials,
    and a store of their own for purpose-specific ones (`xero_read`, `xero_write`): two refresh tokens rotating
    in one file would retire each other's lineage (see token_store.py)."""
    spec = resolved.system.auth
    if not (isinstance(spec, OAuth2AuthSpec) and spec.grant_type == "refresh_token" and spec.refresh_token):
        return None
    source = resolved.sources.get(spec.refresh_token)
    own = source is not None and source != resolved.system.values[spec.refresh_token].env
    return TokenStore.for_system(f"{resolved.system.name}_{resolved.purpose}" if own else resolved.system.name)


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
            credential_hint=resolved.credential_hint,
            token_store=token_store_for(resolved),
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
        env_prefix=system.env_prefix,
        url_variables=url_variables(resolved),
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
        credential_hint=resolved.credential_hint,
        is_rate_limited=_rate_limit_detector(system),
        transport=transport,
        sleep=sleep,
        rng=rng or random.Random(),
        log=log,
        log_every_request=overrides.log_requests,
    )
