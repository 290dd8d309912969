"""hubspot-api-client against the HubSpot emulator, over real HTTP: list, retrieve, create, upsert replayed by email
(HubSpot has no idempotency key: a unique property is the replay-safe write), update, archive, search, auth error,
not found and unknown endpoints.

Expected values are written by hand from HubSpot's CRM v3 reference (objects `{id, properties, createdAt,
updatedAt, archived}` with string property values; errors `{"status": "error", "message", "correlationId",
"category"}`), never computed by the emulator's code.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException, NotFoundException, UnauthorizedException

TOKEN = "pat-FAKE-sandbox-0000-integration-pipelines"  # the portal's (fake) private app token


@pytest.fixture
def client(sandbox_server, sandbox) -> HubSpot:  # type: ignore[no-untyped-def]
    return HubSpot(access_token=TOKEN, host=sandbox_server.url)


def _create(client: HubSpot, **properties: str):  # type: ignore[no-untyped-def]
    return client.crm.contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties=properties))


def test_list_retrieve_and_create(client):
    page = client.crm.contacts.basic_api.get_page(limit=3, properties=["email"])
    assert len(page.results) == 3 and page.paging.next.after
    assert [int(c.id) for c in page.results] == sorted(int(c.id) for c in page.results), "lists go by id"
    assert all(set(c.properties) == {"email"} for c in page.results)

    made = _create(client, email="ada@example.com", firstname="Ada", lastname="Lovelace")
    assert made.archived is False and made.properties["email"] == "ada@example.com"
    assert made.properties["hs_object_id"] == made.id, "hs_object_id is the id, as a string"
    got = client.crm.contacts.basic_api.get_by_id(made.id, properties=["firstname", "lastname", "jobtitle"])
    assert got.properties == {"firstname": "Ada", "lastname": "Lovelace", "jobtitle": None}
    default = client.crm.contacts.basic_api.get_by_id(made.id)
    assert set(default.properties) == {"firstname", "lastname", "email", "createdate", "lastmodifieddate",
                                       "hs_object_id"}, "without `properties` HubSpot returns its default set"
    assert made.id in [c.id for c in client.crm.contacts.get_all()]


def test_duplicate_email_is_a_conflict_and_upsert_replays_safely(client, sandbox):
    made = _create(client, email="once@example.com", firstname="Once")
    with pytest.raises(ApiException) as conflict:
        _create(client, email="ONCE@example.com", firstname="Twice")
    assert conflict.value.status == 409
    body = json.loads(conflict.value.body)
    assert body["status"] == "error" and body["category"] == "CONFLICT" and made.id in body["message"]

    def upsert(**properties: str):  # type: ignore[no-untyped-def]
        batch = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[SimplePublicObjectBatchInputUpsert(
            id_property="email", id="replay@example.com", properties=properties)])
        return client.crm.contacts.batch_api.upsert(batch).results[0]

    first, again = upsert(firstname="Replay"), upsert(firstname="Replay")
    assert first.new is True and again.new is False and again.id == first.id
    assert len([c for c in sandbox.emulator("hubspot").dump("contacts")
                if c["properties"]["email"] == "replay@example.com"]) == 1


def test_update_and_archive(client):
    made = _create(client, email="grace@example.com", firstname="Grace", lastname="Hopper")
    updated = client.crm.contacts.basic_api.update(
        made.id, simple_public_object_input=SimplePublicObjectInput(properties={"jobtitle": "Rear Admiral"}))
    assert updated.id == made.id and updated.properties["jobtitle"] == "Rear Admiral"
    assert updated.updated_at >= made.updated_at
    assert client.crm.contacts.basic_api.get_by_id(made.id, properties=["jobtitle", "lastname"]).properties == {
        "jobtitle": "Rear Admiral", "lastname": "Hopper"}

    with pytest.raises(ApiException) as unknown_property:
        client.crm.contacts.basic_api.update(
            made.id, simple_public_object_input=SimplePublicObjectInput(properties={"shoe_size": "44"}))
    assert unknown_property.value.status == 400
    assert json.loads(unknown_property.value.body)["category"] == "VALIDATION_ERROR"

    assert client.crm.contacts.basic_api.archive(made.id) is None  # 204, no body
    with pytest.raises(NotFoundException) as gone:
        client.crm.contacts.basic_api.get_by_id(made.id)
    assert gone.value.status == 404
    archived = client.crm.contacts.basic_api.get_page(limit=100, archived=True)
    assert made.id in [c.id for c in archived.results] and all(c.archived for c in archived.results)
    assert made.id not in [c.id for c in client.crm.contacts.get_all()]


def test_search_with_filter_groups(client):
    ann = _create(client, email="ann@search.example.com", firstname="Ann", lifecyclestage="lead")
    bob = _create(client, email="bob@search.example.com", firstname="Bob", lifecyclestage="customer")

    def search(*groups: list[Filter], **kwargs):  # type: ignore[no-untyped-def]
        return client.crm.contacts.search_api.do_search(public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=g) for g in groups], properties=["email", "firstname"], **kwargs))

    same_domain = [Filter(property_name="email", operator="CONTAINS_TOKEN", value="*@search.example.com")]
    both = search(same_domain)
    assert both.total == 2 and sorted(r.id for r in both.results) == sorted([ann.id, bob.id])
    leads = search([*same_domain, Filter(property_name="lifecyclestage", operator="EQ", value="lead")])
    assert [r.id for r in leads.results] == [ann.id], "filters in one group are ANDed"
    either = search([Filter(property_name="firstname", operator="EQ", value="ann")],
                    [Filter(property_name="firstname", operator="EQ", value="Bob")])
    assert sorted(r.id for r in either.results) == sorted([ann.id, bob.id]), "groups are ORed; EQ ignores case"
    paged = search(same_domain, limit=1)
    assert len(paged.results) == 1 and paged.total == 2 and paged.paging.next.after
    rest = search(same_domain, limit=1, after=paged.paging.next.after)
    assert {paged.results[0].id, rest.results[0].id} == {ann.id, bob.id}

    with pytest.raises(ApiException) as bad_operator:
        search([Filter(property_name="email", operator="RESEMBLES", value="x")])
    assert bad_operator.value.status == 400


def test_bad_token_not_found_and_unknown_endpoint(client, sandbox_server):
    with pytest.raises(UnauthorizedException) as denied:
        HubSpot(access_token="pat-FAKE-wrong", host=sandbox_server.url).crm.contacts.basic_api.get_page(limit=1)
    assert denied.value.status == 401
    body = json.loads(denied.value.body)
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION" and body["correlationId"]

    with pytest.raises(NotFoundException) as missing:
        client.crm.contacts.basic_api.get_by_id("1")
    assert missing.value.status == 404

    headers = {"Authorization": f"Bearer {TOKEN}"}
    unknown = httpx.get(f"{sandbox_server.url}/crm/v3/nonexistent", headers=headers)
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"status", "message", "correlationId", "category"}
    assert unknown.json()["status"] == "error"
    wrong_method = httpx.put(f"{sandbox_server.url}/crm/v3/objects/contacts/1", headers=headers, json={})
    assert wrong_method.status_code == 405 and wrong_method.json()["status"] == "error"
