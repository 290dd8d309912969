"""Alerts reach every configured channel on loopback, once per incident, with no secret in them."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from integration_pipelines.alerts import Alert, Alerter, AlertSettings, alert_on_check_results, build_alert_sensors
from integration_pipelines.config_problems import ConfigurationProblemError
from integration_pipelines.connectors.redaction import register_secret
from integration_pipelines.definitions import build_definitions
from integration_pipelines.settings import Settings

SECRET = "sk_test_FAKE_alert_secret_9f8e7d"


class Capture:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                capture.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def channels(settings, monkeypatch):
    capture = Capture()
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    monkeypatch.setenv("IP_ALERT_SLACK_WEBHOOK_URL", f"{capture.url}/slack")
    monkeypatch.setenv("IP_ALERT_WEBHOOK_URL", f"{capture.url}/generic")
    monkeypatch.setenv("IP_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("IP_ALERT_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("IP_ALERT_EMAIL_TO", "ops@example.com")
    monkeypatch.setenv("IP_ALERT_UI_BASE_URL", "http://dagster.example.test")
    yield capture, mailbox
    controller.stop()
    capture.server.shutdown()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_failed_run_alerts_every_channel_once_without_secrets(settings, channels):
    capture, mailbox = channels
    register_secret(SECRET)

    @dg.op
    def push_invoices() -> None:
        low_level = ValueError("low-level decode error")
        raise RuntimeError(f"QuickBooks refused the token {SECRET}\nsecond line of the traceback") from low_level

    @dg.job
    def nightly_sync() -> None:
        push_invoices()

    sensor = next(s for s in build_alert_sensors(Settings()) if s.name == "alert_on_run_failure")
    with dg.instance_for_test() as instance:
        result = nightly_sync.execute_in_process(instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=run, dagster_event=failure,
        ).for_run_failure()
        sensor(context)
        sensor(context)  # the same incident evaluated again (a retry of the same root run): no second alert
    wait_for(lambda: len(mailbox.messages) == 1)
    assert [path for path, _ in capture.posts] == ["/slack", "/generic"]
    slack_text = capture.posts[0][1]["text"]
    assert "nightly_sync" in slack_text and f"http://dagster.example.test/runs/{result.run_id}" in slack_text
    assert "QuickBooks refused the token" in slack_text and "second line" not in slack_text
    assert "low-level" not in slack_text  # our readable error, not the one it was raised from
    everything = json.dumps(capture.posts) + mailbox.messages[0]
    assert SECRET not in everything and "***" in everything


def test_a_failing_check_alerts_once_until_it_passes_again(settings, channels):
    capture, _ = channels
    key = dg.AssetKey(["core", "invoices"])
    failing = dg.AssetCheckResult(asset_key=key, check_name="totals_match_staging", passed=False,
                                  metadata={"mismatches": "quickbooks USD"})
    passing = dg.AssetCheckResult(asset_key=key, check_name="totals_match_staging", passed=True)
    warn_only = dg.AssetCheckResult(asset_key=key, check_name="customers_resolved", passed=False,
                                    severity=dg.AssetCheckSeverity.WARN)
    alert_on_check_results([failing, warn_only])
    alert_on_check_results([failing])
    assert len([p for p, _ in capture.posts if p == "/generic"]) == 1
    alert_on_check_results([passing])
    alert_on_check_results([failing])
    generic = [body for path, body in capture.posts if path == "/generic"]
    assert len(generic) == 2 and generic[0]["url"].endswith("/assets/core/invoices?view=checks")


def test_a_silent_webhook_provider_raises_one_alert(settings, channels, monkeypatch):
    capture, _ = channels
    seen = Path(settings.data_dir) / "landing" / "seen" / "stripe"
    seen.mkdir(parents=True)
    old = time.time() - 3 * 3600
    os.utime(seen, (old, old))
    monkeypatch.setenv("IP_ALERT_WEBHOOK_SILENCE_MINUTES", "60")
    monkeypatch.setenv("IP_ALERT_WEBHOOK_PROVIDERS", "stripe,shopify")
    sensor = next(s for s in build_alert_sensors(Settings()) if s.name == "alert_on_silent_webhooks")
    with dg.instance_for_test() as instance:
        sensor(dg.build_sensor_context(instance=instance))
        sensor(dg.build_sensor_context(instance=instance))
    titles = sorted(body["title"] for path, body in capture.posts if path == "/generic")
    assert titles == ["no webhooks from shopify", "no webhooks from stripe"]


def test_a_dead_channel_is_logged_not_raised(settings, caplog, monkeypatch):
    monkeypatch.setenv("IP_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens")
    Alerter(Settings(), AlertSettings()).send(Alert("x", "title", "summary", "http://ui"))
    assert "alert to the webhook channel failed" in caplog.text


def _problems_sensor(defs: dg.Definitions) -> dg.SensorDefinition:
    return next(s for s in defs.sensors if s.name == "configuration_problems")


def test_a_bad_cron_leaves_out_only_its_schedule_and_is_reported_and_alerted_once(settings, channels, monkeypatch):
    """Issue 17, failure isolation: IP_NIGHTLY_CRON used to fail the whole code location's load."""
    capture, _ = channels
    monkeypatch.setenv("IP_NIGHTLY_CRON", "every night at two")
    defs = build_definitions(Settings())
    assert [s.name for s in defs.schedules] == ["weekly_full_refresh_schedule"]
    assert dg.AssetKey(["core", "customers"]) in {key for a in defs.assets for key in a.keys}
    sensor = _problems_sensor(defs)
    with dg.instance_for_test() as instance:
        for _ in range(2):  # every tick shows it; the channels hear it once
            with pytest.raises(ConfigurationProblemError) as raised:
                sensor(dg.build_sensor_context(instance=instance))
    assert str(raised.value).startswith("Configuration problems:\n- IP_NIGHTLY_CRON / IP_TIMEZONE: Found invalid "
                                        "cron schedule 'every night at two'")
    assert str(raised.value).endswith("this schedule is not loaded until it is fixed, everything else is")
    assert [body["title"] for path, body in capture.posts if path == "/generic"] == ["configuration problem"]


def test_a_setting_everything_reads_loads_only_the_report_naming_the_variable(settings, channels, monkeypatch):
    capture, _ = channels
    monkeypatch.setenv("IP_RECONCILIATION_WARN_AT", "a few")
    defs = build_definitions()
    assert [s.name for s in defs.sensors] == ["configuration_problems"] and not list(defs.assets or [])
    with dg.instance_for_test() as instance, pytest.raises(ConfigurationProblemError) as raised:
        _problems_sensor(defs)(dg.build_sensor_context(instance=instance))
    assert str(raised.value) == ("Configuration problems:\n- IP_RECONCILIATION_WARN_AT: Input should be a valid "
                                 "integer, unable to parse string as an integer (got 'a few'); the code location "
                                 "loaded without the pipelines until it is fixed")
    [(_, alert)] = [(path, body) for path, body in capture.posts if path == "/generic"]
    assert "IP_RECONCILIATION_WARN_AT" in alert["summary"]
