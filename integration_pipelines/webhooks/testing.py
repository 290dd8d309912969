"""Helpers for tests and local experiments: an isolated receiver with explicit settings and secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..settings import Settings
from .config import WebhookSecrets, WebhookSettings
from .landing import LocalLandingStore
from .receiver import Receiver

SECRET_ENV_NAMES = tuple(name.upper() for name in WebhookSecrets.model_fields)


def scrubbed_environment_names() -> list[str]:
    """Variables of the developer's shell that would change a test's receiver: drop them first."""
    return [n for n in os.environ if n.startswith("IP_WEBHOOK_") or n.upper() in SECRET_ENV_NAMES]


def make_receiver(root: Path, public_url: str = "https://hooks.example.test/base", **overrides: object
                  ) -> tuple[Receiver, Settings, WebhookSettings]:
    """A receiver whose store lives under `root`; secret overrides as keyword arguments (field names)."""
    settings = Settings(data_dir=root)
    config_keys = set(WebhookSettings.model_fields)
    config = WebhookSettings(public_url=public_url, store_dir=root,
                             **{k: v for k, v in overrides.items() if k in config_keys})  # type: ignore[arg-type]
    secrets = WebhookSecrets(**{k: v for k, v in overrides.items() if k not in config_keys})  # type: ignore[arg-type]
    return Receiver(LocalLandingStore(root), config, secrets), settings, config


def drain_event_lane(defs: Any, instance: Any, raise_on_error: bool = True) -> Any:
    """Run the event lane job in process until nothing is landed or claimed; the `ExecuteInProcessResult`."""
    from .definitions import LANE_JOB, LANE_OP

    return defs.resolve_job_def(LANE_JOB).execute_in_process(
        run_config={"ops": {LANE_OP: {"config": {"drain": True}}}}, instance=instance,
        raise_on_error=raise_on_error)


def batch_metadata(result: Any) -> list[dict[str, Any]]:
    """The metadata of every batch the lane applied (its `webhooks/events` materializations), in order."""
    from .definitions import EVENTS_ASSET, LANE_OP

    return [{k: v.value for k, v in m.metadata.items()}
            for m in result.asset_materializations_for_node(LANE_OP) if m.asset_key == EVENTS_ASSET]
