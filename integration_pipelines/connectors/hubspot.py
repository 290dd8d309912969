"""HubSpot (CRM v3). Bearer private-app token, `limit`/`after` lists, and a search endpoint for changes.

The list endpoint (`GET /crm/v3/objects/{type}`) has no time filter, so the streams are unpartitioned: the first
read lists everything, and every later read asks the search endpoint for what changed since the stored cursor
(`lastmodifieddate` for contacts, `hs_lastmodifieddate` for companies and deals), oldest change first.

Facts the spec leans on:
- Properties are opt-in: without `properties=` HubSpot returns a handful of defaults, and a search with a
  `properties` array returns exactly those. Both requests below name the same explicit list, so an unchanged
  record is byte-for-byte the same whichever endpoint returned it, and a rerun writes nothing.
- The search index trails writes by a few seconds, hence the lookback window on the cursor.
- Search answers at most 10,000 results per query (HubSpot answers 400 beyond that). Sorting by the
  modification date ascending makes an interrupted incremental read safe to rerun from its cursor; a change
  set larger than 10,000 records fails loudly with HubSpot's message rather than silently missing records, and
  a `full_refresh` run (the list endpoint) is the way through it.
- Search filter values are strings in HubSpot's model (the SDK's `Filter.value: str`): `{cursor_ms!s}` renders
  the cursor as a string, where a bare `{cursor_ms}` would send a JSON number.
- A deal's contact is an association, not a property. The list endpoint returns associations when asked
  (`associations=contacts`); the search endpoint cannot, so `deal_contacts` lists every deal's associated
  contact ids in full each run (100 deals per request) instead of riding on the incremental deal read.
  `contact_companies` does the same for each contact's companies (`associations=companies`): the contact's
  `company` property is free text a person typed, the association is the link to a company record, and scenario 9's
  company summary rolls subscriptions up by it. HubSpot lists a primary association twice (once with the primary
  type, once unlabeled), so readers take distinct ids.
- Writes have no idempotency key: contacts are upserted by their unique `email` (matched case-insensitively,
  as HubSpot does), which makes a retried batch harmless; a retried deal *create* is not, so syncs must record
  created ids in their ledger before retrying. Updates by id (`batch/update` of contacts, companies, deals) set
  absolute values, so a re-sent batch is harmless too, and they never create a record.
- A property defined with "unique values" (`hasUniqueValue`, up to 10 per object) is a second unique key:
  `batch/upsert` takes it as `idProperty` for any object type, not only contacts' email. The deals the
  quote → deal sync creates carry such a property (`quote_id`), so a re-sent upsert updates the deal it
  created instead of creating a second one, even when HubSpot applied the first attempt but the answer was lost.
"""

from __future__ import annotations

from .pagination import NextTokenPaginator
from .spec import BearerAuthSpec, EnvValue, Idempotency, RequestTemplate, Scopes, Stream, System, Writer

#: Every property a stream lands, sent explicitly on both the list and the search request.
PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": (
        "email", "firstname", "lastname", "phone", "company", "jobtitle", "lifecyclestage", "address", "city",
        "zip", "country", "createdate", "lastmodifieddate", "hs_object_id",
    ),
    "companies": (
        "name", "domain", "phone", "city", "country", "industry", "numberofemployees", "lifecyclestage",
        "createdate", "hs_lastmodifieddate", "hs_object_id",
    ),
    "deals": (
        "dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate", "createdate",
        "hs_lastmodifieddate", "hs_object_id",
    ),
}

#: The property whose change moves a record's `updatedAt`; contacts predate the `hs_` naming.
MODIFIED_PROPERTY: dict[str, str] = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}

PAGE_SIZE = 100  # the list endpoint's maximum; search allows 200, but one page size serves both requests
LOOKBACK_SECONDS = 300  # search index lag and clock skew


def _object_stream(object_type: str, description: str) -> Stream:
    properties = PROPERTIES[object_type]
    modified = MODIFIED_PROPERTY[object_type]
    return Stream(
        name=object_type,
        description=description,
        request=RequestTemplate(
            path=f"/crm/v3/objects/{object_type}",
            params={"limit": "{page_size}", "properties": ",".join(properties), "archived": "false"},
        ),
        incremental_request=RequestTemplate(
            method="POST",
            path=f"/crm/v3/objects/{object_type}/search",
            body={
                "filterGroups": [
                    {"filters": [{"propertyName": modified, "operator": "GTE", "value": "{cursor_ms!s}"}]}
                ],
                "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                "properties": list(properties),
                "limit": "{page_size}",
            },
        ),
        records_path="results",
        envelope_path="results",
        primary_key="id",
        cursor_field="updatedAt",
        cursor_format="iso",
        lookback_seconds=LOOKBACK_SECONDS,
        paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after", location="auto"),
        page_size=PAGE_SIZE,
    )


def _associations_stream(object_type: str, to_type: str, description: str) -> Stream:
    """Each record's associated `to_type` ids, from the list read with `associations=` (one page of 100 records
    per request), read in full each run. The search request that reads changed records returns no associations
    (HubSpot's search API has no `associations` parameter), so the association cannot ride on the incremental
    read of the records themselves; `hs_object_id` is the only property asked for, so the row changes only when
    the association (or the record's `updatedAt`) does."""
    return Stream(
        name=f"{object_type[:-1]}_{to_type}",
        description=description,
        request=RequestTemplate(path=f"/crm/v3/objects/{object_type}",
                                params={"limit": "{page_size}", "properties": "hs_object_id", "associations": to_type,
                                        "archived": "false"}),
        records_path="results",
        envelope_path="results",
        primary_key="id",
        paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after", location="auto"),
        page_size=PAGE_SIZE,
    )


def _archived_stream(object_type: str, description: str) -> Stream:
    """The archived records of a type (deleted, or merged away into another): the live list and the search never
    show them again, so without this list a deleted contact would live on in the warehouse and be synced back."""
    return Stream(
        name=f"archived_{object_type}",
        description=description,
        request=RequestTemplate(path=f"/crm/v3/objects/{object_type}",
                                params={"limit": "{page_size}", "properties": "email", "archived": "true"}),
        records_path="results",
        envelope_path="results",
        primary_key="id",
        paginator=NextTokenPaginator(token_path="paging.next.after", token_param="after", location="auto"),
        page_size=PAGE_SIZE,
    )


SYSTEM = System(
    name="hubspot",
    title="HubSpot",
    category="crm",
    base_url="https://api.hubapi.com",
    docs_url="https://developers.hubspot.com/docs/api/crm/understanding-the-crm",
    values={
        "token": EnvValue(
            env="HUBSPOT_TOKEN",
            sandbox="pat-FAKE-sandbox-0000-integration-pipelines",
            description="a private app access token (Settings → Integrations → Private Apps), with the "
            "crm.objects.contacts/companies/deals read and write scopes",
        )
    },
    auth=BearerAuthSpec(token="token"),
    # 190 requests per rolling 10 s for a private app on Professional/Enterprise (100 on Free/Starter: set
    # HUBSPOT_REQUESTS_PER_SECOND=10 there). Search has its own 5/s per account; its 429s are retried.
    requests_per_second=19.0,
    burst=19,
    error_message_paths=("message", "errors.0.message"),
    scopes=Scopes(
        read=("crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read"),
        write=("crm.objects.contacts.write", "crm.objects.companies.write", "crm.objects.deals.write"),
        writers={"upsert_contacts": ("crm.objects.contacts.write",), "update_contacts": ("crm.objects.contacts.write",),
                 "archive_contact": ("crm.objects.contacts.write",), "create_deals": ("crm.objects.deals.write",),
                 "upsert_deals": ("crm.objects.deals.write",), "update_deals": ("crm.objects.deals.write",),
                 "update_companies": ("crm.objects.companies.write",)},
        note="Two private apps (Settings → Integrations → Private apps): one with the read scopes for extraction, "
        "one with the write scopes (plus the reads its lookups need) for syncs.",
    ),
    streams=(
        _object_stream("contacts", "CRM contacts (people), with their lifecycle stage"),
        _object_stream("companies", "CRM companies (accounts)"),
        _object_stream("deals", "Deals in the sales pipeline"),
        _archived_stream("contacts", "Contacts deleted or merged away in HubSpot (archived), read in full each run"),
        _associations_stream("deals", "contacts", "Each deal's associated contacts (who is invoiced when it is won), "
                             "read in full each run"),
        _associations_stream("contacts", "companies", "Each contact's associated companies (the company records a "
                             "contact belongs to, not its free-text `company` property), read in full each run"),
    ),
    writers=(
        Writer(
            name="upsert_contacts",
            description="Create or update contacts by email (idProperty=email): a retried batch updates, "
            "never duplicates.",
            path="/crm/v3/objects/contacts/batch/upsert",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="create_deals",
            description="Create deals. HubSpot has no idempotency key: the sync ledger must hold the created "
            "ids before a batch is retried.",
            path="/crm/v3/objects/deals/batch/create",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="upsert_deals",
            description="Create or update deals by a unique-value property (each input names it: "
            "{'idProperty': 'quote_id', 'id': ..., 'properties': {...}}): a retried batch updates, never "
            "duplicates.",
            path="/crm/v3/objects/deals/batch/upsert",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="update_contacts",
            description="Update existing contacts by id ({'id': ..., 'properties': {...}}); never creates one.",
            path="/crm/v3/objects/contacts/batch/update",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="archive_contact",
            description="Archive (soft-delete) one contact by id: what a mirror sync does when a row leaves the model.",
            method="DELETE",
            path="/crm/v3/objects/contacts/{external_id}",
            batch_size=1,
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="update_companies",
            description="Update existing companies by id ({'id': ..., 'properties': {...}}); never creates one.",
            path="/crm/v3/objects/companies/batch/update",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
        Writer(
            name="update_deals",
            description="Update deals by id ({'id': ..., 'properties': {...}}).",
            path="/crm/v3/objects/deals/batch/update",
            batch_envelope="inputs",
            batch_size=100,
            results_path="results",
            idempotency=Idempotency(location="none"),
        ),
    ),
)
