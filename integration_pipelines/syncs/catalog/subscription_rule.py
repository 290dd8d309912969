"""Scenario 9's rule for which subscription speaks for a customer (or a company), as SQL pieces shared by the
contact sync (`subscription_status_to_hubspot`) and the company summary (`subscription_summary_to_hubspot_companies`),
so the two can never disagree about what `active` or a renewal day means.

Each piece takes the alias of a row of `core.subscriptions` (statuses already in one vocabulary: trialing, active,
past_due, canceled; `warehouse/models/contracts.yaml` says how Stripe's and Square's own words map).
"""

from __future__ import annotations

#: Best first: a customer paying is `active` even if an older subscription was canceled; one whose renewal failed
#: is `past_due`, which still beats a trial that has not paid yet, which beats having only canceled ones.
STATUS_ORDER = ("active", "past_due", "trialing", "canceled")
#: Subscriptions that renew when their period or trial ends (unless canceled to end with it).
RENEWING = ("active", "past_due", "trialing")


def status_rank(alias: str) -> str:
    """SQL: the subscription's place in STATUS_ORDER (1 = best). A status the mapping does not know ranks 0, ahead
    of all, so it is passed on and HubSpot's enumeration refuses it into `sync.errors` instead of a known status
    standing in for it."""
    whens = " ".join(f"WHEN '{status}' THEN {rank}" for rank, status in enumerate(STATUS_ORDER, start=1))
    return f"CASE {alias}.status {whens} ELSE 0 END"


def pick_order(alias: str) -> str:
    """SQL ORDER BY items: the most relevant subscription first (rule, then the latest created, then a stable
    tie-break), for `row_number() OVER (PARTITION BY ... ORDER BY <this>)`."""
    return f"{status_rank(alias)}, {alias}.created_at DESC, {alias}.source_system, {alias}.source_id"


def renews_on(alias: str) -> str:
    """SQL: the day (UTC, YYYY-MM-DD) the subscription's current period or trial ends and it renews; NULL when it
    will not renew (canceled, or canceled to end with its period)."""
    renewing = ", ".join(f"'{status}'" for status in RENEWING)
    return (f"CASE WHEN {alias}.status IN ({renewing}) AND NOT {alias}.cancel_at_period_end "
            f"THEN strftime(timezone('UTC', {alias}.current_period_end), '%Y-%m-%d') END")
