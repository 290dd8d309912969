"""The landing store: where a verified event becomes durable before the vendor gets its 2xx.

Layout under the store root (the data dir by default):

    landing/<provider>/<yyyy-mm-dd>/<event id>.json      verified, not yet claimed by a run
    claimed/<batch>/<provider>/<yyyy-mm-dd>/<id>.json    claimed by the event lane for one batch
    processed/<provider>/<yyyy-mm-dd>/<id>.json          applied to the warehouse
    failed/<provider>/<yyyy-mm-dd>/<id>.json             failed to apply; `<id>.error.txt` beside it
    seen/<provider>/<id>                                  dedupe marker: this id was landed once, ever

Why claiming by rename: the sensor moves the files it hands to a run out of `landing/` atomically, so a file
that arrives while a tick runs is simply still in `landing/` at the next tick; no timestamp cursor can skip it.

The interface (`LandingStore`: land, list, read, move, claim, write_note) is small on purpose, so an object
store can replace the local disk; `LocalLandingStore` is the local-disk implementation, `S3LandingStore`
(landing_s3.py) the S3-compatible one, and `open_landing_store` picks one by `IP_LANDING_URL`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings
    from .config import WebhookSettings

AREAS = ("landing", "claimed", "processed", "failed")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SAFE_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def safe_event_id(raw: str) -> str:
    """A file-name-safe id: kept as is when plainly safe, else a hash (no `/`, `..`, NUL, or odd bytes)."""
    if _SAFE_ID.match(raw) and ".." not in raw and not raw.endswith((".tmp", ".json", ".txt")):
        return raw
    return "h-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(frozen=True, order=True)
class EventFile:
    """One landed event, wherever it currently is."""

    area: str
    provider: str
    day: str
    event_id: str
    batch: str = ""

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.day}/{self.event_id}.json"

    def at(self, area: str, batch: str = "") -> EventFile:
        return EventFile(area, self.provider, self.day, self.event_id, batch)


class LandingStore(ABC):
    """What the receiver, the event lane and the replay command need from storage."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (a folder, or an s3:// URL)."""
        return type(self).__name__

    def last_received(self, provider: str) -> float | None:
        """When the provider's last new event landed (epoch seconds), None if never or unknown."""
        return None

    @abstractmethod
    def land(self, provider: str, day: str, event_id: str, data: bytes) -> bool:
        """Write durably; False (and nothing written) when this provider's id was landed before."""

    @abstractmethod
    def list(self, area: str, provider: str | None = None, batch: str = "", limit: int | None = None
             ) -> list[EventFile]:
        """Files of an area in a stable order (provider, day, id)."""

    @abstractmethod
    def read(self, ref: EventFile) -> bytes: ...

    @abstractmethod
    def move(self, ref: EventFile, area: str, batch: str = "") -> EventFile: ...

    @abstractmethod
    def write_note(self, ref: EventFile, text: str) -> None:
        """Write `<id>.error.txt` beside a file (failed events)."""

    @abstractmethod
    def read_note(self, ref: EventFile) -> str | None: ...

    @abstractmethod
    def batches(self) -> list[str]:
        """Claimed batch names, oldest first."""

    @abstractmethod
    def drop_batch(self, batch: str) -> None:
        """Forget an emptied batch."""

    def move_many(self, refs: list[EventFile], area: str, batch: str = "") -> list[EventFile]:
        """Move several files; one that another process moved meanwhile is skipped (not in the result)."""
        moved: list[EventFile] = []
        for ref in refs:
            with contextlib.suppress(FileNotFoundError):
                moved.append(self.move(ref, area, batch))
        return moved

    def claim(self, batch: str, limit: int) -> list[EventFile]:
        """Move up to `limit` landed files into a new batch; a file claimed elsewhere meanwhile is skipped."""
        return self.move_many(self.list("landing", limit=limit), "claimed", batch)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durably(path: Path) -> None:
    """Create missing directories and fsync each new one's parent, so the new entry survives a crash."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        _fsync_dir(directory.parent)


class LocalLandingStore(LandingStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks = [threading.Lock() for _ in range(64)]

    @property
    def location(self) -> str:
        return str(self.root)

    # -- paths --------------------------------------------------------------------------------------------
    def path(self, ref: EventFile) -> Path:
        base = self.root / ref.area
        if ref.area == "claimed":
            base = base / ref.batch
        return base / ref.provider / ref.day / f"{ref.event_id}.json"

    def _seen(self, provider: str, event_id: str) -> Path:
        return self.root / "seen" / provider / event_id

    def last_received(self, provider: str) -> float | None:
        """When the provider's last new event landed (its dedupe folder changes with every new id)."""
        folder = self.root / "seen" / provider
        return folder.stat().st_mtime if folder.exists() else None

    def _write_durably(self, target: Path, data: bytes) -> None:
        """temp file in the same directory → write → fsync → rename → fsync the directory."""
        _makedirs_durably(target.parent)
        temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    # -- interface ----------------------------------------------------------------------------------------
    def land(self, provider: str, day: str, event_id: str, data: bytes) -> bool:
        if not _SAFE_NAME.match(provider) or safe_event_id(event_id) != event_id:
            raise ValueError("unsafe provider or event id")
        marker = self._seen(provider, event_id)
        # one writer per id at a time in this process; the marker is written only after the file is durable,
        # so a crash in between means a redelivery lands it again (and the keyed upsert absorbs the copy)
        with self._locks[hash((provider, event_id)) % len(self._locks)]:
            if marker.exists():
                return False
            self._write_durably(self.path(EventFile("landing", provider, day, event_id)), data)
            self._write_durably(marker, b"")
        return True

    def list(self, area: str, provider: str | None = None, batch: str = "", limit: int | None = None
             ) -> list[EventFile]:
        base = self.root / area
        if area == "claimed":
            base = base / batch
        found: list[EventFile] = []
        if not base.is_dir():
            return found
        providers = [provider] if provider else sorted(p.name for p in base.iterdir() if p.is_dir())
        for name in providers:
            for day_dir in sorted((base / name).glob("????-??-??")):
                for entry in sorted(os.scandir(day_dir), key=lambda e: e.name):
                    if entry.name.startswith(".") or not entry.name.endswith(".json"):
                        continue
                    found.append(EventFile(area, name, day_dir.name, entry.name[:-5], batch))
                    if limit is not None and len(found) >= limit:
                        return found
        return found

    def read(self, ref: EventFile) -> bytes:
        return self.path(ref).read_bytes()

    def move(self, ref: EventFile, area: str, batch: str = "") -> EventFile:
        target, directories = self._rename(ref, area, batch)
        for directory in directories:
            _fsync_dir(directory)
        return target

    def move_many(self, refs: list[EventFile], area: str, batch: str = "") -> list[EventFile]:
        """Rename every file, then fsync each directory involved once. A claim of 500 files used to cost 1,000
        directory fsyncs (a 10,000-file backlog took 46 s per sensor tick); a crash before the fsyncs can only
        undo renames, which leaves a file in `landing/` (claimed again) or in an orphaned batch (replayed)."""
        moved: list[EventFile] = []
        touched: dict[Path, None] = {}
        for ref in refs:
            try:
                target, directories = self._rename(ref, area, batch)
            except FileNotFoundError:
                continue
            moved.append(target)
            touched.update(dict.fromkeys(directories))
        for directory in touched:
            _fsync_dir(directory)
        return moved

    def _rename(self, ref: EventFile, area: str, batch: str) -> tuple[EventFile, tuple[Path, Path]]:
        target = ref.at(area, batch)
        destination = self.path(target)
        if not destination.parent.is_dir():
            _makedirs_durably(destination.parent)
        source = self.path(ref)
        os.replace(source, destination)
        note = source.with_name(f"{ref.event_id}.error.txt")
        if area != "failed":
            note.unlink(missing_ok=True)
        return target, (destination.parent, source.parent)

    def sweep_temp(self, older_than: float = 600.0) -> int:
        """Delete temp files a killed writer left behind (`.<name>.<uuid>.tmp`); returns how many.

        They were never renamed into place, so the event they carried was never acknowledged and the provider
        re-sends it. Only files older than `older_than` seconds go, so a receiver sharing this store and
        writing right now keeps its temp file.
        """
        cutoff = time.time() - older_than
        removed = 0
        for area in (*AREAS, "seen"):
            base = self.root / area
            if not base.is_dir():
                continue
            for temp in base.rglob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if temp.stat().st_mtime < cutoff:
                        temp.unlink()
                        removed += 1
        return removed

    def write_note(self, ref: EventFile, text: str) -> None:
        self._write_durably(self.path(ref).with_name(f"{ref.event_id}.error.txt"), text.encode())

    def read_note(self, ref: EventFile) -> str | None:
        note = self.path(ref).with_name(f"{ref.event_id}.error.txt")
        return note.read_text() if note.exists() else None

    def batches(self) -> list[str]:
        base = self.root / "claimed"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def drop_batch(self, batch: str) -> None:
        base = self.root / "claimed" / batch
        if not base.is_dir():
            return
        for directory in sorted(base.rglob("*"), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()


def open_landing_store(settings: Settings | None = None, config: WebhookSettings | None = None) -> LandingStore:
    """The deployment's landing store: `IP_LANDING_URL=s3://bucket/prefix` is an S3-compatible bucket (the
    `shared-storage` extra), unset is the local folder (IP_WEBHOOK_STORE_DIR, else IP_DATA_DIR)."""
    from ..settings import load_settings
    from .config import load_webhook_settings

    settings = settings or load_settings()
    if settings.landing_url:
        from .landing_s3 import S3LandingStore

        return S3LandingStore.from_url(settings.landing_url)
    return LocalLandingStore((config or load_webhook_settings()).store_root(settings))
