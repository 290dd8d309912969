"""Alerts: tell a person when something needs them, once per incident, with no secret in the message.

Triggers: a failed run (sync error rate above its threshold fails the run too), an asset check that goes from
passing to failing, and a webhook provider silent for longer than expected. Channels, each enabled by its
environment variables: a Slack-compatible incoming webhook, a generic JSON webhook, and email over SMTP; every
alert is also written to the log. Incidents are remembered in a small file under the data folder, so a retried
run (same root run) or a check that stays red does not alert again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .connectors.redaction import redact, register_secret
from .settings import Settings, load_settings

logger = logging.getLogger("integration_pipelines.alerts")


class AlertSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IP_ALERT_", env_file=".env", extra="ignore")

    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack-compatible incoming webhook")
    webhook_url: SecretStr | None = Field(default=None, description="generic JSON webhook")
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "integration-pipelines@localhost"
    email_to: str = Field(default="", description="comma-separated recipients")
    ui_base_url: str = Field(default="http://127.0.0.1:3000", description="the Dagster UI, for links in alerts")
    webhook_silence_minutes: int = Field(default=0, ge=0, description="alert when a provider is silent this long")
    webhook_providers: str = Field(default="", description="providers expected to send (comma-separated)")

    def register(self) -> None:
        for secret in (self.slack_webhook_url, self.webhook_url, self.smtp_password):
            if secret is not None:
                register_secret(secret.get_secret_value())


def register_configured_secrets() -> None:
    """Register every credential this deployment is configured with, not only the alert channels' own.

    Why: alerts are sent from the daemon (run-failure and check sensors), a process that never resolved a system
    nor read the webhook secrets, so its redaction registry would not know them; yet an alert carries error text
    from other processes out of the machine (Slack, email). Values are the ones `connectors.runtime` and the
    webhook receiver would use: the environment's, else the sandbox's fake ones.
    """
    from .connectors.registry import discover_systems
    from .webhooks.config import load_webhook_secrets

    for system in discover_systems():
        for value in system.values.values():
            if value.secret:
                register_secret(os.environ.get(value.env) or value.sandbox)
    webhook_secrets = load_webhook_secrets()
    for name in type(webhook_secrets).model_fields:
        webhook_secrets.values(name)  # registers each configured value (not the allow-listed org ids)


@dataclass(frozen=True)
class Alert:
    incident: str
    title: str
    summary: str
    url: str
    first_error: str = ""

    def text(self) -> str:
        lines = [f"[integration-pipelines] {self.title}", self.summary]
        if self.first_error:
            lines.append(f"First error: {self.first_error}")
        lines.append(f"Where to look: {self.url}")
        return redact("\n".join(lines))


class IncidentLog:
    """Which incidents were already announced; a file with a lock, shared by daemon and run processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[dict[str, float]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield state
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, sort_keys=True))
            tmp.replace(self.path)

    def open(self, incident: str) -> bool:
        """Mark an incident as announced; True only the first time."""
        with self._locked() as state:
            if incident in state:
                return False
            state[incident] = time.time()
            return True

    def close(self, incident: str) -> None:
        with self._locked() as state:
            state.pop(incident, None)


class Alerter:
    def __init__(self, settings: Settings | None = None, alert_settings: AlertSettings | None = None) -> None:
        self.settings = settings or load_settings()
        self.config = alert_settings or AlertSettings()
        self.config.register()
        register_configured_secrets()
        self.incidents = IncidentLog(self.settings.data_dir / "alerts" / "incidents.json")

    def raise_alert(self, alert: Alert) -> bool:
        """Send once per incident; returns whether it was sent now."""
        if not self.incidents.open(alert.incident):
            return False
        self.send(alert)
        return True

    def resolve(self, incident: str) -> None:
        self.incidents.close(incident)

    def send(self, alert: Alert) -> None:
        text = alert.text()
        logger.error(text)
        config = self.config
        failures = []
        if config.slack_webhook_url is not None:
            failures += self._post(config.slack_webhook_url, {"text": text}, "Slack")
        if config.webhook_url is not None:
            failures += self._post(config.webhook_url, {
                "incident": alert.incident, "title": alert.title, "summary": redact(alert.summary),
                "url": alert.url, "first_error": redact(alert.first_error)}, "webhook")
        if config.smtp_host and config.email_to:
            failures += self._email(alert, text)
        for failure in failures:
            logger.error(failure)

    @staticmethod
    def _post(url: SecretStr, body: dict, channel: str) -> list[str]:
        try:
            response = httpx.post(url.get_secret_value(), json=body, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            return [redact(f"alert to the {channel} channel failed: {exc}")]
        return []

    def _email(self, alert: Alert, text: str) -> list[str]:
        config = self.config
        message = EmailMessage()
        message["Subject"] = redact(f"[integration-pipelines] {alert.title}")
        message["From"] = config.email_from
        message["To"] = config.email_to
        message.set_content(text)
        try:
            with smtplib.SMTP(config.smtp_host or "", config.smtp_port, timeout=10) as smtp:
                if config.smtp_starttls:
                    smtp.starttls()
                if config.smtp_username and config.smtp_password is not None:
                    smtp.login(config.smtp_username, config.smtp_password.get_secret_value())
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return [redact(f"alert email failed: {exc}")]
        return []


def _root_cause(error: object) -> str:
    """Dagster wraps the user's exception ("Error occurred while executing op ..."): unwrap Dagster's own errors
    only, so the alert shows our readable message, not the low-level error it was raised from."""
    while str(getattr(error, "cls_name", "")).startswith("Dagster") and getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    return str(getattr(error, "message", error))


def first_line(text: str) -> str:
    return redact(next((line.strip() for line in text.splitlines() if line.strip()), ""))[:300]


def alert_on_check_results(results: list[dg.AssetCheckResult], alerter: Alerter | None = None) -> None:
    """Announce checks that fail at ERROR severity once; forget them when they pass again."""
    alerter = alerter or Alerter()
    for result in results:
        key = result.asset_key.to_user_string() if result.asset_key else "?"
        incident = f"check:{key}:{result.check_name}"
        if result.passed or result.severity != dg.AssetCheckSeverity.ERROR:
            alerter.resolve(incident)
            continue
        details = ", ".join(f"{k}={v.value}" for k, v in (result.metadata or {}).items()
                            if isinstance(getattr(v, "value", None), (int, float, str)))
        alerter.raise_alert(Alert(
            incident=incident, title=f"check {result.check_name} failed on {key}",
            summary=f"The asset check {result.check_name} on {key} failed. {details}",
            url=f"{alerter.config.ui_base_url}/assets/{key}?view=checks"))


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    @dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Send one alert per failed run (retries of the same run count once).")
    def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        incident = f"run:{run.tags.get('dagster/root_run_id', run.run_id)}"
        error = context.failure_event.message or ""
        step_errors = [_root_cause(e.event_specific_data.error) for e in context.get_step_failure_events()
                       if e.event_specific_data and e.event_specific_data.error]
        alerter = Alerter(settings)
        sent = alerter.raise_alert(Alert(
            incident=incident, title=f"run of {run.job_name} failed",
            summary=f"Run {run.run_id} of job {run.job_name} failed.",
            url=f"{alerter.config.ui_base_url}/runs/{run.run_id}",
            first_error=first_line(step_errors[0] if step_errors else error)))
        context.log.info("alert sent" if sent else f"incident {incident} was already announced")

    @dg.sensor(name="alert_on_silent_webhooks", minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Alert when an expected webhook provider has sent nothing for too long.")
    def alert_on_silent_webhooks(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        from .webhooks.config import load_webhook_settings
        from .webhooks.landing import open_landing_store

        alerter = Alerter(settings)
        config = alerter.config
        providers = [p.strip() for p in config.webhook_providers.split(",") if p.strip()]
        if not config.webhook_silence_minutes or not providers:
            return dg.SkipReason("set IP_ALERT_WEBHOOK_SILENCE_MINUTES and IP_ALERT_WEBHOOK_PROVIDERS to watch")
        store = open_landing_store(settings, load_webhook_settings())
        now = time.time()
        for provider in providers:
            last = store.last_received(provider)
            incident = f"silent:{provider}"
            if last is not None and now - last < config.webhook_silence_minutes * 60:
                alerter.resolve(incident)
                continue
            since = "never" if last is None else f"{(now - last) / 60:.0f} minutes ago"
            alerter.raise_alert(Alert(
                incident=incident, title=f"no webhooks from {provider}",
                summary=f"The last {provider} webhook arrived {since} (expected within "
                        f"{config.webhook_silence_minutes} minutes). Check the provider's webhook settings "
                        "and the receiver.", url=f"{config.ui_base_url}/overview/sensors"))
        return dg.SkipReason("checked webhook silence")

    return [alert_on_run_failure, alert_on_silent_webhooks]
