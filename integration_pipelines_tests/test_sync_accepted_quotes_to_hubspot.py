"""Scenario 2: accepted Odoo quotations (sale orders) → HubSpot deals, exactly once per quote, over real HTTP.

The acceptance test's expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) as
Odoo records it: 60 of its quotations are confirmed (state `sale`), among them S00001 (Aperture Ltd, Dennis
Goldwasser, USD 1,596.00, ordered 2026-03-09 11:52:44 UTC) and S00002 (Aperture LLC, Grace Knuth, EUR 60.00, ordered
2026-03-09 15:01:25 UTC)."""

from __future__ import annotations

import httpx
import pytest

from integration_pipelines.connectors.hubspot import SYSTEM as HUBSPOT

from .conftest import materialize_all_partitions, warehouse_rows
from .target_api import hubspot_get
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


NAME = "accepted_quotes_to_hubspot"


def prepare(settings, sandbox, *, draft: str | None = None, yen: str | None = None) -> dict[str, dict]:
    """Extract Odoo and build core; returns the accepted quotes by reference, as Odoo holds them."""
    odoo = sandbox.emulator("odoo")
    with sandbox.state.lock:
        for order in odoo.records["sale.order"].values():
            if order["name"] == draft:
                order["state"] = "draft"  # a quote not accepted yet: no deal
            if order["name"] == yen:
                order["currency_id"] = [25, "JPY"]  # a currency the HubSpot portal has not enabled
        accepted = {o["name"]: dict(o) for o in odoo.records["sale.order"].values() if o["state"] in ("sale", "done")}
    for stream in ("partners", "sale_orders"):
        materialize_all_partitions(settings, "odoo", stream)
    build(settings)
    return accepted


def synced_deals(sandbox) -> dict[str, list[dict]]:
    deals: dict[str, list[dict]] = {}
    for deal in sandbox.emulator("hubspot").dump("deals"):
        if deal["properties"]["quote_id"]:
            deals.setdefault(deal["properties"]["quote_id"], []).append(deal)
    return deals


def assert_deals(sandbox, accepted: dict[str, dict], seeded: int, skip: tuple[str, ...] = ()) -> None:
    deals = synced_deals(sandbox)
    expected = {name: order for name, order in accepted.items() if name not in skip}
    assert set(deals) == set(expected)
    for name, order in expected.items():
        assert len(deals[name]) == 1, f"exactly one deal for quote {name}"
        props = deals[name][0]["properties"]
        assert float(props["amount"]) == order["amount_total"]
        assert props["deal_currency_code"] == order["currency_id"][1]
        assert (props["dealstage"], props["pipeline"]) == ("closedwon", "default")
        assert props["dealname"].endswith(f" - {name}")
        assert props["closedate"].startswith(order["date_order"][:10])
    assert len(sandbox.emulator("hubspot").dump("deals")) == seeded + len(expected)


def test_accepted_quotes_become_deals_once_and_a_rerun_sends_nothing(settings, sandbox):
    seeded = len(sandbox.emulator("hubspot").dump("deals"))
    draft = sorted(o["name"] for o in sandbox.emulator("odoo").records["sale.order"].values())[0]
    accepted = prepare(settings, sandbox, draft=draft)
    assert draft not in accepted and len(accepted) >= 10
    sandbox.state.clear_requests()
    plan = sync(settings, NAME, dry_run=True)
    assert plan.plan.counts()["creates"] == len(accepted) and plan.created == 0
    assert plan.samples[0]["payload"]["idProperty"] == "quote_id"
    assert sandbox.state.request_log("hubspot") == []

    result = sync(settings, NAME)
    assert (result.created, result.failed) == (len(accepted), 0)
    assert_deals(sandbox, accepted, seeded)
    sandbox.state.clear_requests()
    assert sync(settings, NAME).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "hubspot") == []


def test_a_write_applied_but_unrecorded_and_twenty_percent_faults_never_duplicate(settings, sandbox, monkeypatch):
    seeded = len(sandbox.emulator("hubspot").dump("deals"))
    accepted = prepare(settings, sandbox)
    # an earlier run created this deal, then lost the answer before its ledger was written
    lost = sorted(accepted)[3]
    hubspot = sandbox.emulator("hubspot")
    with sandbox.state.lock:
        hubspot._create("deals", {"quote_id": lost, "dealname": "half-written", "dealstage": "closedwon"})
    monkeypatch.setenv("HUBSPOT_MAX_RETRIES", "12")
    sandbox.state.clear_requests()
    sandbox.set_faults("hubspot", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=4)
    result = sync(settings, NAME)
    fired = [r for r in sandbox.state.request_log("hubspot") if r["fault"]]
    sandbox.clear_faults()
    assert fired, "the seed must fault at least one write"
    assert (result.created, result.failed) == (len(accepted), 0)
    assert_deals(sandbox, accepted, seeded)  # the half-written deal was completed, not created again


def test_one_quote_in_a_currency_the_portal_lacks_fails_alone(settings, sandbox):
    seeded = len(sandbox.emulator("hubspot").dump("deals"))
    yen = sorted(o["name"] for o in sandbox.emulator("odoo").records["sale.order"].values())[1]
    accepted = prepare(settings, sandbox, yen=yen)
    result = sync(settings, NAME)
    assert (result.created, result.failed) == (len(accepted) - 1, 1)
    assert_deals(sandbox, accepted, seeded, skip=(yen,))
    errors = warehouse_rows(settings, "SELECT sync_name, record_key, operation, message FROM sync.errors")
    assert [e[:3] for e in errors] == [(NAME, yen, "create")]
    assert "INVALID_OPTION" in errors[0][3] and "deal_currency_code" in errors[0][3]


def hubspot_quote_ids(url: str) -> list[str]:
    """The `quote_id` of every HubSpot deal that has one, through HubSpot's list API (all pages)."""
    found, after = [], None
    while True:
        page = httpx.get(f"{url}/crm/v3/objects/deals", params={
            "limit": 100, "properties": "quote_id", **({"after": after} if after else {})},
            headers={"Authorization": f"Bearer {HUBSPOT.values['token'].sandbox}"}, timeout=30).json()
        found += [d["properties"]["quote_id"] for d in page["results"] if d["properties"].get("quote_id")]
        after = (page.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return sorted(found)


def test_quotes_accepted_before_the_sync_was_switched_on_are_left_alone(settings, sandbox, sandbox_server,
                                                                        monkeypatch):
    """The world's quotes accepted on 2026-03-09 from 23:00 UTC are S00019 (23:04:54), S00037 (23:13:10), S00060
    (23:16:26) and S00010 (23:29:34); the other 56 of the world's 60 accepted quotes (S00001-S00060, accepted
    2026-03-07 06:04 to 2026-03-09 23:29) were accepted earlier and keyed by hand."""
    prepare(settings, sandbox)
    monkeypatch.setenv("IP_SYNC_ACCEPTED_QUOTES_TO_HUBSPOT_START", "2026-03-09T23:00:00Z")
    result = sync(settings, NAME)
    assert (result.created, result.failed) == (4, 0)
    assert hubspot_quote_ids(sandbox_server.url) == ["S00010", "S00019", "S00037", "S00060"]
    assert result.plan.before_start == 56 and sync(settings, NAME).created == 0


def _deal(url: str, quote: str) -> dict:
    return hubspot_get(url, f"/crm/v3/objects/deals/{quote}", idProperty="quote_id",
                       properties="dealname,amount,deal_currency_code,dealstage,pipeline,closedate,quote_id")


def test_acceptance_each_confirmed_quotation_is_one_won_deal_in_hubspot(settings, sandbox, sandbox_server):
    """Read back through HubSpot's CRM API (a deal by its unique `quote_id`, and the search API's total)."""
    odoo = sandbox.emulator("odoo")
    with sandbox.state.lock:  # a salesperson cancels S00003 before the sync first runs: it is no sale
        next(o for o in odoo.records["sale.order"].values() if o["name"] == "S00003")["state"] = "cancel"
    for stream in ("partners", "sale_orders"):
        materialize_all_partitions(settings, "odoo", stream)
    build(settings)
    assert (sync(settings, NAME).created, sync(settings, NAME).created) == (59, 0)

    url = sandbox_server.url
    first = _deal(url, "S00001")["properties"]
    assert {k: first[k] for k in ("dealname", "amount", "deal_currency_code", "dealstage", "pipeline")} == {
        "dealname": "Aperture Ltd - S00001", "amount": "1596.0", "deal_currency_code": "USD",
        "dealstage": "closedwon", "pipeline": "default"}
    assert first["closedate"].startswith("2026-03-09T11:52:44")
    second = _deal(url, "S00002")["properties"]
    assert (second["dealname"], second["amount"], second["deal_currency_code"]) == ("Aperture LLC - S00002", "60.0",
                                                                                     "EUR")
    with pytest.raises(httpx.HTTPStatusError) as missing:
        _deal(url, "S00003")
    assert missing.value.response.status_code == 404
    found = httpx.post(f"{url}/crm/v3/objects/deals/search", headers={
        "Authorization": f"Bearer {HUBSPOT.values['token'].sandbox}"}, json={
        "filterGroups": [{"filters": [{"propertyName": "quote_id", "operator": "HAS_PROPERTY"}]}], "limit": 1})
    found.raise_for_status()
    assert found.json()["total"] == 59
