"""The older ERP platform end to end: SOAP 1.2 + WS-Security UsernameToken sandbox → extract assets → DuckDB."""

from __future__ import annotations

import math

import pytest

from integration_pipelines.connectors.legacy_erp import SYSTEM
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.connectors.soap import SoapFaultError, build_soap_client, send_soap_write

from .conftest import loaded_keys, materialize_stream

KEYS = {"stock_levels": "id", "purchase_orders": "poNumber"}


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(r[KEYS[stream]] for r in sandbox.emulator("legacy_erp").dump(stream))


def _metadata(result, stream: str) -> dict:
    return result.asset_materializations_for_node(f"legacy_erp__{stream}")[0].metadata


@pytest.mark.parametrize("stream", list(KEYS))
def test_pages_land_exactly_the_erp_records_and_reruns_read_changes_only(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("LEGACY_ERP_PAGE_SIZE", "5")
    truth = _truth(sandbox, stream)
    metadata = _metadata(materialize_stream(settings, "legacy_erp", stream), stream)
    assert loaded_keys(settings, "legacy_erp", stream) == truth
    assert metadata["pages"].value == math.ceil(len(truth) / 5) > 2

    sandbox.emulator("legacy_erp").touch(stream, 2)
    metadata = _metadata(materialize_stream(settings, "legacy_erp", stream), stream)
    assert metadata["incremental_since"].value != "full read"
    assert metadata["updated"].value == 2 and metadata["inserted"].value == 0
    assert metadata["records_read"].value < len(truth)
    assert loaded_keys(settings, "legacy_erp", stream) == truth


def test_create_purchase_order_is_idempotent_by_po_number(settings, sandbox):
    order = {"poNumber": "REQ-2026-0042", "supplier": "Northwind Supplies", "warehouse": "EAST",
             "lines": {"line": [{"sku": "CABLE", "quantity": 40, "unitPrice": "3.10"}]}}
    with build_soap_client(resolve_system(SYSTEM, settings)) as client:
        first = send_soap_write(client, "create_purchase_order", order)
        again = send_soap_write(client, "create_purchase_order", order)
    assert first.body["result"] == "created" and again.body["result"] == "exists"
    assert first.external_id == again.external_id == "REQ-2026-0042"
    assert sandbox.emulator("legacy_erp").creates == 1
    assert _truth(sandbox, "purchase_orders").count("REQ-2026-0042") == 1


def test_wrong_password_surfaces_the_soap12_fault_without_the_password(settings, sandbox, monkeypatch):
    monkeypatch.setenv("LEGACY_ERP_HOST", "erp.example.internal")
    monkeypatch.setenv("LEGACY_ERP_USERNAME", SYSTEM.values["username"].sandbox)
    monkeypatch.setenv("LEGACY_ERP_PASSWORD", "FAKE-not-the-password-99")
    monkeypatch.setenv("LEGACY_ERP_BASE_URL", settings.sandbox_url)
    with build_soap_client(resolve_system(SYSTEM, settings)) as client, pytest.raises(SoapFaultError) as info:
        client.call("GetStockLevels", {"page": 1, "pageSize": 5})
    message = str(info.value)
    assert info.value.code == "env:Sender/wsse:FailedAuthentication"
    assert "could not be authenticated" in message and "LEGACY_ERP_PASSWORD" in message
    assert "FAKE-not-the-password-99" not in message
    assert sandbox.emulator("legacy_erp").auth_failures == ["bad password digest"]


def test_server_busy_faults_are_retried(settings, sandbox, monkeypatch):
    monkeypatch.setenv("LEGACY_ERP_PAGE_SIZE", "5")
    monkeypatch.setenv("LEGACY_ERP_MAX_RETRIES", "10")
    sandbox.set_faults("legacy_erp", error_rate=0.3, rate_limit_rate=0.3, retry_after=0, seed=2)
    materialize_stream(settings, "legacy_erp", "stock_levels")
    assert loaded_keys(settings, "legacy_erp", "stock_levels") == _truth(sandbox, "stock_levels")
    assert any(r["fault"] for r in sandbox.state.request_log("legacy_erp"))
