"""Rotated OAuth refresh tokens, kept durably so that the next process presents the newest one.

Xero and QuickBooks rotate refresh tokens: a refresh answers with a new refresh token and the one just presented
stops working (Xero: 30 minutes later; QuickBooks: once the new one is used). A token that lives only in memory
dies with its process, and the next run presents the consumed one from the environment: `invalid_grant`. So a
rotated token is written here the moment it is issued, and read before the environment value on the next run.

- **Where**: `<IP_DATA_DIR>/secrets/tokens/<system>.json`, folder 0700, file 0600; written atomically (temp file,
  fsync, rename, fsync of the folder), so a crash leaves the old token or the new one, never half a file.
- **Encrypted** with `IP_TOKEN_STORE_KEY` when it is set (Fernet, the key stretched with scrypt and a per-file
  salt, so any long random string will do). A stored token that is encrypted is never read without the key: a
  missing or wrong key is a `TokenStoreError` naming `IP_TOKEN_STORE_KEY`, not a silent fall-back to the
  environment's (consumed) token.
- **Bound to the environment's token**: the file records a hash of the refresh token in the environment that it
  descends from. An operator who pastes a *new* refresh token into the environment (after reconnecting the app)
  wins: its hash differs, the stored lineage is retired, and the new token's lineage is stored from then on. A
  process still running with the old environment value never overwrites the newer lineage.
- **One refresh at a time**: `locked()` holds an exclusive `flock` on `<system>.lock` around
  read → refresh → write, across processes (and threads: each holder opens the file itself). The process that
  waited reads the store after the winner wrote it and presents the winner's new token, never the consumed one.

The store holds one small JSON document per system; another backend (a secrets manager, a database row) only
has to offer `locked`, `load` and `save`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from .errors import ConfigurationError
from .redaction import register_secret
from .secrets import SecretFileSettings

FORMAT = "integration-pipelines/token-store/1"
KEY_ENV = "IP_TOKEN_STORE_KEY"
LOCK_TIMEOUT_SECONDS = 120.0
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class TokenStoreError(ConfigurationError):
    """The token store cannot be read or written; the message says what to do."""


class _StoreSettings(SecretFileSettings):
    model_config = SettingsConfigDict(env_prefix="IP_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".data")
    token_store_key: SecretStr | None = Field(default=None, description="encrypts stored refresh tokens")
    secret_fields: ClassVar[frozenset[str] | None] = frozenset({"token_store_key"})



def seed_digest(token: str) -> str:
    """What the store remembers of the environment's refresh token: a hash, never the token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@lru_cache(maxsize=16)
def _fernet_key(passphrase: str, salt: bytes) -> bytes:
    derived = hashlib.scrypt(passphrase.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    return base64.urlsafe_b64encode(derived)


@dataclass(frozen=True)
class StoredToken:
    refresh_token: str
    saved_at: str


class TokenStore:
    """The durable home of one system's rotated refresh token (see the module docstring)."""

    def __init__(self, system: str, directory: Path, key: str | None = None,
                 lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        self.system = system
        self.directory = Path(directory)
        self.path = self.directory / f"{system}.json"
        self.lock_path = self.directory / f"{system}.lock"
        self._key = key or None
        self.lock_timeout = lock_timeout
        register_secret(self._key)

    @classmethod
    def for_system(cls, system: str) -> TokenStore:
        """The store for a system under `IP_DATA_DIR`, encrypted when `IP_TOKEN_STORE_KEY` is set."""
        settings = _StoreSettings()
        key = settings.token_store_key.get_secret_value() if settings.token_store_key else None
        return cls(system, settings.data_dir / "secrets" / "tokens", key)

    # -- locking ---------------------------------------------------------------------------------------
    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.directory.parent, self.directory):  # the folders are ours alone: owner-only
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o700)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes and threads until the block ends (or the generator holding it closes)."""
        try:
            self._ensure_directory()
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TokenStoreError(self._cannot(f"open the lock file {self.lock_path}", exc)) from None
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if time.monotonic() > deadline:
                        raise TokenStoreError(
                            f"Another process has held the {self.system} token lock ({self.lock_path}) for more "
                            f"than {self.lock_timeout:g} seconds while refreshing a token. If no run is refreshing "
                            "right now, a process is stuck: stop it and run again.") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- reading and writing ---------------------------------------------------------------------------
    def _document(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenStoreError(self._cannot(f"read {self.path}", exc)) from None
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("unknown format")
        except ValueError:
            raise TokenStoreError(
                f"The {self.system} token store {self.path} is not a token file this version can read. Move it "
                f"away and put a fresh refresh token in the environment (reconnect the app) to start again.") from None
        return document

    def load(self, seed: str) -> StoredToken | None:
        """The stored refresh token descending from `seed` (the environment's token), or None when nothing is
        stored yet or the stored lineage comes from another environment value."""
        document = self._document()
        if document is None or document.get("descends_from") != seed_digest(seed):
            return None
        token = self._decrypt(document)
        register_secret(token)
        return StoredToken(token, str(document.get("saved_at", "")))

    def save(self, seed: str, refresh_token: str) -> bool:
        """Store `refresh_token` as the newest of `seed`'s lineage; call it while holding `locked()`.

        Returns False (and writes nothing) when the file belongs to a newer lineage that retired `seed`: this
        process runs with an environment value the operator has since replaced."""
        register_secret(refresh_token)
        digest = seed_digest(seed)
        document = self._document()
        retired: list[str] = list(document.get("retired", [])) if document else []
        if document is not None and document.get("descends_from") != digest:
            if digest in retired:
                return False
            retired = [*retired, str(document.get("descends_from"))][-20:]
        record = {"format": FORMAT, "system": self.system, "descends_from": digest, "retired": retired,
                  "saved_at": datetime.now(UTC).isoformat(timespec="seconds"), **self._encrypt(refresh_token)}
        self._write_atomically(json.dumps(record, indent=2) + "\n")
        return True

    def _write_atomically(self, text: str) -> None:
        self._ensure_directory()
        temp = self.directory / f".{self.system}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise TokenStoreError(self._cannot(f"write {self.path}", exc)) from None

    # -- encryption ------------------------------------------------------------------------------------
    def _encrypt(self, token: str) -> dict[str, object]:
        if not self._key:
            return {"encrypted": False, "refresh_token": token}
        from cryptography.fernet import Fernet

        salt = secrets.token_bytes(16)
        value = Fernet(_fernet_key(self._key, salt)).encrypt(token.encode()).decode()
        return {"encrypted": True, "cipher": "fernet+scrypt", "salt": base64.b64encode(salt).decode(),
                "refresh_token": value}

    def _decrypt(self, document: dict) -> str:
        if not document.get("encrypted"):
            return str(document["refresh_token"])
        if not self._key:
            raise TokenStoreError(
                f"The {self.system} refresh token stored in {self.path} is encrypted, and {KEY_ENV} is not set. "
                f"Set {KEY_ENV} to the key it was saved with (the same value every process of this deployment "
                "uses). If that key is lost, delete the file, reconnect the app and put the new refresh token in "
                "the environment: the environment's old token was consumed when it was rotated, so it cannot be "
                "used instead.")
        from cryptography.fernet import Fernet, InvalidToken

        try:
            salt = base64.b64decode(document["salt"])
            return Fernet(_fernet_key(self._key, salt)).decrypt(str(document["refresh_token"]).encode()).decode()
        except (InvalidToken, KeyError, ValueError):
            raise TokenStoreError(
                f"The {self.system} refresh token stored in {self.path} cannot be decrypted with the {KEY_ENV} "
                f"this process was given: the key is wrong (or the file was altered). Set {KEY_ENV} to the key the "
                "token was saved with. If that key is lost, delete the file, reconnect the app and put the new "
                "refresh token in the environment.") from None

    def _cannot(self, what: str, exc: OSError) -> str:
        return (f"Cannot {what} ({exc.strerror or exc}): the {self.system} token store needs a writable folder "
                f"under IP_DATA_DIR, owned by the user running the pipelines.")
