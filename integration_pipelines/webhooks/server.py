"""Run the receiver with uvicorn in a background thread on 127.0.0.1 (tests, embedded demos)."""

from __future__ import annotations

from ..background_server import BackgroundServer
from .receiver import Receiver


class ReceiverServer(BackgroundServer):
    """The receiver listening on loopback in a thread; `port=0` picks a free port."""

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0) -> None:
        self.receiver = receiver
        super().__init__(receiver.app(), name="webhook-receiver", host=host, port=port)
