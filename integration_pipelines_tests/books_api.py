"""Read the books back as their owners' own clients do: the QuickBooks query API and Xero's Accounting API on the
sandbox emulators, with tokens from each one's OAuth refresh grant. Acceptance tests read outcomes here, never in
the emulators' memory, so a test sees what a bookkeeper (or the vendor's SDK) would see."""

from __future__ import annotations

from typing import Any

import httpx

from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
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
