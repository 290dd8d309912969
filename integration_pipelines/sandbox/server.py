"""Run the sandbox with uvicorn: in the foreground for the CLI, or in a thread on an ephemeral port for tests."""

from __future__ import annotations

from datetime import datetime

import uvicorn

from ..background_server import BackgroundServer
from .app import Sandbox


class SandboxServer(BackgroundServer):
    """A sandbox listening on 127.0.0.1 in a background thread; `port=0` picks a free port."""

    def __init__(self, sandbox: Sandbox | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox or Sandbox()
        super().__init__(self.sandbox, name="sandbox-server", host=host, port=port)


def serve_forever(host: str, port: int, seed: int, scale: float, anchor: datetime | None, days: int) -> None:
    uvicorn.run(Sandbox(seed=seed, scale=scale, anchor=anchor, days=days), host=host, port=port,
                log_level="info", access_log=False, lifespan="off")
