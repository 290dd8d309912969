"""A run's local spool of Parquet batches.

Pages stream into bounded Arrow batches that are written here as they fill, so memory stays flat however long
the stream; the warehouse then loads the whole spool in one short transaction, so a failure mid-read commits
nothing and the DuckDB write lock is held for seconds, not for the length of an API crawl.

A run killed before its load leaves its spool behind. Each spool carries an owner file (host, pid, start time)
so that a later run can tell a dead run's leftovers from a live run's work and remove them, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

OWNER_FILE = "owner.json"
# A spool whose owner cannot be checked (another host, no owner file) is stale after this long: no single
# stream read takes two days, and removing a live run's spool would only fail that run, not lose data.
STALE_AFTER_SECONDS = 48 * 3600
_UNOWNED_STALE_AFTER_SECONDS = 3600


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if directory.exists():
            shutil.rmtree(directory)  # leftovers of a crashed attempt of this same run step
        for attempt in range(3):  # a sibling's cleanup may remove an empty parent while we create it
            try:
                directory.mkdir(parents=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        (directory / OWNER_FILE).write_text(json.dumps(owner))
        self.files: list[Path] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        path = self.directory / f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        self.files.append(path)
        self.rows += table.num_rows

    def cleanup(self) -> None:
        """Remove this spool, then its parents (run, system, stream folders) as far as they are empty."""
        _remove(self.directory)


def _remove(directory: Path, levels: int = 4) -> None:
    """The spool folder, then up to `levels` empty parents: a run's folders (`<run>/<system>/<stream>/<key>`)
    go with its last spool; the spool root itself may go too, and the next spool recreates it."""
    shutil.rmtree(directory, ignore_errors=True)
    parent = directory.parent
    for _ in range(levels):
        try:
            parent.rmdir()
        except OSError:
            break  # not empty (a sibling stream of the same run), or already gone
        parent = parent.parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_reason(directory: Path, now: float) -> str | None:
    try:
        owner: dict[str, Any] = json.loads((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        age = now - max((p.stat().st_mtime for p in directory.iterdir()), default=directory.stat().st_mtime)
        return f"no owner, untouched for {age / 3600:.1f} h" if age > _UNOWNED_STALE_AFTER_SECONDS else None
    age = now - float(owner.get("started", now))
    if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
        return f"its process {owner.get('pid')} is gone"
    if age > STALE_AFTER_SECONDS:
        return f"started {age / 3600:.0f} h ago"
    return None


def sweep_stale_spools(root: Path, log: Any = None) -> int:
    """Remove spools left by runs that died before loading them; returns how many. Never touches a live one.

    Nothing in a stale spool is lost: it was never loaded, the stream's cursor did not move, and the rerun reads
    the same records again from the API.
    """
    if not root.is_dir():
        return 0
    now = time.time()
    candidates = {p.parent for p in root.rglob(OWNER_FILE)} | {p.parent for p in root.rglob("part-*.parquet")}
    removed = 0
    for directory in sorted(candidates):
        with contextlib.suppress(FileNotFoundError):  # another run's sweep got there first
            reason = _stale_reason(directory, now)
            if reason is None:
                continue
            parts = len(list(directory.glob("part-*.parquet")))
            _remove(directory)
            removed += 1
            if log is not None:
                log.warning(f"Removed the stale spool {directory} ({parts} Parquet part(s), never loaded): "
                            f"{reason}. Its run died before loading; this run reads those records again.")
    return removed
