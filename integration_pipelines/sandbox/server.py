"""Run the sandbox with uvicorn: in the foreground for the CLI, or in a thread on an ephemeral port for tests.

A messy world (`world="messy"`) is planted through the vendors' APIs, so it can only be planted once the server
answers: `SandboxServer.start` plants it before returning, `serve_forever` from a helper thread once the port is
up (the CLI's sandbox is ready for clients only when `GET /_sandbox/world/anomalies` lists the planted records).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Self

import httpx
import uvicorn

from ..background_server import BackgroundServer
from .app import Sandbox

log = logging.getLogger(__name__)


class SandboxServer(BackgroundServer):
    """A sandbox listening on 127.0.0.1 in a background thread; `port=0` picks a free port."""

    def __init__(self, sandbox: Sandbox | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox or Sandbox()
        super().__init__(self.sandbox, name="sandbox-server", host=host, port=port)

    def start(self, timeout: float = 15.0) -> Self:
        """Serve, then plant the messy world's "before" anomalies (seeded, so the same on every start)."""
        super().start(timeout)
        try:
            self.sandbox.plant_messy(self.url)
        except BaseException:
            self.stop()
            raise
        return self


def _plant_when_up(sandbox: Sandbox, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    try:
        planted = sandbox.plant_messy(url, strict=False)  # today's world differs by the day: skip, don't die
        print(f"Messy world: planted {len(planted)} anomalies; see {url}/_sandbox/world/anomalies", flush=True)
    except Exception:  # the sandbox still serves; the log says why the world is not messy
        log.exception("planting the messy world failed")


def serve_forever(host: str, port: int, seed: int, scale: float, anchor: datetime | None, days: int,
                  world: str = "tidy") -> None:
    sandbox = Sandbox(seed=seed, scale=scale, anchor=anchor, days=days, world=world)
    if world == "messy":
        client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        threading.Thread(target=_plant_when_up, args=(sandbox, f"http://{client_host}:{port}"), daemon=True,
                         name="messy-world-planter").start()
    uvicorn.run(sandbox, host=host, port=port, log_level="info", access_log=False, lifespan="off")
