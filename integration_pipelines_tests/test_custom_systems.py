"""Custom systems declared in YAML: the three shipped examples load, extract exactly their twins' records into
DuckDB and appear in the Definitions; a broken file fails at load time naming file, line, key and fix."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from integration_pipelines.connectors.custom import PACKAGED_DIR, CustomSystemError, load_custom_file
from integration_pipelines.connectors.registry import discover_systems, get_system
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.writer import send_write
from integration_pipelines.definitions import build_definitions

from .conftest import loaded_keys, materialize_stream

SHIPPED = {"pm_tool": ["projects", "billing_milestones"], "expense_tool": ["expense_receipts"],
           "procurement_portal": ["purchase_requests"]}
CASES = [(system, stream) for system, streams in SHIPPED.items() for stream in streams]


def _truth(sandbox, system: str, stream: str) -> list[str]:
    key = get_system(system).stream(stream).primary_key
    return sorted(r[key] for r in sandbox.emulator(system).dump(stream))


@pytest.mark.parametrize(("system", "stream"), CASES)
def test_yaml_system_extracts_exactly_its_twin_records_incrementally(settings, sandbox, system, stream):
    assert get_system(system).source_file.endswith(f"{system}.yaml")
    truth = _truth(sandbox, system, stream)
    result = materialize_stream(settings, system, stream)
    metadata = result.asset_materializations_for_node(f"{system}__{stream}")[0].metadata
    assert loaded_keys(settings, system, stream) == truth and metadata["pages"].value > 1

    sandbox.emulator(system).touch(stream, 2)
    metadata = materialize_stream(settings, system, stream).asset_materializations_for_node(
        f"{system}__{stream}")[0].metadata
    assert metadata["incremental_since"].value != "full read" and metadata["updated"].value == 2
    assert metadata["records_read"].value < len(truth)
    assert loaded_keys(settings, system, stream) == truth


def test_yaml_systems_appear_as_assets_in_the_definitions(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    for system, streams in SHIPPED.items():
        for stream in streams:
            node = graph.get(dg.AssetKey([system, stream]))
            assert node.group_name == system and node.pools == {"warehouse"}


def test_yaml_writer_creates_one_purchase_request_per_idempotency_key(settings, sandbox):
    system = get_system("procurement_portal")
    resolved = resolve_system(system, settings)
    request = {"requester_email": "ada@example.com", "supplier": "Fabrikam Parts", "sku": "CABLE", "quantity": 12}
    with build_client(resolved) as client:
        first = send_write(client, resolved, system.writer("create_purchase_request"), [request],
                           idempotency_key="sync:pr:ada-cable-12")
        again = send_write(client, resolved, system.writer("create_purchase_request"), [request],
                           idempotency_key="sync:pr:ada-cable-12")
    assert first.external_ids == again.external_ids and again.replayed
    created = [r for r in sandbox.emulator("procurement_portal").dump("purchase_requests")
               if r["requester_email"] == "ada@example.com"]
    assert len(created) == 1


def test_user_folder_adds_systems_without_python(settings, monkeypatch, tmp_path):
    text = (PACKAGED_DIR / "expense_tool.yaml").read_text()
    text = text.replace("name: expense_tool", "name: travel_tool").replace("EXPENSE_TOOL_", "TRAVEL_TOOL_")
    (tmp_path / "travel.yaml").write_text(text)
    monkeypatch.setenv("IP_CUSTOM_SYSTEMS_DIR", str(tmp_path))
    assert "travel_tool" in {s.name for s in discover_systems()}
    monkeypatch.delenv("IP_CUSTOM_SYSTEMS_DIR")
    assert "travel_tool" not in {s.name for s in discover_systems()}


def _broken(tmp_path: Path, old: str, new: str) -> CustomSystemError:
    text = (PACKAGED_DIR / "procurement_portal.yaml").read_text()
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(CustomSystemError) as info:
        load_custom_file(path)
    return info.value


def _line_of(tmp_path: Path, needle: str) -> int:
    lines = (tmp_path / "broken.yaml").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if needle in line)


def test_unknown_key_names_file_line_and_closest_key(tmp_path):
    error = _broken(tmp_path, "    cursor_field: updated_at", "    cursor_feild: updated_at")
    line = _line_of(tmp_path, "cursor_feild")
    assert f"broken.yaml:{line}:5: streams[0]" in str(error)
    assert "unknown key 'cursor_feild'" in str(error) and "Did you mean 'cursor_field'?" in str(error)


def test_missing_primary_key_names_the_stream_line_and_the_fix(tmp_path):
    error = _broken(tmp_path, "    primary_key: id\n", "")
    line = _line_of(tmp_path, "- name: purchase_requests")
    assert f"broken.yaml:{line}:5: streams[0].primary_key: required key 'primary_key' is missing" in str(error)
    assert "Fix: add `primary_key:" in str(error)


def test_invalid_paginator_type_lists_the_valid_ones(tmp_path):
    error = _broken(tmp_path, "      type: offset", "      type: offsett")
    line = _line_of(tmp_path, "type: offsett")
    assert f"broken.yaml:{line}:7: streams[0].paginator.type: type 'offsett' is not known" in str(error)
    assert "'offset'" in str(error) and "'page_number'" in str(error) and "'link_header'" in str(error)


def test_yaml_syntax_error_points_at_the_line(tmp_path):
    error = _broken(tmp_path, "title: Procurement portal", "title: [Procurement portal")
    assert "broken.yaml:" in str(error) and "not valid YAML" in str(error)


def test_a_bad_user_file_fails_definitions_loading(settings, monkeypatch, tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad_tool\ntitle: Bad\n")
    monkeypatch.setenv("IP_CUSTOM_SYSTEMS_DIR", str(tmp_path))
    with pytest.raises(CustomSystemError) as info:
        build_definitions(settings)
    assert "bad.yaml:1:1" in str(info.value) and "'streams' is missing" in str(info.value)
