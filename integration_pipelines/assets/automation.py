"""The automation conditions for everything downstream of raw data (core, syncs, reconciliation, ROI, reporting).

Dagster's `eager()` waits while any upstream was never materialized; a daily-partitioned extract always has
unmaterialized days (history nobody backfilled), so `eager()` would never fire below it. This condition is
eager without that clause: run after any upstream updated, once nothing upstream (and nothing of its own) is
still running.
"""

import dagster as dg


def _once_idle(trigger: dg.AutomationCondition, label: str) -> dg.AutomationCondition:
    """`trigger`, acted on once nothing upstream (and nothing of the asset's own) is still running."""
    return (trigger & ~dg.AutomationCondition.any_deps_in_progress()
            & ~dg.AutomationCondition.in_progress()).with_label(label)


AFTER_UPSTREAM_UPDATES = _once_idle(
    dg.AutomationCondition.any_deps_updated().since_last_handled().with_label("upstream updated"),
    "after upstream updates, once nothing upstream or of its own is running")

#: Core is one build (`core_models`, not subsettable): it reacts to new raw data only. A change to one core table
#: comes from a core build, the nightly's or the event lane's (which rebuilds core itself and reports the tables it
#: changed); reacting to it would rebuild all of core again right after, holding the warehouse for nothing (seen on
#: the running stack: every lane batch that changed core.customers queued a whole core rebuild behind it).
AFTER_RAW_UPDATES = _once_idle(
    dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.groups("core")).since_last_handled()
    .with_label("raw data updated"),
    "after new raw data, once nothing upstream or of its own is running")
