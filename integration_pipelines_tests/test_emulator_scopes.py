"""Emulators enforce OAuth scopes as their vendors do (issue 15, least privilege), over real HTTP: a Xero
connection consented with only the `.read` scopes reads, and a write gets Xero's own 401 problem details. Through
the engine too, so a read-only refresh token put in XERO_WRITE_REFRESH_TOKEN fails naming that variable.
QuickBooks has no read-only accounting scope (see sandbox/quickbooks.py), so there is nothing to refuse there."""

from __future__ import annotations

import httpx
import pytest

from integration_pipelines.connectors.errors import AuthError
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.sandbox.xero import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_READ_ONLY_REFRESH_TOKEN,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TENANT_ID,
)

INVOICE = {"Invoices": [{"Type": "ACCREC", "Contact": {"Name": "FAKE Scope Test Ltd"},
                         "LineItems": [{"Description": "Consulting", "Quantity": 1, "UnitAmount": 100.0,
                                        "AccountCode": "200"}]}]}
JOURNAL = {"ManualJournals": [{"Narration": "FAKE scope test fee", "Status": "POSTED", "JournalLines": [
    {"LineAmount": 1.70, "AccountCode": "404"}, {"LineAmount": -1.70, "AccountCode": "615"}]}]}


def xero_access_token(base_url: str, refresh_token: str) -> tuple[str, str]:
    """(access token, granted scope) from Xero's token endpoint, as the connector asks for them."""
    answer = httpx.post(f"{base_url}/connect/token", auth=(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
                        data={"grant_type": "refresh_token", "refresh_token": refresh_token})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"], answer.json()["scope"]


def test_a_read_only_xero_connection_reads_and_its_writes_get_xeros_401(sandbox_server, sandbox):
    token, scope = xero_access_token(sandbox_server.url, SANDBOX_READ_ONLY_REFRESH_TOKEN)
    assert scope == "offline_access accounting.transactions.read accounting.contacts.read accounting.settings.read"
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": SANDBOX_TENANT_ID, "Accept": "application/json"}
    with httpx.Client(base_url=f"{sandbox_server.url}/api.xro/2.0", headers=headers) as client:
        assert client.get("/Invoices", params={"page": 1}).status_code == 200
        assert client.get("/Contacts", params={"page": 1}).status_code == 200
        before = len(sandbox.emulator("xero").dump("invoices"))
        refused = {
            "PUT /Invoices": client.put("/Invoices", json=INVOICE),
            "POST /Invoices": client.post("/Invoices", json=INVOICE),
            "POST /Contacts": client.post("/Contacts", json={"Contacts": [{"Name": "FAKE Scope Test Ltd"}]}),
            "PUT /Payments": client.put("/Payments", json={"Payments": []}),
            "PUT /ManualJournals": client.put("/ManualJournals", json=JOURNAL),
            "POST /ManualJournals": client.post("/ManualJournals", json=JOURNAL),
        }
        assert client.get("/ManualJournals", params={"page": 1}).status_code == 200
    for call, answer in refused.items():
        assert answer.status_code == 401, call
        body = answer.json()
        assert (body["Title"], body["Status"], body["Detail"]) == ("Unauthorized", 401, "AuthorizationUnsuccessful")
        assert answer.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert len(sandbox.emulator("xero").dump("invoices")) == before  # nothing was written
    assert not [j for j in sandbox.emulator("xero").dump("manual_journals") if "scope test" in j["Narration"]]


def test_a_xero_grant_holds_the_scopes_the_user_consented_to(sandbox_server, sandbox):
    """Scopes are per resource: `accounting.transactions` writes invoices but not contacts."""
    refresh = sandbox.emulator("xero").connect(scope="offline_access accounting.transactions accounting.contacts.read")
    token, scope = xero_access_token(sandbox_server.url, refresh)
    assert scope == "offline_access accounting.transactions accounting.contacts.read"
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": SANDBOX_TENANT_ID, "Accept": "application/json"}
    with httpx.Client(base_url=f"{sandbox_server.url}/api.xro/2.0", headers=headers) as client:
        assert client.put("/Invoices", json=INVOICE).status_code == 200
        assert client.post("/Contacts", json={"Contacts": [{"Name": "FAKE Other Ltd"}]}).status_code == 401
    _, scope = xero_access_token(sandbox_server.url, SANDBOX_REFRESH_TOKEN)  # the seeded grant: every scope
    assert scope == "offline_access accounting.transactions accounting.contacts accounting.settings"


def test_manual_journals_take_the_broad_scope_or_their_own_granular_one(sandbox_server, sandbox):
    """Since Xero's scope split (2 March 2026) new apps are given `accounting.manualjournals` instead of
    `accounting.transactions`; either writes journals, and the granular one writes nothing else."""
    granular = sandbox.emulator("xero").connect(scope="offline_access accounting.manualjournals")
    invoices_only = sandbox.emulator("xero").connect(scope="offline_access accounting.invoices")
    answers = {}
    for name, refresh in (("granular", granular), ("invoices only", invoices_only)):
        token, _ = xero_access_token(sandbox_server.url, refresh)
        headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": SANDBOX_TENANT_ID,
                   "Accept": "application/json"}
        with httpx.Client(base_url=f"{sandbox_server.url}/api.xro/2.0", headers=headers) as client:
            answers[name] = (client.put("/ManualJournals", json=JOURNAL).status_code,
                             client.get("/ManualJournals", params={"page": 1}).status_code,
                             client.put("/Invoices", json=INVOICE).status_code)
    assert answers == {"granular": (200, 200, 401), "invoices only": (401, 401, 200)}


def test_the_engine_names_the_write_variable_when_the_xero_write_token_is_read_only(settings, sandbox_server,
                                                                                     monkeypatch):
    # live mode against the emulator: the "real" Xero is the sandbox here, with the emulator's own fake values
    monkeypatch.setenv("XERO_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("XERO_TOKEN_URL", f"{sandbox_server.url}/connect/token")
    monkeypatch.setenv("XERO_CLIENT_ID", SANDBOX_CLIENT_ID)
    monkeypatch.setenv("XERO_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)
    monkeypatch.setenv("XERO_TENANT_ID", SANDBOX_TENANT_ID)
    monkeypatch.setenv("XERO_WRITE_REFRESH_TOKEN", SANDBOX_READ_ONLY_REFRESH_TOKEN)  # a mistake: read-only
    resolved = resolve_system(get_system("xero"), settings, purpose="write")
    assert resolved.mode == "live"
    with build_client(resolved) as client, pytest.raises(AuthError) as caught:
        client.request("PUT", "/api.xro/2.0/Invoices", json=INVOICE)
    assert "AuthorizationUnsuccessful" in str(caught.value)
    assert "XERO_WRITE_REFRESH_TOKEN" in str(caught.value)
