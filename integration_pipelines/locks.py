"""Advisory file locks between the processes of one deployment (Dagster run workers, the event lane, the CLI).

Why file locks: two processes that run the same sync at once would both plan the same creates and send them
twice; the `warehouse` pool only orders Dagster steps, not the event lane or `integration-pipelines sync run`.
`fcntl.flock` is released by the kernel when a holder dies (kill -9 included), so a crash never leaves a
stale lock behind. It is per machine: a deployment whose workers share only network services needs a lock in
those services instead (docs/webhooks.md says so).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeoutError(Exception):
    """Another process held the lock for longer than the caller was willing to wait."""


def lock_path(data_dir: Path, name: str) -> Path:
    """`<data_dir>/locks/<name>.lock`, with the name reduced to file-name-safe characters."""
    return data_dir / "locks" / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")


@contextmanager
def exclusive(path: Path, *, timeout: float | None = None, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing); wait up to `timeout` seconds (None: forever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeoutError(f"{path} is held by another process") from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_held(path: Path) -> bool:
    """Whether some process holds the lock right now (a probe: takes and releases it when free)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
