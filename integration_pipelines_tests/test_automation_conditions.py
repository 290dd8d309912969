"""What the automation sensor asks for, evaluated with Dagster's own evaluator (no daemon, no runs).

The event lane rebuilds core itself and reports the core tables it changed. Core must not react to that (it would
rebuild all of core again right after, holding the warehouse: seen on the running stack), while everything below
core (syncs, reconciliation, ROI, reporting) must. New raw data (an extract) still makes core rebuild.
"""

from __future__ import annotations

import dagster as dg

from integration_pipelines.definitions import build_definitions
from integration_pipelines.settings import Settings


def _requested_after(event_keys: list[list[str]]) -> set[str]:
    defs = build_definitions(Settings())
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the baseline tick
        for key in event_keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=dg.AssetKey(key)))
        later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        return {key.to_user_string() for key in keys if later.get_num_requested(key)}


def test_a_core_table_changed_by_the_event_lane_reaches_what_is_below_core_not_core_again(settings):
    requested = _requested_after([["core", "customers"]])
    assert not {k for k in requested if k.startswith("core/")}, requested
    assert {"reporting/published", "sync/payment_receipts_to_mailer", "reconciliation/customers_crm_vs_accounting"} \
        <= requested


def test_new_raw_data_rebuilds_core(settings):
    requested = _requested_after([["quickbooks", "customers"]])
    assert {"core/customers", "core/payments", "core/revenue_by_entity"} <= requested
