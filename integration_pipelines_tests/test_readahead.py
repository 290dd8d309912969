"""The extract's one-page read-ahead (connectors/readahead.py): order, bounded memory, errors, early stops, logs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from integration_pipelines.connectors.readahead import HandOverLog, read_ahead


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, int]] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(("info", msg % args if args else msg, threading.get_ident()))

    def warning(self, msg: str, *args: object) -> None:
        self.lines.append(("warning", msg % args if args else msg, threading.get_ident()))


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "extract-read-ahead"}


def test_pages_arrive_in_order_and_the_reader_stays_at_most_depth_ahead():
    produced: list[int] = []

    def pages() -> Iterator[int]:
        for number in range(20):
            produced.append(number)
            yield number

    seen = []
    for page in read_ahead(pages(), HandOverLog(None), depth=2):
        time.sleep(0.01)  # the consumer is the slow side: the reader must wait, not run away with memory
        # queued (2) + the one the reader holds while waiting to queue it + the one being consumed
        assert len(produced) - len(seen) <= 4
        seen.append(page)
    assert seen == list(range(20))
    assert not _threads()


def test_a_reader_error_comes_after_the_pages_read_before_it_with_its_traceback():
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is broken")

    seen = []
    with pytest.raises(ValueError, match="page 3 is broken") as info:
        for page in read_ahead(pages(), HandOverLog(None)):
            seen.append(page)
    assert seen == [1, 2]
    assert any(entry.name == "pages" for entry in info.traceback), "the reader's frame is kept in the traceback"
    assert not _threads()


def test_a_consumer_that_stops_early_stops_and_joins_the_reader_and_closes_the_source():
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.set()

    def consume() -> None:
        for page in read_ahead(pages(), HandOverLog(None)):
            if page == 5:
                raise RuntimeError("the spool disk is full")

    with pytest.raises(RuntimeError, match="spool disk"):
        consume()
    assert closed.is_set(), "the page generator is closed, so its client and finally blocks run"
    assert not _threads(), "no reader thread outlives the read"


def test_what_the_reader_logs_is_logged_from_the_consuming_thread_in_order():
    target = RecordingLog()
    handover = HandOverLog(target)

    def pages() -> Iterator[int]:
        handover.warning("stripe/charges: 429, retrying in %s s", 1)
        yield 1
        handover.info("page 2 read")
        yield 2

    consumer = threading.get_ident()
    assert list(read_ahead(pages(), handover)) == [1, 2]
    assert [(level, text) for level, text, _ in target.lines] == [
        ("warning", "stripe/charges: 429, retrying in 1 s"), ("info", "page 2 read")]
    assert {thread for _, _, thread in target.lines} == {consumer}


def test_a_reader_that_backs_off_is_heard_before_its_page_arrives():
    target = RecordingLog()
    handover = HandOverLog(target)
    heard_while_waiting = threading.Event()

    def pages() -> Iterator[int]:
        handover.warning("429 from the API; retrying in 30 s")
        deadline = time.monotonic() + 10
        while not target.lines and time.monotonic() < deadline:  # the "backoff": until the warning is out
            time.sleep(0.05)
        if target.lines:  # logged by the consumer while this page was still being fetched
            heard_while_waiting.set()
        yield 1

    assert list(read_ahead(pages(), handover)) == [1]
    assert heard_while_waiting.is_set() and target.lines[0][1] == "429 from the API; retrying in 30 s"
