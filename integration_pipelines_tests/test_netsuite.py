"""NetSuite SuiteTalk end to end: the SOAP sandbox over real HTTP → extract assets → DuckDB; TBA, faults, upsert."""

from __future__ import annotations

import functools
import json
import math
import time

import httpx
import pytest

from integration_pipelines.connectors import soap as soap_module
from integration_pipelines.connectors.netsuite import ENDPOINT, SYSTEM
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.connectors.soap import SoapFaultError, build_soap_client, send_soap_write

from .conftest import loaded_keys, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(r["internalId"] for r in sandbox.emulator("netsuite").dump(stream))


def _metadata(result, stream: str) -> dict:
    return result.asset_materializations_for_node(f"netsuite__{stream}")[0].metadata


def _operations(sandbox) -> int:
    return len([r for r in sandbox.state.request_log("netsuite") if r["method"] == "POST"])


@pytest.mark.parametrize("stream", STREAMS)
def test_search_pages_land_exactly_the_sandbox_records(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("NETSUITE_PAGE_SIZE", "5")
    truth = _truth(sandbox, stream)
    assert len(truth) > 5, "every stream must span several pages"
    metadata = _metadata(materialize_stream(settings, "netsuite", stream), stream)
    assert loaded_keys(settings, "netsuite", stream) == truth
    assert metadata["pages"].value == math.ceil(len(truth) / 5) == _operations(sandbox)
    raw, cursor = warehouse_rows(settings, f"SELECT _raw, _cursor FROM raw_netsuite.{stream} LIMIT 1")[0]
    assert json.loads(raw)["lastModifiedDate"] == cursor and "+00:00" in cursor


def test_rerun_after_touch_reads_only_what_changed(settings, sandbox, monkeypatch):
    monkeypatch.setenv("NETSUITE_PAGE_SIZE", "5")
    materialize_stream(settings, "netsuite", "customers")
    touched = sandbox.emulator("netsuite").touch("customers", 3)
    metadata = _metadata(materialize_stream(settings, "netsuite", "customers"), "customers")
    assert metadata["incremental_since"].value != "full read"
    assert metadata["updated"].value == 3 and metadata["inserted"].value == 0
    assert metadata["records_read"].value < len(_truth(sandbox, "customers"))
    assert loaded_keys(settings, "netsuite", "customers") == _truth(sandbox, "customers")
    balances = dict(warehouse_rows(settings, "SELECT _pk, balance FROM raw_netsuite.customers"))
    truth = {r["internalId"]: r["balance"] for r in sandbox.emulator("netsuite").dump("customers")}
    assert all(balances[key] == truth[key] for key in touched)


def test_retried_upsert_by_external_id_leaves_one_purchase_order(settings, sandbox):
    record = {"externalId": "SYNC-PO-42", "entity": {"internalId": "801"}, "memo": "restock cables",
              "itemList": {"item": [{"item": {"internalId": "205"}, "quantity": 12, "rate": "3.40"}]}}
    with build_soap_client(resolve_system(SYSTEM, settings)) as client:
        first = send_soap_write(client, "upsert_purchase_order", record)
        second = send_soap_write(client, "upsert_purchase_order", record)  # a retry of the same write
    assert first.external_id == second.external_id
    ours = [r for r in sandbox.emulator("netsuite").dump("purchase_orders") if r.get("externalId") == "SYNC-PO-42"]
    assert len(ours) == 1 and ours[0]["total"] == pytest.approx(40.8)
    materialize_stream(settings, "netsuite", "purchase_orders")
    assert first.external_id in loaded_keys(settings, "netsuite", "purchase_orders")


def test_concurrency_fault_is_retried_with_backoff_and_lands_exactly(settings, sandbox, monkeypatch):
    monkeypatch.setenv("NETSUITE_PAGE_SIZE", "5")
    monkeypatch.setenv("NETSUITE_MAX_RETRIES", "10")
    sandbox.set_faults("netsuite", rate_limit_rate=0.3, error_rate=0.1, seed=5)
    materialize_stream(settings, "netsuite", "invoices")
    assert loaded_keys(settings, "netsuite", "invoices") == _truth(sandbox, "invoices")
    fired = [r for r in sandbox.state.request_log("netsuite") if r["fault"] == "rate_limit"]
    assert fired and all(r["status"] == 500 for r in fired)  # ExceededConcurrentRequestLimitFault, as NetSuite


def test_bad_signature_is_a_clear_fault_without_secrets(settings, sandbox, monkeypatch):
    wrong = {"NETSUITE_ACCOUNT_ID": SYSTEM.values["account_id"].sandbox,
             "NETSUITE_ACCOUNT_HOST": SYSTEM.values["account_host"].sandbox,
             "NETSUITE_CONSUMER_KEY": SYSTEM.values["consumer_key"].sandbox,
             "NETSUITE_CONSUMER_SECRET": "FAKE-wrong-consumer-secret-123",
             "NETSUITE_TOKEN_ID": SYSTEM.values["token_id"].sandbox,
             "NETSUITE_TOKEN_SECRET": SYSTEM.values["token_secret"].sandbox,
             "NETSUITE_BASE_URL": settings.sandbox_url}
    for name, value in wrong.items():
        monkeypatch.setenv(name, value)
    result = materialize_stream(settings, "netsuite", "customers", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "INVALID_LOGIN_ATTEMPT" in text and "Invalid login attempt" in text and "NETSUITE_TOKEN_ID" in text
    assert "FAKE-wrong-consumer-secret-123" not in text
    assert sandbox.emulator("netsuite").auth_failures == ["bad signature"]
    assert _operations(sandbox) == 1, "a refused login is not retried"


def test_stale_timestamp_and_reused_nonce_are_refused(settings, sandbox, monkeypatch):
    resolved = resolve_system(SYSTEM, settings)
    stale = functools.partial(soap_module.token_passport, timestamp=int(time.time()) - 3600)
    with build_soap_client(resolved) as client:
        monkeypatch.setattr(soap_module, "token_passport", stale)
        with pytest.raises(SoapFaultError) as info:
            client.call("searchMoreWithId", {"searchId": "x", "pageIndex": 2})
        assert "INVALID_LOGIN_ATTEMPT" in info.value.detail_codes
        monkeypatch.undo()
        body, headers = client.envelope("searchMoreWithId", {"searchId": "x", "pageIndex": 2}, {})
    replies = [httpx.post(settings.sandbox_url + ENDPOINT, content=body, headers=headers) for _ in range(2)]
    assert "INVALID_LOGIN_ATTEMPT" not in replies[0].text and "INVALID_LOGIN_ATTEMPT" in replies[1].text
    assert sandbox.emulator("netsuite").auth_failures == ["stale timestamp", "reused nonce"]


def test_wsdl_served_by_the_sandbox_loads_from_its_url(settings, sandbox, monkeypatch):
    monkeypatch.setenv("NETSUITE_WSDL", f"{settings.sandbox_url}{ENDPOINT}?wsdl")
    with build_soap_client(resolve_system(SYSTEM, settings)) as client:
        result = client.call("search", {"searchRecord": {
            "_type": "{urn:common_2024_2.platform.webservices.netsuite.com}ItemSearchBasic"}},
            {"searchPreferences": {"pageSize": 5}})
    assert result["totalRecords"] == len(_truth(sandbox, "inventory_items")) and result["totalPages"] == 2
