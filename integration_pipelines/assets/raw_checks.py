"""Raw-level checks, freshness and owners of the extract assets (issue 19).

Why at the raw level: the core checks (`assets/core.py`) see a problem only after it has been modelled, and
then point at a core table, not at the stream that caused it. Two checks are evaluated by the extract asset
itself, on the table it has just loaded, so each load carries its verdict:

- `unique_key` (ERROR): every row has a `_pk` and no two rows share one. The load upserts by `_pk`, so a
  duplicate means the table was written outside the load (a hand fix, a restore) and every model downstream
  would count that record twice.
- `row_count_not_dropped` (WARN): the table holds no more than `IP_ROW_COUNT_DROP_SHARE` fewer rows than after
  the previous successful load. The previous count is the `dagster/row_count` of the asset's last
  materialization: `ops.extract_log` records what each load read and wrote, not the table's size.

Freshness is Dagster's own `FreshnessPolicy.time_window` (the superseded `build_last_update_freshness_checks`
points there): WARN after `IP_FRESHNESS_HOURS` without a successful read, FAIL after `IP_FRESHNESS_FAIL_HOURS`.
A check yielded by the load itself could never be stale, so freshness has to be judged from outside the run.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ..connectors.errors import ConfigurationError
from ..connectors.spec import System
from ..settings import Settings, load_overrides
from ..warehouse.duckdb import Warehouse, table_name

UNIQUE_KEY = "unique_key"
ROW_COUNT_NOT_DROPPED = "row_count_not_dropped"
ROW_COUNT = "dagster/row_count"
SAMPLE_KEYS = 5


def raw_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(UNIQUE_KEY, asset=key,
                          description="every row of the raw table has a `_pk` and no two rows share one"),
        dg.AssetCheckSpec(ROW_COUNT_NOT_DROPPED, asset=key,
                          description="the raw table did not lose more than IP_ROW_COUNT_DROP_SHARE of its rows "
                          "since the previous successful load"),
    ]


def freshness_policy(settings: Settings) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=settings.freshness_fail_hours),
                                          warn_window=timedelta(hours=settings.freshness_hours))


def system_owners(system: System, settings: Settings) -> list[str]:
    """`<SYSTEM>_OWNER`, else `IP_DEFAULT_OWNER`, checked with Dagster's own owner rule while the definitions
    load, so a typo is one paragraph naming the variable instead of Dagster's error about an asset key."""
    own = (load_overrides(system.name).owner or "").strip()
    if own:
        return _checked_owner(f"{system.name.upper()}_OWNER", own, f"the {system.title} assets")
    return default_owners(settings, f"the {system.title} assets")


def default_owners(settings: Settings, what: str = "the assets without an owner of their own") -> list[str]:
    """`IP_DEFAULT_OWNER` as a list of owners (empty when unset), checked like `system_owners`."""
    return _checked_owner("IP_DEFAULT_OWNER", settings.default_owner.strip(), what)


def _checked_owner(variable: str, owner: str, what: str) -> list[str]:
    if not owner:
        return []
    try:
        dg.AssetSpec(key=dg.AssetKey(["_owner"]), owners=[owner])
    except dg.DagsterInvalidDefinitionError as exc:
        raise ConfigurationError(
            f"{variable}={owner!r} is not an owner Dagster accepts for {what}: give an email "
            "address (data@example.com) or a team name prefixed with `team:` (team:finance-data), or leave it "
            f"unset for no owner."
        ) from exc
    return [owner]


def previous_row_count(context: dg.AssetExecutionContext, key: dg.AssetKey) -> int | None:
    """The table's row count after the asset's previous successful load (any partition: the raw table is one
    table for all of them); None before the first load, or when the instance keeps no history."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get(ROW_COUNT) if materialization else None
    return int(value.value) if isinstance(value, dg.IntMetadataValue) and value.value is not None else None


def _unique_key(warehouse: Warehouse, key: dg.AssetKey, schema: str, table: str) -> dg.AssetCheckResult:
    target = table_name(schema, table)
    with warehouse.connect() as con:
        rows, keys, distinct = con.execute(
            f"SELECT count(*), count(_pk), count(DISTINCT _pk) FROM {target}").fetchone()
        samples = [r[0] for r in con.execute(
            f"SELECT _pk FROM {target} WHERE _pk IS NOT NULL GROUP BY _pk HAVING count(*) > 1 ORDER BY _pk "
            f"LIMIT {SAMPLE_KEYS}").fetchall()] if keys > distinct else []
    duplicates, missing = keys - distinct, rows - keys
    return dg.AssetCheckResult(
        asset_key=key, check_name=UNIQUE_KEY, passed=duplicates == 0 and missing == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if duplicates == 0 and missing == 0 else (
            f"{schema}.{table}: {duplicates} extra rows share a `_pk`, {missing} rows have none; models "
            "downstream would count those records more than once"),
        metadata={"duplicate_rows": duplicates, "rows_without_key": missing,
                  "duplicate_keys_sample": ", ".join(str(k) for k in samples)})


def _row_count_not_dropped(key: dg.AssetKey, rows: int, previous: int | None, share: float) -> dg.AssetCheckResult:
    lost = (previous - rows) if previous is not None else 0
    passed = previous is None or lost <= previous * share
    metadata: dict[str, object] = {"rows": rows, "allowed_drop_share": share}
    if previous is not None:
        metadata["previous_rows"] = previous
    return dg.AssetCheckResult(
        asset_key=key, check_name=ROW_COUNT_NOT_DROPPED, passed=passed, severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else (
            f"the table holds {rows} rows, {lost} fewer than the {previous} after the previous load "
            f"(more than IP_ROW_COUNT_DROP_SHARE={share:g}); a load only adds or updates rows, so they were "
            "removed outside it"),
        metadata=metadata)


def raw_check_results(context: dg.AssetExecutionContext, warehouse: Warehouse, key: dg.AssetKey, schema: str,
                      table: str, rows: int, previous: int | None, settings: Settings
                      ) -> list[dg.AssetCheckResult]:
    """Both checks on the table as this load left it; `previous` is read before the load's own event."""
    return [_unique_key(warehouse, key, schema, table),
            _row_count_not_dropped(key, rows, previous, settings.row_count_drop_share)]
