"""simple-salesforce against the Salesforce emulator, over real HTTP: query (with parent relationships), retrieve,
create, upsert replayed by external id (Salesforce has no idempotency key), update, delete (recycle bin, queryAll),
describe, session errors, not found, invalid fields and unknown resources.

Expected values are written by hand from Salesforce's REST API developer guide (error lists
`[{"message", "errorCode", "fields"?}]`, status codes per call), never computed by the emulator's code.
"""

from __future__ import annotations

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

CLIENT_ID = "FAKE-sandbox-salesforce-consumer-key-3MVG9integrationpipelines"
CLIENT_SECRET = "FAKE-sandbox-salesforce-consumer-secret-0000"
REFRESH_TOKEN = "FAKE-sandbox-salesforce-refresh-token-5Aep861integrationpipelines"
VERSION = "59.0"  # simple-salesforce 1.12's default API version


class _HttpsToHttp(HTTPAdapter):
    """simple-salesforce always builds https URLs; the sandbox serves plain HTTP on loopback."""

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def, override]
        request.url = "http://" + request.url.removeprefix("https://")
        return super().send(request, **kwargs)


def _session_id(url: str) -> str:
    answer = httpx.post(f"{url}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN})
    answer.raise_for_status()
    return answer.json()["access_token"]


def _sf(url: str, session_id: str) -> Salesforce:
    session = requests.Session()
    session.mount("https://", _HttpsToHttp())
    return Salesforce(instance_url=url, session_id=session_id, session=session)


@pytest.fixture
def sf(sandbox_server, sandbox) -> Salesforce:  # type: ignore[no-untyped-def]
    return _sf(sandbox_server.url, _session_id(sandbox_server.url))


def test_create_retrieve_update_and_query(sf):
    account = sf.Account.create({"Name": "Analytical Engines Ltd", "Industry": "Technology"})
    assert account["success"] is True and account["errors"] == [] and account["id"].startswith("001")
    contact = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@engines.example.com",
                                 "AccountId": account["id"]})
    got = sf.Contact.get(contact["id"])
    assert got["attributes"] == {"type": "Contact",
                                 "url": f"/services/data/v{VERSION}/sobjects/Contact/{contact['id']}"}
    assert (got["Name"], got["Email"], got["AccountId"]) == ("Ada Lovelace", "ada@engines.example.com",
                                                             account["id"])
    assert got["IsDeleted"] is False

    assert sf.Contact.update(contact["id"], {"Title": "Analyst"}) == 204
    assert sf.Contact.get(contact["id"])["Title"] == "Analyst"

    found = sf.query(f"SELECT Id, Title FROM Contact WHERE Id = '{contact['id']}'")
    assert found["totalSize"] == 1 and found["done"] is True
    assert found["records"][0]["Title"] == "Analyst"
    listed = sf.query_all("SELECT Id FROM Account")
    assert account["id"] in [r["Id"] for r in listed["records"]] and listed["totalSize"] == len(listed["records"])


def test_parent_relationship_fields_nest_the_parent_record(sf):
    account = sf.Account.create({"Name": "Difference Engines"})
    with_parent = sf.Contact.create({"LastName": "Babbage", "AccountId": account["id"]})
    orphan = sf.Contact.create({"LastName": "Orphan", "Email": "orphan@example.com"})

    rows = sf.query("SELECT Id, LastName, Account.Name, Account.Industry FROM Contact "
                    f"WHERE Id IN ('{with_parent['id']}', '{orphan['id']}') ORDER BY LastName")["records"]
    assert [r["LastName"] for r in rows] == ["Babbage", "Orphan"]
    assert rows[0]["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v{VERSION}/sobjects/Account/{account['id']}"},
        "Name": "Difference Engines", "Industry": None}
    assert rows[1]["Account"] is None, "a contact without an account has a null parent"
    assert list(rows[0]) == ["attributes", "Id", "LastName", "Account"]

    by_parent = sf.query("SELECT Id FROM Contact WHERE Account.Name = 'difference engines'")
    assert [r["Id"] for r in by_parent["records"]] == [with_parent["id"]], "SOQL text comparisons ignore case"

    with pytest.raises(SalesforceMalformedRequest) as bad_relationship:
        sf.query("SELECT Id, Acount.Name FROM Contact")
    assert bad_relationship.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "Didn't understand relationship 'Acount' in field path" in bad_relationship.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.query("SELECT Id, Account.Nmae FROM Contact")
    assert bad_field.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nmae' on entity 'Account'" in bad_field.value.content[0]["message"]


def test_upsert_by_external_id_is_the_safe_replay(sf, sandbox):
    before = len(sandbox.emulator("salesforce").dump("contacts"))
    assert sf.Contact.upsert("External_Id__c/crm-42", {"LastName": "Replay"}) == 201
    assert sf.Contact.upsert("External_Id__c/crm-42", {"LastName": "Replay"}) in (200, 204)
    assert len(sandbox.emulator("salesforce").dump("contacts")) == before + 1
    assert sf.Contact.get_by_custom_id("External_Id__c", "crm-42")["LastName"] == "Replay"


def test_delete_moves_the_record_to_the_recycle_bin(sf):
    contact = sf.Contact.create({"LastName": "Temporary", "External_Id__c": "tmp-1"})
    assert sf.Contact.delete(contact["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Contact.get(contact["id"])
    assert gone.value.status == 404
    assert gone.value.content == [{"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.delete(contact["id"])
    query = f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{contact['id']}'"
    assert sf.query(query)["totalSize"] == 0, "query leaves deleted records out"
    assert sf.query_all(query, include_deleted=True)["records"][0]["IsDeleted"] is True, "queryAll keeps them"
    # an external id held by a deleted record is free again
    assert sf.Contact.upsert("External_Id__c/tmp-1", {"LastName": "Reborn"}) == 201


def test_describe(sf):
    described = sf.Contact.describe()
    fields = {f["name"]: f for f in described["fields"]}
    assert described["name"] == "Contact" and described["keyPrefix"] == "003"
    assert fields["AccountId"]["referenceTo"] == ["Account"] and fields["AccountId"]["relationshipName"] == "Account"
    assert fields["Name"]["updateable"] is False and fields["External_Id__c"]["externalId"] is True
    assert "Contact" in [o["name"] for o in sf.describe()["sobjects"]]
    assert sf.Contact.metadata()["objectDescribe"]["name"] == "Contact"


def test_errors_as_salesforce_sends_them(sf, sandbox_server):
    with pytest.raises(SalesforceExpiredSession) as expired:
        _sf(sandbox_server.url, "00DFAKE!not-a-session").query("SELECT Id FROM Account")
    assert expired.value.status == 401
    assert expired.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Contact.get("003Hs00000NOPE1AAA")
    assert missing.value.content == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]

    with pytest.raises(SalesforceMalformedRequest) as unknown_field:
        sf.Contact.create({"LastName": "X", "Shoe_Size__c": 44})
    assert unknown_field.value.content == [{"message": "No such column 'Shoe_Size__c' on sobject of type Contact",
                                            "errorCode": "INVALID_FIELD", "fields": ["Shoe_Size__c"]}]

    headers = {"Authorization": f"Bearer {sf.session_id}"}
    base = f"{sandbox_server.url}/services/data/v{VERSION}"
    unknown = httpx.get(f"{base}/nonexistent", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json() == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    wrong_method = httpx.put(f"{base}/sobjects/Contact/003Hs00000NOPE1AAA", headers=headers, json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json() == [{"errorCode": "METHOD_NOT_ALLOWED",
                                    "message": "HTTP Method 'PUT' not allowed. Allowed are HEAD,GET,PATCH,DELETE"}]
    with pytest.raises(SalesforceGeneralError) as raw:
        sf.restful("sobjects/Contact/003Hs00000NOPE1AAA", method="PUT", json={})
    assert raw.value.status == 405
