"""Webhook settings and secrets, from the environment only (or `.env`), never from code or the repo.

Every secret variable may hold several comma-separated values, so a secret can be rotated without losing
events: configure `old,new`, switch the vendor to `new`, then drop `old`. With nothing set, the obviously fake
sandbox values below are used, so `make demo` works with no configuration and the simulator signs with the
same values. Every value is registered for redaction the moment it is read.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..connectors.redaction import register_secret
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


class WebhookSecrets(BaseSettings):
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
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="larger bodies are answered 413")
    store_dir: Path | None = Field(default=None, description="landing store root; default: IP_DATA_DIR")
    batch_files: int = Field(default=500, ge=1, description="most files one ingest run takes")
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
