"""The asset graph as a reviewed file: keys, dependencies, groups, kinds, owners and automation of every asset,
so a change to the graph shows up in review as a diff of `snapshots/asset_graph.json`.

After an intended change: `UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest integration_pipelines_tests/
test_asset_graph_snapshot.py` rewrites the file; read the diff before committing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from integration_pipelines.definitions import build_definitions
from integration_pipelines.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_of(settings: Settings) -> dict[str, dict[str, object]]:
    graph = build_definitions(settings).resolve_asset_graph()
    out: dict[str, dict[str, object]] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):
        node = graph.get(key)
        condition = node.automation_condition
        out["/".join(key.path)] = {
            "deps": sorted("/".join(p.path) for p in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "automation": condition.get_label() or type(condition).__name__ if condition else None,
            "partitioned": node.partitions_def is not None,
        }
    return out


def test_the_asset_graph_is_the_reviewed_one(settings):
    current = graph_of(Settings())
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    reviewed = json.loads(SNAPSHOT.read_text())
    changed = {k for k in current.keys() | reviewed.keys() if current.get(k) != reviewed.get(k)}
    assert not changed, (f"the asset graph changed for {sorted(changed)[:10]}: if intended, rewrite the snapshot "
                         "with UPDATE_SNAPSHOTS=1 and review its diff")
