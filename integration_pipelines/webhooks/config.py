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
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
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


def sandbox_secret_variables(config: WebhookSettings, secrets: WebhookSecrets) -> dict[str, list[str]]:
    """Enabled provider → the variables that still hold (or include) a published sandbox value."""
    fake = {**SANDBOX_SECRETS, "salesforce_webhook_organization_ids": SANDBOX_SALESFORCE_ORG_IDS}
    found: dict[str, list[str]] = {}
    for provider in config.enabled_providers():
        for field in PROVIDER_SECRETS[provider]:
            values = [part.strip() for part in str(getattr(secrets, field)).split(",")]
            if fake[field] in values:
                found.setdefault(provider, []).append(field.upper())
    return found


def check_public_secrets(config: WebhookSettings, secrets: WebhookSecrets) -> None:
    """Refuse (ConfigurationError) a receiver reachable from outside that would accept sandbox secrets."""
    if not config.is_public():
        return
    found = sandbox_secret_variables(config, secrets)
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
