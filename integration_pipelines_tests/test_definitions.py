"""The whole Definitions object loads with no credentials at all, one group per system, and each system
switches between sandbox and the real service by its environment alone."""

from __future__ import annotations

import dagster as dg
import pytest

from integration_pipelines.connectors.errors import ConfigurationError
from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.definitions import build_definitions
from integration_pipelines.docs import sync_catalog_markdown, systems_markdown, warehouse_markdown

from .conftest import PROJECT_ROOT


def test_definitions_load_with_one_group_per_system(settings):
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for system in discover_systems():
        for stream in system.streams:
            key = dg.AssetKey([system.name, stream.name])
            assert key in keys
            node = graph.get(key)
            assert node.group_name == system.name
            assert node.pools == {"warehouse"}
            assert (node.partitions_def is not None) == (stream.partitioned is not None)


def test_disabled_systems_are_left_out(settings, monkeypatch):
    monkeypatch.setenv("IP_ENABLED_SYSTEMS", "stripe")
    from integration_pipelines.settings import Settings

    keys = build_definitions(Settings()).resolve_asset_graph().get_all_asset_keys()
    # extracts of the enabled system only, and no sync whose target is disabled
    assert {k.path[0] for k in keys} == {"stripe", "core", "webhooks", "reconciliation", "roi", "reporting"}


@pytest.mark.parametrize("system", discover_systems(), ids=lambda s: s.name)
def test_sandbox_by_default_live_with_all_secrets_error_with_some(settings, system):
    sandbox = resolve_system(system, settings, environ={})
    assert sandbox.mode == "sandbox" and sandbox.base_url == settings.sandbox_url
    secrets = [v.env for v in system.values.values() if v.secret]
    all_set = {v.env: (f"https://fake-live-{system.name}.example.invalid" if v.env.endswith("_URL")
                       else f"FAKE-live-{v.env.lower()}") for v in system.values.values()}
    live = resolve_system(system, settings, environ=all_set)
    assert live.mode == "live" and not live.base_url.startswith("http://127.0.0.1")
    if len(secrets) > 1:
        with pytest.raises(ConfigurationError) as info:
            resolve_system(system, settings, environ={secrets[0]: "FAKE-only-one"})
        assert secrets[1] in str(info.value) and "FAKE-only-one" not in str(info.value)


def test_generated_docs_are_current():
    for name, text in (("systems.md", systems_markdown()), ("warehouse.md", warehouse_markdown()),
                       ("sync-catalog.md", sync_catalog_markdown())):
        assert (PROJECT_ROOT / "docs" / name).read_text() == text, (
            f"docs/{name} is out of date: run `integration-pipelines docs`"
        )
