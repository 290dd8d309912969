"""Job `systems_check`: `integration-pipelines systems check` from the Dagster UI.

One op makes each system's check (`operations/checks.py`: one read-only request per credential set, page size 1)
and reports the table in its log and as output metadata; any failed check fails the run, so a red run in the UI
(and the run-failure alert) says a connection broke, with the variable to fix in the metadata.
"""


from collections.abc import Sequence

import dagster as dg

from ..connectors.spec import System
from ..operations.checks import check_systems, markdown_table
from ..settings import Settings


def build_systems_check_job(systems: Sequence[System], settings: Settings) -> dg.JobDefinition:
    checked = list(systems)

    @dg.op(name="check_systems", description="One authenticated read-only request per system and credential set.",
           tags={"integration_pipelines/kind": "systems_check"})
    def _check(context: dg.OpExecutionContext) -> dg.Output[None]:
        results = check_systems(checked, settings)
        table = markdown_table(results)
        failing = [r for r in results if not r.ok]
        for r in results:
            line = (f"{r.system} ({r.purpose}, {r.mode or '-'}): {r.state}"
                    + (f"; rate limit {r.rate_limit}" if r.rate_limit else "")
                    + (f"; fix {', '.join(r.fix)}: {r.error}" if r.error else ""))
            (context.log.info if r.ok else context.log.error)(line)
        metadata = {"checks": dg.MetadataValue.md(table), "ok": len(results) - len(failing), "failing": len(failing),
                    "results": dg.MetadataValue.json([r.as_json() for r in results])}
        if failing:
            raise dg.Failure(
                description=f"{len(failing)} of {len(results)} system checks failed: "
                            + "; ".join(f"{r.system} ({r.purpose}): {r.state}, fix {', '.join(r.fix) or '-'}"
                                        for r in failing),
                metadata=metadata)
        return dg.Output(None, metadata=metadata)

    @dg.job(name="systems_check", description="Is every system reachable, and are its read and write credentials "
            "accepted? One page-size-1 read per system and credential set; nothing is written.",
            tags={"integration_pipelines/kind": "systems_check"})
    def systems_check() -> None:
        _check()

    return systems_check
