"""The token store on its own (connectors/token_store.py) and the OAuth flow's use of it, against a fake token
endpoint that rotates strictly: permissions, encryption, the refusal without the right key, the binding to the
environment's token, and threads of one process refreshing at once."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import httpx
import pytest

from integration_pipelines.connectors.auth import OAuth2Auth
from integration_pipelines.connectors.errors import AuthError
from integration_pipelines.connectors.redaction import redact
from integration_pipelines.connectors.token_store import TokenStore, TokenStoreError, seed_digest

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

SEED = "FAKE-env-refresh-token-aaaaaaaaaaaaaaaa"
NEWER = "FAKE-rotated-refresh-token-bbbbbbbbbbbb"
KEY = "FAKE-store-key-cccccccccccccccccccccc"


def _store(tmp_path: Path, key: str | None = None) -> TokenStore:
    return TokenStore("vendor", tmp_path / "data" / "secrets" / "tokens", key)


def test_saved_token_is_owner_only_and_read_back(tmp_path):
    store = _store(tmp_path)
    assert store.load(SEED) is None
    with store.locked():
        assert store.save(SEED, NEWER)
    assert store.load(SEED).refresh_token == NEWER
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.lock_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.directory.parent).st_mode) == 0o700
    document = json.loads(store.path.read_text())
    assert document["descends_from"] == seed_digest(SEED) and SEED not in store.path.read_text()
    assert [p.name for p in store.directory.iterdir() if p.name.endswith(".tmp")] == [], "no temp file left"


def test_with_a_key_the_file_never_holds_the_token_and_needs_the_key(tmp_path):
    store = _store(tmp_path, KEY)
    store.save(SEED, NEWER)
    text = store.path.read_text()
    assert NEWER not in text and KEY not in text and json.loads(text)["encrypted"] is True
    assert _store(tmp_path, KEY).load(SEED).refresh_token == NEWER
    with pytest.raises(TokenStoreError) as wrong:
        _store(tmp_path, "FAKE-another-key-dddddddddddddddd").load(SEED)
    with pytest.raises(TokenStoreError) as missing:
        _store(tmp_path).load(SEED)
    for error in (wrong.value, missing.value):
        message = str(error)
        assert "IP_TOKEN_STORE_KEY" in message and str(store.path) in message and "\n" not in message
        assert NEWER not in message and KEY not in message
    assert "cannot be decrypted" in str(wrong.value) and "is not set" in str(missing.value)


def test_a_plain_file_is_encrypted_from_the_next_save_once_a_key_is_set(tmp_path):
    _store(tmp_path).save(SEED, NEWER)
    keyed = _store(tmp_path, KEY)
    assert keyed.load(SEED).refresh_token == NEWER
    keyed.save(SEED, "FAKE-rotated-again-eeeeeeeeeeeeeeee")
    assert "FAKE-rotated-again" not in keyed.path.read_text()


def test_a_new_environment_token_retires_the_stored_lineage(tmp_path):
    store = _store(tmp_path)
    store.save(SEED, NEWER)
    pasted = "FAKE-pasted-refresh-token-ffffffffffff"
    assert store.load(pasted) is None, "a new environment value is not answered with the old lineage"
    assert store.save(pasted, "FAKE-pasted-descendant-gggggggggggg")
    assert store.load(SEED) is None
    # a process still running with the replaced value must not write over the newer lineage
    assert not store.save(SEED, "FAKE-stale-descendant-hhhhhhhhhhhh")
    assert store.load(pasted).refresh_token == "FAKE-pasted-descendant-gggggggggggg"


def test_an_unreadable_file_is_a_readable_error(tmp_path):
    store = _store(tmp_path)
    store.directory.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(TokenStoreError, match="not a token file"):
        store.load(SEED)


class _RotatingEndpoint:
    """A token endpoint that rotates on every refresh and refuses a rotated-out token (no grace at all)."""

    def __init__(self, first: str) -> None:
        self.valid = {first}
        self.presented: list[str] = []
        self.issued = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            with self.lock:
                token = form["refresh_token"]
                self.presented.append(token)
                if token not in self.valid:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                self.valid.discard(token)
                self.issued += 1
                rotated = f"FAKE-rt-{self.issued}-zzzzzzzz"
                self.valid.add(rotated)
            return httpx.Response(200, json={"access_token": f"FAKE-at-{self.issued}-zzzzzzzz", "expires_in": 1800,
                                             "refresh_token": rotated})
        return httpx.Response(200, json={"ok": True})


def _auth(store: TokenStore | None) -> OAuth2Auth:
    return OAuth2Auth(system="Vendor", token_url="https://vendor.invalid/token", client_id="FAKE-id",
                      client_secret="FAKE-client-secret-iiiiiiii", grant_type="refresh_token", refresh_token=SEED,
                      credential_hint="Reset VENDOR_REFRESH_TOKEN.", token_store=store)


def test_clients_one_after_another_present_the_stored_token(tmp_path):
    endpoint = _RotatingEndpoint(SEED)
    store = _store(tmp_path, KEY)
    for _ in range(3):  # three "processes": nothing in memory carries over
        with httpx.Client(transport=httpx.MockTransport(endpoint), auth=_auth(store)) as client:
            assert client.get("https://vendor.invalid/things").status_code == 200
    assert endpoint.presented == [SEED, "FAKE-rt-1-zzzzzzzz", "FAKE-rt-2-zzzzzzzz"]
    assert store.load(SEED).refresh_token == "FAKE-rt-3-zzzzzzzz"


def test_without_a_store_the_next_client_presents_the_consumed_token(tmp_path):
    """The bug of issue 15, kept as the reason for the store."""
    endpoint = _RotatingEndpoint(SEED)
    with httpx.Client(transport=httpx.MockTransport(endpoint), auth=_auth(None)) as client:
        client.get("https://vendor.invalid/things")
    with httpx.Client(transport=httpx.MockTransport(endpoint), auth=_auth(None)) as client, \
            pytest.raises(AuthError, match="invalid_grant"):
        client.get("https://vendor.invalid/things")


def test_threads_refreshing_at_once_present_each_token_once(tmp_path):
    endpoint = _RotatingEndpoint(SEED)
    store = _store(tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def one_process() -> None:
        try:
            with httpx.Client(transport=httpx.MockTransport(endpoint), auth=_auth(store)) as client:
                barrier.wait()
                assert client.get("https://vendor.invalid/things").status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_process) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(endpoint.presented) == 6 and len(set(endpoint.presented)) == 6, "no token was presented twice"
    assert store.load(SEED).refresh_token == "FAKE-rt-6-zzzzzzzz"


def test_a_refused_stored_token_says_what_to_do_without_secrets(tmp_path):
    endpoint = _RotatingEndpoint(SEED)
    store = _store(tmp_path)
    store.save(SEED, "FAKE-revoked-descendant-jjjjjjjjjjjj")
    with httpx.Client(transport=httpx.MockTransport(endpoint), auth=_auth(store)) as client, \
            pytest.raises(AuthError) as refused:
        client.get("https://vendor.invalid/things")
    message = str(refused.value)
    assert "invalid_grant" in message and str(store.path) in message and "VENDOR_REFRESH_TOKEN" in message
    assert "FAKE-revoked-descendant" not in redact(message) and SEED not in message
    assert endpoint.presented == ["FAKE-revoked-descendant-jjjjjjjjjjjj"], "the consumed seed is not tried"
