"""Scenario 8: succeeded card payments → one Odoo fulfillment order each, exactly once (client_order_ref = key)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration_pipelines.syncs.engine import SyncFailedError
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import ANCHOR, warehouse_rows
from .test_core_models import build, extract
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


NAME = "payments_to_odoo_fulfillment"
SYSTEMS = ("stripe", "square", "odoo")
BUYERS = ("Alma Quist", "Bruno Vey", "Cleo Wynn")


def add_customer_and_charge(sandbox, suffix: str, amount: int) -> str:
    """A new buyer (a Stripe customer and the same person as an Odoo contact) pays a card charge."""
    stripe, odoo = sandbox.emulator("stripe"), sandbox.emulator("odoo")
    email, phone = f"buyer.{suffix}@example.com", f"+1555010{suffix:0>4}"  # a person of their own
    name = BUYERS[int(suffix)]
    with odoo.sandbox.lock:
        template = next(iter(stripe.objects["customers"].values()))
        customer_id = f"cus_test_{suffix}"
        stripe.objects["customers"][customer_id] = {**template, "id": customer_id, "email": email,
                                                   "name": name, "phone": phone}
        pid = odoo._new_id("res.partner")
        odoo.records["res.partner"][pid] = {**odoo.records["res.partner"][next(
            i for i, p in odoo.records["res.partner"].items() if not p["is_company"])],
            "id": pid, "name": name, "display_name": name, "email": email, "phone": phone,
            "parent_id": False, "commercial_partner_id": [pid, name], "active": True}
        charge_id = f"ch_fulfil_{suffix}"
        stripe.objects["charges"][charge_id] = {
            "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": 0,
            "created": int((ANCHOR - timedelta(hours=6)).timestamp()), "currency": "usd", "customer": customer_id,
            "invoice": None, "metadata": {}, "paid": True, "refunded": False, "status": "succeeded",
            "livemode": False,
        }
    return f"stripe:{charge_id}"


def prepare(settings, sandbox) -> list[str]:
    planted = [add_customer_and_charge(sandbox, str(n), 2500 * (n + 1)) for n in range(3)]
    extract(settings, SYSTEMS)
    build(settings)
    return planted


def expected(settings) -> dict[str, tuple]:
    """Every succeeded processor payment with its payer's email and amount, from the warehouse."""
    rows = warehouse_rows(settings, """
        SELECT p.source_system || ':' || p.source_id, lower(c.email), p.amount_minor, p.currency
        FROM core.payments p LEFT JOIN core.customers c ON c.golden_id = p.golden_customer_id
        WHERE p.kind = 'processor' AND p.status = 'succeeded'""")
    return {key: rest for key, *rest in rows}


def orders_by_ref(sandbox) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for order in sandbox.emulator("odoo").dump("sale_orders"):
        found.setdefault(order["client_order_ref"], []).append(order)
    return found


def assert_one_order_per_payment(settings, sandbox, skip: tuple[str, ...] = ()) -> int:
    odoo = sandbox.emulator("odoo")
    orders = orders_by_ref(sandbox)
    email_of = {p["id"]: (p["email"] or "").lower() for p in odoo.dump("partners")}
    payments = expected(settings)
    assert len(payments) >= 30
    for key, (email, amount_minor, currency) in payments.items():
        if key in skip:
            assert key not in orders
            continue
        assert len(orders.get(key, [])) == 1, f"{key}: exactly one fulfillment order"
        order = orders[key][0]
        assert order["state"] == "draft" and email_of[order["partner_id"][0]] == email
        assert f"paid {amount_minor / 100:.2f} {currency} by {key.replace(':', ' payment ')}" in order["note"]
    return len(payments) - len(skip)


def test_each_payment_becomes_one_order_and_a_rerun_sends_nothing(settings, sandbox):
    planted = prepare(settings, sandbox)
    before = len(sandbox.emulator("odoo").dump("sale_orders"))
    result = sync(settings, NAME)
    assert result.failed == 0 and result.created == len(expected(settings))
    assert len(sandbox.emulator("odoo").dump("sale_orders")) == before + result.created
    assert assert_one_order_per_payment(settings, sandbox) == result.created
    for key in planted:  # dated when the money moved, so the daily Odoo extract of that day finds it
        assert orders_by_ref(sandbox)[key][0]["date_order"] == "2026-03-09 18:00:00"
    ids = dict(warehouse_rows(settings, f"SELECT record_key, external_id FROM sync.ledger WHERE sync_name='{NAME}'"))
    assert len(ids) == result.created and all(orders_by_ref(sandbox)[k][0]["id"] == int(v) for k, v in ids.items())

    sandbox.state.clear_requests()
    assert sync(settings, NAME).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "odoo") == []

    # the ledger loses its bookkeeping (a crash after the write): the creates go out again and are refused
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute(f"DELETE FROM sync.ledger WHERE sync_name = '{NAME}'")
    with pytest.raises(SyncFailedError, match="already exists"):
        sync(settings, NAME)
    assert_one_order_per_payment(settings, sandbox)
    # after the next Odoo extract the orders are found by client_order_ref: nothing is created or sent
    extract(settings, ("odoo",))
    build(settings)
    sandbox.state.clear_requests()
    again = sync(settings, NAME)
    # (matched before create: linked in the ledger with the order's id, nothing sent)
    assert again.plan.counts()["creates"] == 0 and again.plan.counts()["linked"] == result.created
    assert posts_to(sandbox, "odoo") == []


def test_faults_end_in_the_same_orders_without_duplicates(settings, sandbox, monkeypatch):
    prepare(settings, sandbox)
    monkeypatch.setenv("ODOO_MAX_RETRIES", "12")
    sandbox.set_faults("odoo", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=2)
    result = sync(settings, NAME)
    faults = {r["fault"] for r in sandbox.state.request_log("odoo") if r["fault"]}
    sandbox.clear_faults()
    assert {"error", "drop"} <= faults and result.failed == 0
    assert result.created == assert_one_order_per_payment(settings, sandbox)


def test_dry_run_sends_nothing_then_one_invalid_payment_fails_alone(settings, sandbox):
    planted = prepare(settings, sandbox)
    # the last buyer's Odoo contact is deleted (merged away) after our extract: Odoo refuses that order
    odoo = sandbox.emulator("odoo")
    bad_email = "buyer.2@example.com"
    with odoo.sandbox.lock:
        (pid,) = [i for i, p in odoo.records["res.partner"].items() if p["email"] == bad_email]
        del odoo.records["res.partner"][pid]
    sandbox.state.clear_requests()
    plan = sync(settings, NAME, dry_run=True)
    assert plan.plan.counts()["creates"] == len(expected(settings)) and plan.created == 0
    assert sandbox.state.request_log("odoo") == []
    args = plan.samples[0]["payload"]["params"]["args"]
    assert args[:3] == ["<db>", "<uid>", "<api_key>"] and args[3:5] == ["sale.order", "create"]

    result = sync(settings, NAME)
    assert result.failed == 1 and result.created == len(expected(settings)) - 1
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert errors[0][:2] == (planted[-1], "create") and "Customer (partner_id)" in errors[0][2]
    assert_one_order_per_payment(settings, sandbox, skip=(planted[-1],))
    status = warehouse_rows(settings, f"SELECT status FROM sync.ledger WHERE sync_name='{NAME}' "
                                      "AND record_key = ?", [planted[-1]])
    assert status == [("failed",)]
