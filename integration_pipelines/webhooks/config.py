"""Webhook settings and secrets, from the environment only (or `.env`), never from code or the repo.

Every secret variable may hold several comma-separated values, so a secret can be rotated without losing
events: configure `old,new`, switch the vendor to `new`, then drop `old`. With nothing set, the obviously fake
sandbox values below are used, so `make demo` works with no configuration and the simulator signs with the
same values. Every value is registered for redaction the moment it is read. Each may also be given as
`<NAME>_FILE` (a mounted secret file) or come from the secrets manager (`connectors/secrets.py`).

Fail closed: those fake values are published (they are in this file), so a receiver reachable from outside that
still accepts one accepts forged events. `check_public_secrets` (called by `receiver.build_receiver`, hence by
`webhooks serve`) refuses to start when `IP_WEBHOOK_PUBLIC_URL` is not loopback/localhost and any enabled
provider still has a sandbox value; `IP_WEBHOOK_PROVIDERS` (a comma list, default all) disables the providers
that are not used, and a disabled provider's endpoint answers 404.

Fail closed per provider too: a provider whose secret is not configured (its variable is not set, so the sandbox
value stands in) is accepted only while its system runs against the sandbox. Once that system is live (any of its
credential variables is set: the rule `connectors.runtime.resolve_system` uses to leave the sandbox), the provider
is off: its endpoint answers 503 `not_configured` and logs the variable to set. A provider with no system of its
own (`forms`, `standard`) is off as soon as any system is live. A variable set explicitly, even to a sandbox value
(a test against the emulators), counts as configured. `provider_states` is that one decision; the receiver routes
by it and `webhooks serve` prints it at start, so the printed state is what the receiver does.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..connectors.errors import ConfigurationError
from ..connectors.redaction import register_secret
from ..connectors.secrets import SecretFileSettings
from ..settings import Settings

# The sandbox's fake secrets: the receiver accepts them and the simulator signs with them when nothing is set.
SANDBOX_SECRETS: dict[str, str] = {
    "stripe_webhook_secret": "whsec_FAKE_sandbox_stripe_webhook_secret",
    "standard_webhook_secret": "whsec_RkFLRS1zYW5kYm94LXN0YW5kYXJkLXdlYmhvb2tzLWtleSE=",
    "square_webhook_signature_key": "FAKE_sandbox_square_signature_key",
    "hubspot_webhook_secret": "FAKE-sandbox-hubspot-client-secret",
    "shopify_webhook_secret": "FAKE_sandbox_shopify_client_secret",
    "xero_webhook_key": "FAKE_sandbox_xero_webhook_key",
    "quickbooks_webhook_verifier_token": "FAKE-sandbox-quickbooks-verifier-token",
    "forms_webhook_token": "FAKE-sandbox-forms-path-token",
    "odoo_webhook_token": "FAKE-sandbox-odoo-path-token",
}
SANDBOX_SALESFORCE_ORG_IDS = "00DFAKESANDBOX0001AAA"

#: provider → the WebhookSecrets fields that authenticate its deliveries
PROVIDER_SECRETS: dict[str, tuple[str, ...]] = {
    "stripe": ("stripe_webhook_secret",),
    "standard": ("standard_webhook_secret",),
    "square": ("square_webhook_signature_key",),
    "hubspot": ("hubspot_webhook_secret",),
    "shopify": ("shopify_webhook_secret",),
    "xero": ("xero_webhook_key",),
    "quickbooks": ("quickbooks_webhook_verifier_token",),
    "salesforce": ("salesforce_webhook_organization_ids",),
    "forms": ("forms_webhook_token",),
    "odoo": ("odoo_webhook_token",),
}
PROVIDERS: tuple[str, ...] = tuple(PROVIDER_SECRETS)
#: provider → the system whose mode decides whether an unset secret falls back to the sandbox value; None: no
#: system of its own (a web form, a generic Standard Webhooks sender), so any live system switches it off
PROVIDER_SYSTEMS: dict[str, str | None] = {p: None if p in ("standard", "forms") else p for p in PROVIDERS}
_FAKE_VALUES: dict[str, str] = {**SANDBOX_SECRETS, "salesforce_webhook_organization_ids": SANDBOX_SALESFORCE_ORG_IDS}


class WebhookSecrets(SecretFileSettings):
    """The providers' signing secrets; each a comma-separated list (rotation). Env names are the field names
    in capitals: `STRIPE_WEBHOOK_SECRET`, `STANDARD_WEBHOOK_SECRET`, `SQUARE_WEBHOOK_SIGNATURE_KEY`, ..."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")


    stripe_webhook_secret: str = SANDBOX_SECRETS["stripe_webhook_secret"]
    standard_webhook_secret: str = SANDBOX_SECRETS["standard_webhook_secret"]
    square_webhook_signature_key: str = SANDBOX_SECRETS["square_webhook_signature_key"]
    hubspot_webhook_secret: str = Field(
        default=SANDBOX_SECRETS["hubspot_webhook_secret"], description="the HubSpot app's client secret"
    )
    shopify_webhook_secret: str = Field(
        default=SANDBOX_SECRETS["shopify_webhook_secret"], description="the Shopify app's client secret"
    )
    xero_webhook_key: str = SANDBOX_SECRETS["xero_webhook_key"]
    quickbooks_webhook_verifier_token: str = SANDBOX_SECRETS["quickbooks_webhook_verifier_token"]
    forms_webhook_token: str = Field(
        default=SANDBOX_SECRETS["forms_webhook_token"], description="secret path token of /webhooks/forms/{token}"
    )
    odoo_webhook_token: str = Field(
        default=SANDBOX_SECRETS["odoo_webhook_token"], description="secret path token of /webhooks/odoo/{token}"
    )
    salesforce_webhook_organization_ids: str = Field(
        default=SANDBOX_SALESFORCE_ORG_IDS, description="Salesforce org ids allowed to send outbound messages"
    )

    def values(self, name: str) -> list[str]:
        """The configured values of one secret, registered for redaction (never logged)."""
        raw: str = getattr(self, name)
        found = [part.strip() for part in raw.split(",") if part.strip()]
        if name != "salesforce_webhook_organization_ids":
            for value in found:
                register_secret(value)
        return found

    def primary(self, name: str) -> str:
        """The first value: the one a signer (the simulator) uses."""
        return self.values(name)[0]


class WebhookSettings(BaseSettings):
    """Receiver and sensor knobs (`IP_WEBHOOK_*`)."""

    model_config = SettingsConfigDict(env_prefix="IP_WEBHOOK_", env_file=".env", extra="ignore")

    public_url: str = Field(
        default="http://127.0.0.1:8766",
        description="the receiver's URL as the vendors call it (behind a proxy it differs from what the app "
        "sees); Square and HubSpot sign it, so it must match the URL configured at the vendor exactly",
    )
    providers: str = Field(
        default="", description="comma-separated providers the receiver accepts (stripe, standard, square, hubspot, "
        "shopify, xero, quickbooks, salesforce, forms, odoo); empty = all. A disabled provider's endpoint answers 404")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="larger bodies are answered 413")
    store_dir: Path | None = Field(default=None, description="landing store root; default: IP_DATA_DIR")
    batch_files: int = Field(default=500, ge=1, description="most events one event lane batch takes")
    sensor_interval_seconds: int = Field(default=5, ge=1, description="how often the sensor checks that an event "
                                         "lane worker runs while events wait (Dagster's sensor loop is 5 s)")
    lane_poll_seconds: float = Field(default=0.2, gt=0, le=10, description="how often the event lane worker looks "
                                     "for newly landed events")
    lane_sync_workers: int = Field(default=4, ge=1, le=32, description="syncs the event lane runs at once, "
                                   "each target system's one after another (its rate limit and order kept); 1 "
                                   "runs every sync of a batch in turn")
    lane_idle_seconds: float = Field(default=600, ge=0, description="the worker stops after this long without "
                                     "events; the next event starts a new one (a few seconds slower)")
    lane_max_seconds: float = Field(default=3600, gt=0, description="the worker stops after this long (after "
                                    "its current batch) so that its run log stays readable; the sensor starts "
                                    "the next one")
    stripe_tolerance_seconds: int = 300
    standard_tolerance_seconds: int = 300
    hubspot_tolerance_seconds: int = 300

    def enabled_providers(self) -> tuple[str, ...]:
        chosen = [p.strip().lower() for p in self.providers.split(",") if p.strip()]
        unknown = [p for p in chosen if p not in PROVIDERS]
        if unknown:
            raise ConfigurationError(
                f"IP_WEBHOOK_PROVIDERS names {', '.join(unknown)}, which the receiver does not know; use a comma list "
                f"of {', '.join(PROVIDERS)} (or leave it empty for all).")
        return tuple(p for p in PROVIDERS if not chosen or p in chosen)

    def is_public(self) -> bool:
        """Whether vendors reach the receiver from outside this machine: the public URL is not loopback."""
        host = (urlsplit(self.public_url).hostname or "").lower().rstrip(".")
        if host == "localhost" or host.endswith(".localhost"):
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True

    def store_root(self, settings: Settings) -> Path:
        return self.store_dir or settings.data_dir

    def endpoint_url(self, path: str, query: str = "") -> str:
        """The URL a vendor signs: the configured public URL plus the route path (and query, if any)."""
        url = self.public_url.rstrip("/") + path
        return f"{url}?{query}" if query else url


def load_webhook_settings() -> WebhookSettings:
    return WebhookSettings()


def load_webhook_secrets() -> WebhookSecrets:
    return WebhookSecrets()


ProviderState = Literal["live", "sandbox", "off"]


@dataclass(frozen=True)
class ProviderStatus:
    """One provider's state, decided once at start: the receiver routes by it and `webhooks serve` prints it.

    live: its secret is configured (the variable is set, in any way `WebhookSecrets` reads); sandbox: the
    published fake secret, accepted because the provider's system runs against the sandbox; off: disabled
    (`IP_WEBHOOK_PROVIDERS`, endpoint 404), or not configured while `live_systems` are live, or set but empty
    (endpoint 503 `not_configured`)."""

    provider: str
    state: ProviderState
    variables: tuple[str, ...]  # the variables holding its secret (upper case)
    disabled: bool = False  # off because IP_WEBHOOK_PROVIDERS leaves it out
    live_systems: tuple[str, ...] = ()  # off: the live systems that refuse the sandbox secret
    published: bool = False  # live: configured, but to the sandbox's published value (the operator's choice)

    @property
    def switch_on(self) -> str:
        """The variable that would switch an off provider on."""
        return "IP_WEBHOOK_PROVIDERS" if self.disabled else " and ".join(self.variables)

    @property
    def why(self) -> str:
        """What the state means for an operator; empty for a live provider. Names variables, never values."""
        if self.state == "live":
            return f"{' and '.join(self.variables)} set to the sandbox's published value" if self.published else ""
        if self.state == "sandbox":
            return f"accepts the sandbox's published {' and '.join(self.variables)}"
        if self.disabled:
            return f"set IP_WEBHOOK_PROVIDERS to include {self.provider} to switch it on"
        if not self.live_systems:
            return f"set {self.switch_on} to switch it on (it is set, but empty)"
        return (f"set {self.switch_on} to switch it on ({', '.join(self.live_systems)} "
                f"{'is' if len(self.live_systems) == 1 else 'are'} live, so the sandbox's published value is refused)")

    def line(self) -> str:
        """`provider  state  why`: one line of the receiver's start report."""
        return f"{self.provider:<11} {self.state:<8} {self.why}".rstrip()


def live_systems(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Systems that run against the real service: any of their credential variables is set (directly, as
    `<NAME>_FILE` or in the secrets manager), which is when `resolve_system` stops using the sandbox."""
    from ..connectors.registry import discover_systems
    from ..connectors.runtime import credential_variables
    from ..connectors.secrets import is_set

    env = os.environ if environ is None else environ
    return tuple(s.name for s in discover_systems() if any(is_set(n, env) for n in credential_variables(s)))


def _values(secrets: WebhookSecrets, field: str) -> list[str]:
    return [part.strip() for part in str(getattr(secrets, field)).split(",") if part.strip()]


def provider_states(config: WebhookSettings, secrets: WebhookSecrets,
                    environ: Mapping[str, str] | None = None) -> dict[str, ProviderStatus]:
    """Every provider's state (PROVIDERS order): the one decision the receiver and its start lines share."""
    enabled = config.enabled_providers()
    live = live_systems(environ)
    states: dict[str, ProviderStatus] = {}
    for provider, fields in PROVIDER_SECRETS.items():
        variables = tuple(field.upper() for field in fields)
        if provider not in enabled:
            states[provider] = ProviderStatus(provider, "off", variables, disabled=True)
            continue
        values = [value for field in fields for value in _values(secrets, field)]
        if not values:  # set to an empty string: nothing could verify a request
            states[provider] = ProviderStatus(provider, "off", variables)
            continue
        system = PROVIDER_SYSTEMS[provider]
        refusing = tuple(s for s in live if system is None or s == system)
        published = all(value in _FAKE_VALUES.values() for value in values)
        if set(fields) & secrets.model_fields_set and (refusing or not published):  # set by the operator
            states[provider] = ProviderStatus(provider, "live", variables, published=published)
        elif refusing:  # only the default stands in, and the system is live: refuse rather than trust it
            states[provider] = ProviderStatus(provider, "off", variables, live_systems=refusing)
        else:
            states[provider] = ProviderStatus(provider, "sandbox", variables)
    return states


def sandbox_secret_variables(config: WebhookSettings, secrets: WebhookSecrets,
                             states: Mapping[str, ProviderStatus] | None = None) -> dict[str, list[str]]:
    """Provider that accepts requests → the variables that still hold (or include) a published sandbox value."""
    states = states if states is not None else provider_states(config, secrets)
    found: dict[str, list[str]] = {}
    for provider in config.enabled_providers():
        if states[provider].state == "off":  # refuses every request: a published value opens nothing
            continue
        for field in PROVIDER_SECRETS[provider]:
            if _FAKE_VALUES[field] in _values(secrets, field):
                found.setdefault(provider, []).append(field.upper())
    return found


def check_public_secrets(config: WebhookSettings, secrets: WebhookSecrets,
                         states: Mapping[str, ProviderStatus] | None = None) -> None:
    """Refuse (ConfigurationError) a receiver reachable from outside that would accept sandbox secrets."""
    if not config.is_public():
        return
    found = sandbox_secret_variables(config, secrets, states)
    if not found:
        return
    variables = ", ".join(name for names in found.values() for name in names)
    kept = [p for p in config.enabled_providers() if p not in found]
    raise ConfigurationError(
        f"Refusing to start the webhook receiver: IP_WEBHOOK_PUBLIC_URL ({config.public_url}) is not a loopback "
        f"address, and {variables} still hold{'s' if len(found) == 1 and ',' not in variables else ''} the "
        f"sandbox's published fake value, so anyone could send forged {', '.join(found)} events. Set each of them to "
        "the real secret from the vendor's webhook settings (or <NAME>_FILE to a file holding it), or disable the "
        f"providers you do not use with IP_WEBHOOK_PROVIDERS (for example IP_WEBHOOK_PROVIDERS="
        f"{','.join(kept) or 'stripe'}); a disabled provider's endpoint answers 404."
    )
