"""Read the targets back as their owners' own clients do: the QuickBooks query API, Xero's Accounting API, HubSpot's
CRM API, Salesforce's REST API and the PM tool's API on the sandbox emulators, with tokens from each one's own grant.
Acceptance tests read outcomes here, never in the emulators' memory, so a test sees what a bookkeeper, a sales rep
(or the vendor's SDK) would see; and they change the world here as a person using those systems would."""

from __future__ import annotations

from typing import Any

import httpx

from integration_pipelines.connectors.hubspot import SYSTEM as HUBSPOT
from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.connectors.salesforce import API_VERSION as SALESFORCE_API_VERSION
from integration_pipelines.connectors.salesforce import SYSTEM as SALESFORCE
from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox import quickbooks as qbo_sandbox
from integration_pipelines.sandbox import xero as xero_sandbox


def _access_token(url: str, system: Any, token_path: str) -> str:
    answer = httpx.post(url + token_path, auth=(system.values["client_id"].sandbox,
                                                system.values["client_secret"].sandbox),
                        data={"grant_type": "refresh_token", "refresh_token": system.values["refresh_token"].sandbox})
    answer.raise_for_status()
    return answer.json()["access_token"]


def qbo_all(url: str, entity: str) -> list[dict]:
    """Every record of a QuickBooks entity (`Invoice`, `Purchase`...), all pages of `SELECT * FROM <entity>`."""
    realm = QBO.values["realm_id"].sandbox
    headers = {"Accept": "application/json",
               "Authorization": f"Bearer {_access_token(url, QBO, qbo_sandbox.TOKEN_PATH)}"}
    found: list[dict] = []
    start = 1
    while True:
        answer = httpx.get(f"{url}/v3/company/{realm}/query", headers=headers, timeout=30, params={
            "query": f"SELECT * FROM {entity} STARTPOSITION {start} MAXRESULTS 1000", "minorversion": "75"})
        answer.raise_for_status()
        page = answer.json()["QueryResponse"].get(entity, [])
        found += page
        if len(page) < 1000:
            return found
        start += 1000


def qbo_remove(url: str, entity: str, record_id: str, operation: str) -> dict:
    """What a bookkeeper's delete or void does in QuickBooks (`operation` "delete" or "void"): the record is read for
    its current SyncToken, then removed; QuickBooks' answer."""
    realm = QBO.values["realm_id"].sandbox
    headers = {"Accept": "application/json",
               "Authorization": f"Bearer {_access_token(url, QBO, qbo_sandbox.TOKEN_PATH)}"}
    current = httpx.get(f"{url}/v3/company/{realm}/{entity.lower()}/{record_id}", headers=headers, timeout=30,
                        params={"minorversion": "75"})
    current.raise_for_status()
    token = current.json()[entity]["SyncToken"]
    answer = httpx.post(f"{url}/v3/company/{realm}/{entity.lower()}", headers=headers, timeout=30,
                        params={"operation": operation, "minorversion": "75"},
                        json={"Id": record_id, "SyncToken": token})
    answer.raise_for_status()
    return answer.json()[entity]


def _xero_headers(url: str) -> dict[str, str]:
    return {"Accept": "application/json", "xero-tenant-id": XERO.values["tenant_id"].sandbox,
            "Authorization": f"Bearer {_access_token(url, XERO, xero_sandbox.TOKEN_PATH)}"}


def xero_get(url: str, resource: str, **params: str) -> list[dict]:
    """`GET /api.xro/2.0/<resource>` (e.g. `Invoices` with `where`, or `Invoices/<id>` for one in full)."""
    answer = httpx.get(f"{url}/api.xro/2.0/{resource}", headers=_xero_headers(url), params=params, timeout=30)
    answer.raise_for_status()
    return answer.json()[resource.split("/", 1)[0]]


def xero_put(url: str, resource: str, record: dict) -> dict:
    """Create one record as a person using Xero would (`PUT /api.xro/2.0/<resource>`); the saved record."""
    answer = httpx.put(f"{url}/api.xro/2.0/{resource}", headers=_xero_headers(url), json={resource: [record]},
                       timeout=30)
    answer.raise_for_status()
    return answer.json()[resource][0]


def xero_post(url: str, resource: str, record: dict) -> dict:
    """Change one record as a person using Xero would (`POST /api.xro/2.0/<resource>` with its id); the saved record."""
    answer = httpx.post(f"{url}/api.xro/2.0/{resource}", headers=_xero_headers(url), json={resource: [record]},
                        timeout=30)
    answer.raise_for_status()
    return answer.json()[resource][0]


def hubspot_get(url: str, path: str, **params: str) -> dict:
    """`GET <path>` of HubSpot's CRM API (e.g. `/crm/v3/objects/deals/S00001` with `idProperty=quote_id`)."""
    answer = httpx.get(url + path, params=params, timeout=30,
                       headers={"Authorization": f"Bearer {HUBSPOT.values['token'].sandbox}"})
    answer.raise_for_status()
    return answer.json()


def salesforce_update(url: str, sobject: str, record_id: str, fields: dict) -> None:
    """Edit one record as a user of Salesforce would (`PATCH …/sobjects/<Object>/<id>`)."""
    token = httpx.post(f"{url}/services/oauth2/token", timeout=30, data={
        "grant_type": "refresh_token", "client_id": SALESFORCE.values["client_id"].sandbox,
        "client_secret": SALESFORCE.values["client_secret"].sandbox,
        "refresh_token": SALESFORCE.values["refresh_token"].sandbox})
    token.raise_for_status()
    answer = httpx.patch(f"{url}/services/data/v{SALESFORCE_API_VERSION}/sobjects/{sobject}/{record_id}",
                         json=fields, timeout=30, headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    answer.raise_for_status()


def pm_tool_milestones(url: str) -> dict[str, dict]:
    """Every billing milestone the PM tool lists (`GET /pm-tool/api/v1/milestones`, all pages), by id."""
    [pm_tool] = [s for s in discover_systems() if s.name == "pm_tool"]
    headers = {"Authorization": f"Bearer {pm_tool.values['api_token'].sandbox}"}
    found: dict[str, dict] = {}
    page = 1
    while True:
        answer = httpx.get(f"{url}/pm-tool/api/v1/milestones", headers=headers,
                           params={"page": page, "per_page": 100}, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        found.update({m["id"]: m for m in body["data"]})
        if page >= body["meta"]["total_pages"]:
            return found
        page += 1
