"""S12 through a running Dagster for an ERP without webhooks: stock adjustments keep being booked in NetSuite
while we check that one of them reaches Shopify, read back through Shopify's inventory API, with no run launched by
hand. The path is the product's own: the `netsuite_change_poll` sensor asks NetSuite what changed and lands a notice,
`webhook_landing_sensor` starts the event lane, the lane reads `netsuite/inventory_items`, rebuilds core and runs
`inventory_to_shopify`. Nothing here is timed but for generous bounds on a hang."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_pipelines.assets.core import CORE_TABLES
from integration_pipelines.sandbox.server import SandboxServer

from .dagster_dev import CLI, DagsterDev, Processes, free_port, stack_environment, start_dagster_dev
from .test_change_poll import adjust_in_netsuite, shopify_available
from .test_event_lane_live import GENEROUS, wait_until

pytest_plugins = ["integration_pipelines_tests.dagster_dev"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),  # a bound on a hang of a whole dagster dev, not a speed claim
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile

_ = CLI  # the stack runs the project's own CLI (dagster_dev.start_dagster_dev)


@contextlib.contextmanager
def running_dagster(root: Path, sandbox_server: SandboxServer, systems: str, **extra: str) -> Iterator[DagsterDev]:
    """`dagster dev` for `systems` on the session's sandbox (no webhook receiver: nothing here is delivered by
    HTTP; the poll lands its notices itself); stopped afterwards."""
    env = stack_environment(root, sandbox_server.url, free_port(), IP_ENABLED_SYSTEMS=systems,
                            IP_SYNC_START="2026-01-01", **extra)
    processes = Processes(root / "logs")
    try:
        yield start_dagster_dev(processes, env, root)
    finally:
        processes.stop()


class Adjustments(threading.Thread):
    """A warehouse clerk booking stock counts in NetSuite, one every `every` seconds, on one item."""

    def __init__(self, settings, item_id: str, every: float = 1.5) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.settings, self.item_id, self.every = settings, item_id, every
        self.booked = 0
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                answer = adjust_in_netsuite(self.settings, self.item_id, 1)
                if answer["status"]["isSuccess"]:
                    self.booked += 1
                else:
                    self.errors.append(str(answer["status"]))
            except Exception as exc:
                self.errors.append(repr(exc))
            self.halt.wait(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def test_a_netsuite_stock_change_reaches_shopify_through_the_change_poll(tmp_path: Path, sandbox_server: SandboxServer,
                                                                         settings, sandbox):
    url = sandbox_server.url
    # NetSuite is this group's ERP of record for stock; the poll asks it every 3 s
    with running_dagster(tmp_path, sandbox_server, "netsuite,shopify", IP_STOCK_ERP="netsuite",
                         IP_CHANGE_POLL_SECONDS="3") as ui:
        # what the business had before switching the event path on: the stock streams and core, read once
        first = ui.launch_run("__ASSET_JOB", assets=[["netsuite", "inventory_items"], ["shopify", "products"],
                                                     ["shopify", "inventory_levels"],
                                                     *[["core", t] for t in CORE_TABLES]])
        assert ui.wait_run(first, timeout=GENEROUS) == "SUCCESS", [
            e for e in ui.events(first) if e.get("level") == "ERROR" or e.get("error")][:3]
        launched_by_hand = {r["runId"] for r in ui.runs()}
        # other stock keeps moving: a clerk counts WIDGET-S (NetSuite item 200, 138 on hand) up by one, again and again
        traffic = Adjustments(settings, "200")
        traffic.start()
        # the delivery we follow: 54 GADGET (NetSuite item 202, 146 on hand) received → 200 on hand
        assert adjust_in_netsuite(settings, "202", 54)["status"]["isSuccess"] is True
        wait_until(lambda: shopify_available(url, sandbox, "GADGET") == [200],
                   "Shopify's stock of GADGET set to NetSuite's 200 by the change poll")
        assert traffic.is_alive() and traffic.booked > 0, "stock was still moving while we checked"
        traffic.stop()
        assert traffic.errors == [], traffic.errors[:3]
        widgets = 138 + traffic.booked
        wait_until(lambda: shopify_available(url, sandbox, "WIDGET-S") == [widgets],
                   f"Shopify's stock of WIDGET-S set to NetSuite's last count, {widgets}")
        assert shopify_available(url, sandbox, "GADGET") == [200]
        # the test launched no run after the first read: the lane was started by the sensors
        runs = [r for r in ui.runs() if r["runId"] not in launched_by_hand]
        lanes = [r for r in runs if r["jobName"] == "event_lane"]
        assert lanes and all(r["status"] in ("STARTED", "SUCCESS") for r in lanes), runs
        assert {r["jobName"] for r in runs} <= {"event_lane", "__ASSET_JOB"}, runs  # the lane, the automation
