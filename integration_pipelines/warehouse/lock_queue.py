"""Taking turns on the warehouse file: a process that waits for DuckDB's lock gets the next turn.

DuckDB locks a database file for one writing process at a time, and a process that finds it locked can only try
again later. The event lane holds the file for a whole batch (5-15 s under steady traffic) and opens it again a few
milliseconds after closing it, so a nightly step polling every second almost never found it free: measured on the
running demo under 5 events/s, each of the nightly's steps waited 20-40 s per connection, and the nightly ran for
tens of minutes instead of about one.

The fix is a queue of one bit per waiter. A process that finds the file locked leaves a marker file in
`<database>.waiting/` (named after its process and thread, its time refreshed on every try, removed once it has
the file) and tries more often. A process about to open the file first looks for fresh markers of *other*
processes and, if there are any, waits up to `YIELD_SECONDS` for them to go, so the waiter gets the gap. Bounded
both ways: a waiter's marker counts only while it is fresh (a killed process's marker is ignored after
`FRESH_SECONDS`), and nobody yields for longer than `YIELD_SECONDS` per connection, so the lane is never stopped
behind a long nightly: it takes turns with it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

#: a marker older than this is a waiter that died or gave up: ignored
FRESH_SECONDS = 3.0
#: the longest a process about to open the file waits for other processes' waiters, per connection
YIELD_SECONDS = 5.0
#: how often a waiter tries again once it has left its marker (the holder's gap may be short)
WAITER_RETRY_SECONDS = 0.1


class LockQueue:
    """The waiters' markers of one database file (see the module docstring)."""

    def __init__(self, database: str) -> None:
        path = Path(database)
        self.folder = path.with_name(path.name + ".waiting")
        self.me = f"{os.getpid()}.{threading.get_ident()}"

    def _others_waiting(self) -> bool:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return False
        now = time.time()
        mine = f"{os.getpid()}."
        for entry in entries:
            if entry.name.startswith(mine):
                continue
            with suppress(FileNotFoundError):
                if now - entry.stat().st_mtime < FRESH_SECONDS:
                    return True
        return False

    def let_waiters_go_first(self) -> float:
        """Before opening the file: wait (at most `YIELD_SECONDS`) while another process is waiting for it.
        Returns the seconds waited."""
        started = time.monotonic()
        while self._others_waiting() and time.monotonic() - started < YIELD_SECONDS:
            time.sleep(0.02)
        return time.monotonic() - started

    @contextmanager
    def waiting(self) -> Iterator[WaitMarker]:
        """While this thread waits for the lock: its marker, refreshed by `WaitMarker.still_waiting`."""
        marker = WaitMarker(self.folder / self.me)
        try:
            yield marker
        finally:
            marker.remove()


class WaitMarker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.placed = False

    def still_waiting(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            self.placed = True
        except OSError:  # a read-only folder: waiting still works, only without the turn
            pass

    def remove(self) -> None:
        if self.placed:
            with suppress(OSError):
                self.path.unlink()
