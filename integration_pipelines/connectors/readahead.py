"""Read the next page while the current one is converted and spooled.

An extract alternates between waiting for the API (the request, the server building the page, the transfer)
and Python work on the page it has (typed Arrow columns, hashes, a Parquet write). Done one after the other,
the stream takes the sum of both; with one page read ahead, the wait for page n+1 overlaps the work on page n.
The queue is bounded, so at most `depth` pages wait in memory: the read stays streamed.

Everything the reading thread would log is handed to the consuming thread and logged there, so run logs (a
Dagster context's logger) are only ever written from the thread that owns them.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, TypeVar

from .http import LogSink

T = TypeVar("T")
_DONE = object()
LOG_FLUSH_SECONDS = 1.0
"""While waiting for a page, the consumer passes on what the reader logged at least this often."""


class HandOverLog:
    """A LogSink for the reading thread: lines wait here until the consuming thread calls `flush`."""

    def __init__(self, target: LogSink | None) -> None:
        self.target = target
        self.lines: deque[tuple[str, str, tuple[Any, ...]]] = deque()

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(("info", msg, args))

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(("warning", msg, args))

    def flush(self) -> None:
        while self.lines:
            level, msg, args = self.lines.popleft()
            if self.target is not None:
                getattr(self.target, level)(msg, *args)


def read_ahead(pages: Iterator[T], log: HandOverLog, depth: int = 2) -> Iterator[T]:
    """Yield what `pages` yields, fetched by a helper thread up to `depth` items ahead.

    An exception in the reader is raised here, with its traceback, after the pages read before it. When the
    consumer stops early (an error of its own, or it closes the generator), the reader is told to stop, finishes
    the request it is in, and is joined, so no thread outlives the read and the client is closed after it."""
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                handoff.put((item, error), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(None, exc)

    reader = threading.Thread(target=produce, name="extract-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item, error = handoff.get(timeout=LOG_FLUSH_SECONDS)
            except queue.Empty:  # a slow page, or the reader backing off: its log lines should not wait for it
                log.flush()
                continue
            log.flush()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join()
        log.flush()
        close = getattr(pages, "close", None)  # a suspended generator: run its finally blocks now
        if close is not None:
            close()
