"""Messages name the variables a person would actually set (`QUICKBOOKS_MAX_RETRIES`, not the system's title),
and a base URL that is not http(s) is refused when the system is loaded, naming where it came from."""

from __future__ import annotations

import socket

import httpx
import pytest

from integration_pipelines.connectors.custom import PACKAGED_DIR, CustomSystemError, load_custom_file
from integration_pipelines.connectors.errors import ConfigurationError, RetriesExhaustedError
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.settings import Settings

from .conftest import PARTITIONS, materialize_stream


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("QUICKBOOKS_BASE_URL", "QUICKBOOKS_TOKEN_URL", "QUICKBOOKS_MAX_RETRIES", "ODOO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    return Settings(data_dir=tmp_path)


def test_a_retry_budget_message_names_the_systems_variable_not_its_title(clean_env, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "1")
    quickbooks = get_system("quickbooks")
    assert " " in quickbooks.title  # "QuickBooks Online": the title was used as the prefix
    resolved = resolve_system(quickbooks, clean_env, environ={})
    transport = httpx.MockTransport(lambda request: httpx.Response(503, json={"message": "down"}))
    with (build_client(resolved, transport=transport, sleep=lambda seconds: None) as client,
          pytest.raises(RetriesExhaustedError) as info):
        client.request("GET", "/v3/company/1/query")
    message = str(info.value)
    assert "QUICKBOOKS_MAX_RETRIES" in message
    assert "ONLINE_MAX_RETRIES" not in message and "QUICKBOOKS ONLINE" not in message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "/var/lib/thing", "https://"])
def test_a_non_web_base_url_from_the_environment_is_refused_naming_the_variable(clean_env, monkeypatch, url):
    monkeypatch.setenv("QUICKBOOKS_BASE_URL", url)
    with pytest.raises(ConfigurationError) as info:
        resolve_system(get_system("quickbooks"), clean_env, environ={})
    assert "QUICKBOOKS_BASE_URL" in str(info.value) and "http" in str(info.value)


def test_a_non_web_token_url_is_refused_too(clean_env, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_TOKEN_URL", "file:///tmp/token.json")
    with pytest.raises(ConfigurationError, match="QUICKBOOKS_TOKEN_URL"):
        resolve_system(get_system("quickbooks"), clean_env, environ={})


def test_an_https_base_url_override_still_works(clean_env, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_BASE_URL", "https://sandbox-quickbooks.api.intuit.com")
    resolved = resolve_system(get_system("quickbooks"), clean_env, environ={})
    assert resolved.base_url == "https://sandbox-quickbooks.api.intuit.com"


def test_a_yaml_system_with_a_file_base_url_is_refused_at_load_naming_file_and_key(tmp_path):
    text = (PACKAGED_DIR / "expense_tool.yaml").read_text()
    assert "base_url: https://expenses.example.internal" in text
    path = tmp_path / "sneaky.yaml"
    path.write_text(text.replace("base_url: https://expenses.example.internal", "base_url: file:///etc", 1))
    with pytest.raises(CustomSystemError) as info:
        load_custom_file(path)
    message = str(info.value)
    assert "sneaky.yaml:" in message and "base_url" in message and "file:///etc" in message


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on: bound, then released, so a connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("system", "stream", "partition"), [("stripe", "customers", PARTITIONS[-1]),
                                                             ("netsuite", "customers", None)])
def test_a_dagster_run_that_cannot_connect_names_the_url_variable_once(settings, monkeypatch, system, stream,
                                                                        partition):
    """What a run in the UI shows, not only what the CLI rewrites: the REST and the SOAP engine alike."""
    prefix = system.upper()
    url = f"http://127.0.0.1:{_closed_loopback_port()}"
    monkeypatch.setenv(f"{prefix}_BASE_URL", url)
    monkeypatch.setenv(f"{prefix}_MAX_RETRIES", "1")
    result = materialize_stream(settings, system, stream, partition, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    error = failure.step_failure_data.error
    while error.cause is not None and "UnreachableError" not in error.cls_name:
        error = error.cause
    assert error.cls_name == "UnreachableError"
    message = error.message.strip()
    assert message.count(f"{prefix}_BASE_URL") == 1 and "IP_SANDBOX_URL" not in message
    assert message.startswith("integration_pipelines.connectors.errors.UnreachableError: Could not connect to ")
    assert f"at {url} (ConnectError: " in message and "2 attempts" in message and "\n" not in message
    assert "rerun later" not in message
    assert message.endswith(f"The URL comes from {prefix}_BASE_URL: check it, and that the service is up and "
                            "reachable from here.")
