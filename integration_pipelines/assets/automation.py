"""One automation condition for everything downstream of raw data (core, syncs, reconciliation, ROI).

Dagster's `eager()` waits while any upstream was never materialized; a daily-partitioned extract always has
unmaterialized days (history nobody backfilled), so `eager()` would never fire below it. This condition is
eager without that clause: run after any upstream updated, once nothing upstream (and nothing of its own) is
still running.
"""

import dagster as dg

AFTER_UPSTREAM_UPDATES = (
    dg.AutomationCondition.any_deps_updated().since_last_handled().with_label("upstream updated")
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after upstream updates, once nothing upstream or of its own is running")
