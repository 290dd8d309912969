"""The landing store on S3-compatible object storage (`IP_LANDING_URL=s3://bucket/prefix`).

Same layout as the local store, as object keys under the prefix:

    landing/<provider>/<yyyy-mm-dd>/<event id>.json      verified, not yet claimed by a run
    claimed/<batch>/<provider>/<yyyy-mm-dd>/<id>.json    claimed by the event lane for one batch
    processed/<provider>/<yyyy-mm-dd>/<id>.json          applied to the warehouse
    failed/<provider>/<yyyy-mm-dd>/<id>.json             failed to apply; `<id>.error.txt` beside it
    seen/<provider>/<id>                                  dedupe marker: this id was landed once, ever
    received/<provider>                                   rewritten as events land: `last_received`
    locks/<key of an object being moved>                  a mover's token while it moves that object

What the local store promises, and how each holds here:

- *Durable before the 2xx*: a PUT that S3 answered 200 is stored durably (and whole: an object appears
  complete or not at all, so there are no temp files to sweep). Holds.
- *Write once per provider id* (`land` returns False and writes nothing when the id was landed before): the
  marker is checked first; the event object and then the marker are written with `If-None-Match: *`, so two
  receivers landing the same id at once store it once (the second gets 412 and acknowledges a duplicate). As
  on disk, a receiver that dies between the event and its marker leaves the event stored and no marker, so a
  redelivery after the event was claimed lands a second copy, which the keyed upsert absorbs. Holds (better
  than on disk across machines: the disk store's per-id lock is per process).
- *A claimed file cannot be handed out twice; an unclaimed one is always seen again*: S3 has no rename. A move
  is copy + delete, made exclusive by a token object (`locks/<source key>`) created with `If-None-Match: *`:
  one mover gets it, the others get 412 and skip the object ("moved elsewhere meanwhile", as a failed rename
  on disk). The winner copies, deletes the source, then deletes the token, so while the source exists its
  token does too, and a mover that wins a token after that finds no source and skips. Holds, on any store
  with conditional writes (AWS S3 since 2024, MinIO, Cloudflare R2, Ceph RGW 19+; moto in the tests).
- *A crash never leaves a stale lock* (flock is freed by the kernel): does NOT hold as such: a mover killed
  between its token and its delete leaves the token behind. A token older than `claim_lease_seconds` (300 s;
  a move takes milliseconds) is taken over with `If-Match: <its ETag>` (one taker wins), so the event is
  claimable again after the lease, not at once. The age is the token's LastModified against this machine's
  clock: keep clocks within the lease of the store's. Leftover tokens whose source is gone are a few bytes
  each; a bucket lifecycle rule expiring `locks/` after a day removes them.
- *A crash mid-move leaves the file in landing/ (claimed again) or in an orphaned batch (replayed)*: the same,
  and one more case: killed between copy and delete, the event is in both; after the lease it is claimed again
  (applied twice: the keyed upsert absorbs it).
- *fsync of each directory*: nothing to do (no directories); `drop_batch` has nothing to remove, since a batch
  is only its objects' common prefix.
- *`last_received` follows every new id*: here `received/<provider>` is rewritten at most once a minute per
  process (a write per event would double the requests), so it lags by up to a minute; the silence alert counts
  in minutes.

Endpoint, region and credentials come from the standard AWS variables boto3 reads itself (`AWS_ENDPOINT_URL`
or `AWS_ENDPOINT_URL_S3`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a
profile, an instance role). With an endpoint set, requests use path-style addressing (what MinIO and most
S3-compatible servers expect).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ..connectors.redaction import register_secret
from .landing import _DAY, _SAFE_NAME, EventFile, LandingStore, safe_event_id

_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → (`bucket`, `some/prefix/`); the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"IP_LANDING_URL={url!r} is not an s3://bucket[/prefix] URL")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def s3_client() -> Any:
    """A boto3 S3 client from the standard AWS environment, with retries on throttling and 5xx answers; one per
    endpoint and credentials in a process (the sensor opens the store every tick, and a client takes a while)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        register_secret(os.environ.get(name))
    return _client(endpoint, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"),
                   os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, key_id: str | None, secret: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32,
                    s3={"addressing_style": "path"} if endpoint else None)
    return boto3.client("s3", config=config)


class S3LandingStore(LandingStore):
    RECEIVED_EVERY_SECONDS = 60.0

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, claim_lease_seconds: float = 300.0,
                 workers: int = 16, clock: Callable[[], float] = time.time) -> None:
        self.bucket = bucket
        self.clock = clock  # this machine's time, against which a token's age is judged (a test sets it)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client if client is not None else s3_client()
        self.claim_lease_seconds = claim_lease_seconds
        self.workers = workers
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._received: dict[str, float] = {}
        self._received_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3LandingStore:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # -- keys ---------------------------------------------------------------------------------------------
    def _base(self, area: str, batch: str = "") -> str:
        return f"{self.prefix}{area}/{batch}/" if area == "claimed" else f"{self.prefix}{area}/"

    def key(self, ref: EventFile) -> str:
        return f"{self._base(ref.area, ref.batch)}{ref.key}"

    def url(self, ref: EventFile) -> str:
        return f"s3://{self.bucket}/{self.key(ref)}"

    def _note_key(self, ref: EventFile) -> str:
        return self.key(ref)[: -len(".json")] + ".error.txt"

    def _token_key(self, key: str) -> str:
        return f"{self.prefix}locks/{key[len(self.prefix):]}"

    # -- small S3 helpers ---------------------------------------------------------------------------------
    def _put_new(self, key: str, data: bytes) -> bool:
        """Create `key` unless it exists (If-None-Match: *); False when it existed (or a concurrent writer won)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:
            if _code(exc) in _LOST:
                return False
            raise
        return True

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def _keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    # -- interface ----------------------------------------------------------------------------------------
    def land(self, provider: str, day: str, event_id: str, data: bytes) -> bool:
        if not _SAFE_NAME.match(provider) or safe_event_id(event_id) != event_id or not _DAY.match(day):
            raise ValueError("unsafe provider, day or event id")
        marker = f"{self.prefix}seen/{provider}/{event_id}"
        if self._head(marker) is not None:
            return False
        written = self._put_new(self.key(EventFile("landing", provider, day, event_id)), data)
        # the marker only after the event is stored; a 412 on it means a concurrent receiver landed the id too
        self._put_new(marker, b"")
        if written:
            self._touch_received(provider)
        return written

    def _touch_received(self, provider: str) -> None:
        now = time.monotonic()
        with self._received_lock:
            if now - self._received.get(provider, -1e9) < self.RECEIVED_EVERY_SECONDS:
                return
            self._received[provider] = now
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}received/{provider}", Body=b"")

    def last_received(self, provider: str) -> float | None:
        head = self._head(f"{self.prefix}received/{provider}")
        return head["LastModified"].timestamp() if head else None

    def list(self, area: str, provider: str | None = None, batch: str = "", limit: int | None = None
             ) -> list[EventFile]:
        base = self._base(area, batch)
        found: list[EventFile] = []
        for key in self._keys(base + (f"{provider}/" if provider else "")):
            parts = key[len(base):].split("/")
            if len(parts) != 3 or not parts[2].endswith(".json") or not _DAY.match(parts[1]):
                continue
            found.append(EventFile(area, parts[0], parts[1], parts[2][: -len(".json")], batch))
            if limit is not None and len(found) >= limit:
                break
        return found

    def read(self, ref: EventFile) -> bytes:
        data = self._get(self.key(ref))
        if data is None:
            raise FileNotFoundError(self.url(ref))
        return data

    def move(self, ref: EventFile, area: str, batch: str = "") -> EventFile:
        """Copy, delete the source; FileNotFoundError when the source is gone or another mover holds it."""
        target = ref.at(area, batch)
        source, destination = self.key(ref), self.key(target)
        token = self._token_key(source)
        if not self._take(token):
            raise FileNotFoundError(f"{self.url(ref)} is being moved by another process")
        try:
            try:
                self.client.copy_object(Bucket=self.bucket, Key=destination,
                                        CopySource={"Bucket": self.bucket, "Key": source})
            except Exception as exc:
                if _code(exc) in _MISSING:
                    raise FileNotFoundError(self.url(ref)) from None
                raise
            try:
                self.client.delete_object(Bucket=self.bucket, Key=source)
            except Exception:
                # leave the event in one place: undo the copy (best effort) before the token goes
                with contextlib.suppress(Exception):
                    self.client.delete_object(Bucket=self.bucket, Key=destination)
                raise
            if ref.area == "failed" and area != "failed":
                self.client.delete_object(Bucket=self.bucket, Key=self._note_key(ref))
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=token)
        return target

    def _take(self, token: str) -> bool:
        """Create the mover's token; take over one older than the lease (its mover died); False if held."""
        body = json.dumps({"owner": self.owner, "at": time.time()}).encode()
        for _ in range(3):
            if self._put_new(token, body):
                return True
            head = self._head(token)
            if head is None:  # its holder just finished: try again (it will find no source, or a new one)
                continue
            if self.clock() - head["LastModified"].timestamp() < self.claim_lease_seconds:
                return False
            try:
                self.client.put_object(Bucket=self.bucket, Key=token, Body=body, IfMatch=head["ETag"])
            except Exception as exc:
                if _code(exc) in _LOST | _MISSING:
                    return False
                raise
            return True
        return False

    def move_many(self, refs: list[EventFile], area: str, batch: str = "") -> list[EventFile]:
        """Move in parallel (each move is four requests); a file moved elsewhere meanwhile is skipped."""
        def one(ref: EventFile) -> EventFile | None:
            try:
                return self.move(ref, area, batch)
            except FileNotFoundError:
                return None

        if len(refs) <= 1:
            results = [one(ref) for ref in refs]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(refs))) as pool:
                results = list(pool.map(one, refs))
        return [moved for moved in results if moved is not None]

    def write_note(self, ref: EventFile, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._note_key(ref), Body=text.encode())

    def read_note(self, ref: EventFile) -> str | None:
        data = self._get(self._note_key(ref))
        return None if data is None else data.decode()

    def batches(self) -> list[str]:
        names: list[str] = []
        base = f"{self.prefix}claimed/"
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/"):
            names.extend(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def drop_batch(self, batch: str) -> None:
        """Nothing to remove: a batch is the common prefix of its objects and ends with its last one."""
