"""Salesforce end to end: sandbox over real HTTP → extract assets → DuckDB, plus simple-salesforce as a judge.

Streams are unpartitioned SOQL queries: the first run selects everything, later runs add
`WHERE SystemModstamp >= <cursor - lookback>`. These tests pin both reads, the OAuth refresh-token flow (and its
failures), the errors a user reads, and the writes outbound syncs will use.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

from integration_pipelines.connectors.errors import ApiError
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.salesforce import FIELDS, OBJECTS, QUERY_PATH, SYSTEM
from integration_pipelines.connectors.writer import send_write

from .conftest import loaded_keys, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]
SECRETS = {name: value.sandbox for name, value in SYSTEM.values.items()}


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Salesforce's default pace (1 request/s, to spare the org's daily allocation) is for real orgs."""
    monkeypatch.setenv("SALESFORCE_REQUESTS_PER_SECOND", "1000")


def _emulator(sandbox):
    return sandbox.emulator("salesforce")


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(r["Id"] for r in _emulator(sandbox).dump(stream))


def _metadata(result, stream: str) -> dict:
    return result.asset_materializations_for_node(f"salesforce__{stream}")[0].metadata


def _queries(sandbox, stream: str) -> list[str]:
    """The SOQL of every first-page query the sandbox saw for one stream's object."""
    found = []
    for entry in sandbox.state.request_log("salesforce"):
        if entry["path"].endswith("/query") and entry["query"]:
            text = parse_qs(entry["query"])["q"][0]
            if f" FROM {OBJECTS[stream]} " in text:
                found.append(text)
    return found


def _token(sandbox_url: str) -> str:
    answer = httpx.post(f"{sandbox_url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": SECRETS["client_id"], "client_secret": SECRETS["client_secret"],
        "refresh_token": SECRETS["refresh_token"]})
    answer.raise_for_status()
    return answer.json()["access_token"]


@pytest.mark.parametrize("stream", STREAMS)
def test_full_read_follows_next_records_url_and_lands_exactly_the_sandbox_records(settings, sandbox, monkeypatch,
                                                                                  stream):
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "4")
    truth = _truth(sandbox, stream)
    assert len(truth) > 8, "the seeded org must fill several batches"
    metadata = _metadata(materialize_stream(settings, "salesforce", stream), stream)
    assert loaded_keys(settings, "salesforce", stream) == truth
    assert metadata["pages"].value == -(-len(truth) // 4) and metadata["incremental_since"].value == "full read"

    (soql,) = _queries(sandbox, stream)
    assert "WHERE" not in soql and soql.endswith("ORDER BY SystemModstamp, Id")
    paths = [r["path"] for r in sandbox.state.request_log("salesforce") if r["path"].startswith(QUERY_PATH)]
    assert paths[0] == QUERY_PATH and all(p.startswith(f"{QUERY_PATH}/01g") for p in paths[1:])
    assert len(paths) == metadata["pages"].value

    # the original JSON keeps Salesforce's attributes and exactly the selected fields; the cursor is SystemModstamp
    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_salesforce.{stream} LIMIT 1")[0]
    record = json.loads(raw)
    assert set(record) == {"attributes", *FIELDS[stream]} and record["attributes"]["type"] == OBJECTS[stream]
    assert cursor == record["SystemModstamp"] and cursor.endswith("+0000") and source == "salesforce"


def test_rerun_with_nothing_changed_filters_on_system_modstamp_and_writes_nothing(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "5")
    materialize_stream(settings, "salesforce", "contacts")
    before = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_salesforce.contacts ORDER BY _pk")
    sandbox.state.clear_requests()

    metadata = _metadata(materialize_stream(settings, "salesforce", "contacts"), "contacts")
    assert metadata["inserted"].value == 0 and metadata["updated"].value == 0
    # the five-minute lookback re-reads the latest change, which compares equal to what is stored
    assert metadata["unchanged"].value == metadata["records_read"].value >= 1
    (soql,) = _queries(sandbox, "contacts")
    assert " WHERE SystemModstamp >= 20" in soql and "'" not in soql, "SOQL datetimes are unquoted literals"
    assert warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_salesforce.contacts ORDER BY _pk") == before


@pytest.mark.parametrize("stream", STREAMS)
def test_touched_records_are_found_by_the_change_filter_and_updated(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "2")
    materialize_stream(settings, "salesforce", stream)
    touched = _emulator(sandbox).touch(stream, 3)
    sandbox.state.clear_requests()

    metadata = _metadata(materialize_stream(settings, "salesforce", stream), stream)
    assert metadata["updated"].value == 3 and metadata["inserted"].value == 0
    (soql,) = _queries(sandbox, stream)
    assert "WHERE SystemModstamp >=" in soql
    assert metadata["pages"].value >= 2, "two-record batches: nextRecordsUrl must be followed"
    assert loaded_keys(settings, "salesforce", stream) == _truth(sandbox, stream)

    truth = {r["Id"]: r for r in _emulator(sandbox).dump(stream)}
    rows = warehouse_rows(settings, f"SELECT _pk, _raw FROM raw_salesforce.{stream} WHERE _pk IN "
                          f"({', '.join('?' * len(touched))})", touched)
    assert len(rows) == 3
    for pk, raw in rows:
        assert json.loads(raw) == {k: truth[pk][k] for k in ("attributes", *FIELDS[stream])}


@pytest.mark.reliability
def test_twenty_percent_faults_still_land_exactly_the_sandbox_records(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "3")
    monkeypatch.setenv("SALESFORCE_MAX_RETRIES", "12")
    sandbox.set_faults("salesforce", error_rate=0.08, rate_limit_rate=0.08, drop_rate=0.04, retry_after=0, seed=11)
    for stream in STREAMS:
        materialize_stream(settings, "salesforce", stream)
        assert loaded_keys(settings, "salesforce", stream) == _truth(sandbox, stream)
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "2")
    for stream in STREAMS:  # the incremental path under the same faults
        _emulator(sandbox).touch(stream, 6)
        metadata = _metadata(materialize_stream(settings, "salesforce", stream), stream)
        assert metadata["updated"].value == 6 and metadata["inserted"].value == 0
        assert loaded_keys(settings, "salesforce", stream) == _truth(sandbox, stream)
    faults = [r for r in sandbox.state.request_log("salesforce") if r["fault"]]
    assert {f["fault"] for f in faults} == {"error", "rate_limit", "drop"}
    limited = [f for f in faults if f["fault"] == "rate_limit" and f["path"].startswith("/services/data/")]
    assert limited and all(f["status"] == 403 for f in limited), "REQUEST_LIMIT_EXCEEDED is a 403, retried"


def test_expired_session_mid_read_is_refreshed_once_and_the_read_completes(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SALESFORCE_PAGE_SIZE", "3")
    emulator = _emulator(sandbox)
    emulator.expire_sessions(after_requests=3)  # an admin revokes sessions between the third and fourth batch
    materialize_stream(settings, "salesforce", "contacts")
    assert loaded_keys(settings, "salesforce", "contacts") == _truth(sandbox, "contacts")
    assert emulator.tokens_issued == 2
    statuses = [r["status"] for r in sandbox.state.request_log("salesforce") if r["path"].startswith(QUERY_PATH)]
    assert statuses.count(401) == 1


def test_wrong_client_fails_naming_the_variables_and_hiding_the_secrets(settings, sandbox, monkeypatch):
    wrong = {"SALESFORCE_CLIENT_ID": "FAKE-wrong-consumer-key-0123456789",
             "SALESFORCE_CLIENT_SECRET": "FAKE-wrong-consumer-secret-0123456789",
             "SALESFORCE_REFRESH_TOKEN": "FAKE-wrong-refresh-token-0123456789"}
    for name, value in wrong.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SALESFORCE_BASE_URL", settings.sandbox_url)
    monkeypatch.setenv("SALESFORCE_TOKEN_URL", f"{settings.sandbox_url}/services/oauth2/token")
    result = materialize_stream(settings, "salesforce", "accounts", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "SALESFORCE_CLIENT_ID" in text and "SALESFORCE_CLIENT_SECRET" in text
    assert "400" in text and "invalid_client_id" in text and "client identifier invalid" in text
    assert not any(value in text for value in wrong.values())


def test_revoked_refresh_token_fails_with_salesforces_reason(settings, sandbox):
    _emulator(sandbox).revoke_refresh_tokens()
    result = materialize_stream(settings, "salesforce", "accounts", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "invalid_grant" in text and "expired access/refresh token" in text and "SALESFORCE_REFRESH_TOKEN" in text
    assert not any(value in text for value in SECRETS.values())


def test_salesforce_error_list_surfaces_readable_without_secrets(settings, sandbox):
    """Field-level security hides a selected field from the integration user: SOQL fails with INVALID_FIELD."""
    emulator = _emulator(sandbox)
    emulator.hide_field("Contact", "Title")
    result = materialize_stream(settings, "salesforce", "contacts", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "400" in text and "No such column 'Title' on entity 'Contact'" in text
    assert emulator.sessions and not any(session in text for session in emulator.sessions)
    assert not any(value in text for value in SECRETS.values()) and "Bearer" not in text

    resolved = resolve_system(SYSTEM, settings)
    with build_client(resolved) as client, pytest.raises(ApiError) as raised:
        client.request("GET", QUERY_PATH, params={"q": "SELECT Id FROM Account WHERE"})
    assert raised.value.status == 400 and "unexpected token: '<EOF>'" in str(raised.value)
    assert "MALFORMED_QUERY" in raised.value.body


def test_writers_upsert_by_external_id_and_never_duplicate_on_retry(settings, sandbox):
    resolved = resolve_system(SYSTEM, settings)
    emulator = _emulator(sandbox)
    contacts_before = len(_truth(sandbox, "contacts"))
    account_id = _truth(sandbox, "accounts")[0]

    def contacts_with(external_id: str) -> list[dict]:
        return [r for r in emulator.records["Contact"].values() if r["External_Id__c"] == external_id]

    with build_client(resolved) as client:
        one = {"FirstName": "Grace", "LastName": "Sync", "Email": "grace.sync@example.com", "AccountId": account_id}
        created = send_write(client, resolved, SYSTEM.writer("upsert_contact"), [one],
                             path_variables={"external_id": "ledger-1"})
        retried = send_write(client, resolved, SYSTEM.writer("upsert_contact"), [{**one, "Title": "CFO"}],
                             path_variables={"external_id": "ledger-1"})
        assert created.status == 201 and created.body["created"] is True and created.external_ids[0]
        assert retried.status in (200, 204) and retried.external_ids[0] in (None, created.external_ids[0])
        (stored,) = contacts_with("ledger-1")
        assert stored["Id"] == created.external_ids[0] and stored["Title"] == "CFO" and stored["Name"] == "Grace Sync"

        batch = [{"attributes": {"type": "Contact"}, "External_Id__c": f"ledger-batch-{n}", "LastName": f"Batch{n}"}
                 for n in range(3)]
        first = send_write(client, resolved, SYSTEM.writer("upsert_contacts"), batch)
        again = send_write(client, resolved, SYSTEM.writer("upsert_contacts"), batch)
        assert [r["created"] for r in first.body] == [True] * 3 and [r["created"] for r in again.body] == [False] * 3
        assert again.external_ids == first.external_ids and all(first.external_ids)

        # a plain create is not idempotent: the unique external id turns its retry into DUPLICATE_VALUE
        records = [{"attributes": {"type": "Contact"}, "External_Id__c": "ledger-new-1", "LastName": "Created"},
                   {"attributes": {"type": "Contact"}, "FirstName": "No last name"}]
        made = send_write(client, resolved, SYSTEM.writer("create_records"), records)
        redo = send_write(client, resolved, SYSTEM.writer("create_records"), records[:1])
        assert made.status == 200 and made.body[0]["success"] and made.external_ids[1] is None
        assert made.body[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
        assert redo.body[0]["success"] is False and redo.body[0]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
        assert len(contacts_with("ledger-new-1")) == 1

        deal = {"Name": "Sync deal", "StageName": "Qualification", "CloseDate": "2026-04-30", "Amount": 1200.0,
                "AccountId": account_id, "External_Id__c": "deal-ledger-1"}
        opportunity = send_write(client, resolved, SYSTEM.writer("create_opportunity"), [deal])
        with pytest.raises(ApiError) as duplicate:
            send_write(client, resolved, SYSTEM.writer("create_opportunity"), [deal])
    assert opportunity.status == 201 and opportunity.external_ids[0] in _truth(sandbox, "opportunities")
    assert duplicate.value.status == 400 and "duplicate value found: External_Id__c" in str(duplicate.value)
    saved = emulator.records["Opportunity"][opportunity.external_ids[0]]
    assert (saved["Probability"], saved["IsClosed"], saved["IsWon"]) == (10, False, False)
    assert len(_truth(sandbox, "contacts")) == contacts_before + 1 + 3 + 1


def test_writes_are_seen_by_the_next_incremental_read(settings, sandbox):
    materialize_stream(settings, "salesforce", "contacts")
    resolved = resolve_system(SYSTEM, settings)
    with build_client(resolved) as client:
        send_write(client, resolved, SYSTEM.writer("upsert_contact"), [{"LastName": "Newcomer"}],
                   path_variables={"external_id": "ledger-42"})
    metadata = _metadata(materialize_stream(settings, "salesforce", "contacts"), "contacts")
    assert metadata["inserted"].value == 1 and metadata["updated"].value == 0
    assert loaded_keys(settings, "salesforce", "contacts") == _truth(sandbox, "contacts")


class _HttpsToHttp(HTTPAdapter):
    """simple-salesforce always builds https URLs; the sandbox speaks plain http on loopback."""

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def, override]
        request.url = "http://" + request.url.removeprefix("https://")
        return super().send(request, **kwargs)


def test_simple_salesforce_pages_a_query_and_upserts_unchanged(sandbox_server, sandbox):
    session = requests.Session()
    session.mount("https://", _HttpsToHttp())
    sf = Salesforce(instance_url=sandbox_server.url, session_id=_token(sandbox_server.url), session=session)
    truth = _truth(sandbox, "contacts")
    small = {"Sforce-Query-Options": "batchSize=7"}

    first = sf.query("SELECT Id, Email FROM Contact ORDER BY LastName", headers=small)
    assert first["totalSize"] == len(truth) and first["done"] is False and len(first["records"]) == 7
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=small)
    assert len(second["records"]) == 7 and {r["Id"] for r in first["records"]}.isdisjoint(
        r["Id"] for r in second["records"])
    everything = sf.query_all("SELECT Id, Email FROM Contact", headers=small)
    assert sorted(r["Id"] for r in everything["records"]) == truth and everything["totalSize"] == len(truth)
    assert sf.api_usage["api-usage"].used >= 3

    assert sf.Contact.upsert("External_Id__c/sdk-1", {"LastName": "Sdk"}) == 201
    assert sf.Contact.upsert("External_Id__c/sdk-1", {"LastName": "Sdk", "Title": "CTO"}) in (200, 204)
    found = sf.query("SELECT Id, Title FROM Contact WHERE External_Id__c = 'sdk-1'")
    assert found["totalSize"] == 1 and found["records"][0]["Title"] == "CTO"
    assert len(_truth(sandbox, "contacts")) == len(truth) + 1


def test_sandbox_answers_like_salesforce_at_its_limits(sandbox_server, sandbox):
    url = sandbox_server.url
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {_token(url)}"}) as http:
        full = http.get(QUERY_PATH, params={"q": "SELECT Id FROM Contact"},
                        headers={"Sforce-Query-Options": "batchSize=5000"}).json()
        assert full["done"] is True and "nextRecordsUrl" not in full, "batches hold at most 2,000 records"

        stale = http.get(f"{QUERY_PATH}/01gHs00000AAAAAAAA-2000")
        assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"

        quoted = http.get(QUERY_PATH, params={"q": "SELECT Id FROM Case WHERE SystemModstamp > '2026-01-01'"})
        assert quoted.status_code == 400 and "should not be enclosed in quotes" in quoted.json()[0]["message"]

        filtered = http.get(QUERY_PATH, params={"q": "SELECT Id, IsWon FROM Opportunity WHERE StageName = "
                                                "'closed won' AND Amount >= 0 ORDER BY Amount DESC LIMIT 3"}).json()
        assert 0 < len(filtered["records"]) <= 3 and all(r["IsWon"] for r in filtered["records"])

        too_many = http.post(f"{QUERY_PATH.rsplit('/', 1)[0]}/composite/sobjects", json={
            "allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "LastName": str(n)}
                                            for n in range(201)]})
        assert too_many.status_code == 400 and too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"

        read_only = http.patch(f"{QUERY_PATH.rsplit('/', 1)[0]}/sobjects/Opportunity/External_Id__c/x",
                               json={"Name": "x", "StageName": "Closed Won", "CloseDate": "2026-01-01",
                                     "IsWon": True})
        assert read_only.status_code == 400 and read_only.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert read_only.json()[0]["fields"] == ["IsWon"]

    assert httpx.get(f"{url}/services/data/v99.0/query").status_code == 404
    anonymous = httpx.get(f"{url}{QUERY_PATH}", params={"q": "SELECT Id FROM Account"})
    assert anonymous.status_code == 401 and anonymous.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

    bad_secret = httpx.post(f"{url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": SECRETS["client_id"], "client_secret": "nope",
        "refresh_token": SECRETS["refresh_token"]})
    assert bad_secret.status_code == 400 and bad_secret.json()["error"] == "invalid_client"
    machine = httpx.post(f"{url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": SECRETS["client_id"],
        "client_secret": SECRETS["client_secret"]}).json()
    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"} <= set(machine)
    assert machine["instance_url"] == url

    sandbox.set_faults("salesforce", rate_limit_rate=1.0)
    limited = httpx.get(f"{url}{QUERY_PATH}", params={"q": "SELECT Id FROM Account"})
    assert limited.status_code == 403 and limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert limited.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_sandbox_realises_the_worlds_crm_anomalies(sandbox):
    world, emulator = sandbox.state.world, _emulator(sandbox)
    people = {p.key: p for p in world.people}
    contacts = {r["Id"]: r for r in emulator.dump("contacts")}

    (mixed_id,) = emulator.anomaly_ids["crm_email_case_differs"]
    person = people[world.anomalies["crm_email_case_differs"]]
    assert contacts[mixed_id]["Email"] != person.email and contacts[mixed_id]["Email"].lower() == person.email

    first_id, second_id = emulator.anomaly_ids["crm_duplicate_contact"]
    first, second = contacts[first_id], contacts[second_id]
    assert (first["Name"], first["Phone"]) == (second["Name"], second["Phone"])
    assert first["Email"].lower() != second["Email"].lower() and second["AccountId"] is None

    assert len(contacts) == len([p for p in world.people if p.in_crm]) + 1
    assert len(emulator.dump("accounts")) == len(world.companies)
    opportunities = emulator.dump("opportunities")
    assert len(opportunities) == len(world.deals)
    won = sum(d.stage == "closedwon" for d in world.deals)
    assert sum(o["IsWon"] for o in opportunities) == won == sum(o["StageName"] == "Closed Won" for o in opportunities)
