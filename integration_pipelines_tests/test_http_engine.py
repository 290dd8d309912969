"""The HTTP engine on a fake clock: backoff grows with full jitter, Retry-After is honoured, other 4xx are not
retried, OAuth2 tokens are cached and refreshed, and secrets never reach logs or exception text."""

from __future__ import annotations

import json
import logging
import random

import httpx
import pytest

from integration_pipelines.connectors.auth import OAuth2Auth
from integration_pipelines.connectors.errors import ApiError, AuthError, RetriesExhaustedError
from integration_pipelines.connectors.http import HttpClient, RetryPolicy, parse_retry_after
from integration_pipelines.connectors.ratelimit import TokenBucket
from integration_pipelines.connectors.redaction import redact_url, register_secret

SECRET = "sk_test_FAKE_engine_secret_4242"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*answers: object) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering from a script: an int status, a (status, headers) pair, or an exception."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if queue else 200
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        body = {"ok": True} if status < 400 else {"error": {"message": f"status {status} from the fake"}}
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handler), seen


def client(transport: httpx.MockTransport, clock: FakeClock, **kwargs: object) -> HttpClient:
    register_secret(SECRET)
    return HttpClient(system="Fake", base_url="https://api.fake.test", transport=transport, sleep=clock.sleep,
                      rng=random.Random(1), headers={"Authorization": f"Bearer {SECRET}"},
                      credential_hint="Check FAKE_API_KEY.", **kwargs)  # type: ignore[arg-type]


def test_backoff_grows_within_full_jitter_bounds():
    clock = FakeClock()
    transport, seen = scripted(503, 503, 503, 503, 200)
    policy = RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_cap=30.0)
    assert client(transport, clock, retry=policy).request("GET", "/things").status_code == 200
    assert len(seen) == 5 and len(clock.sleeps) == 4
    for n, slept in enumerate(clock.sleeps, start=1):
        assert 0 <= slept <= min(30.0, 2 ** (n - 1))
    # the ceiling doubles: over many draws the mean of the n-th wait grows
    rng = random.Random(7)
    means = [sum(policy.backoff(n, rng) for _ in range(2000)) / 2000 for n in (1, 2, 3, 4)]
    assert means == sorted(means) and means[3] > 3 * means[0]


def test_retry_after_is_honoured_in_seconds_and_http_date():
    clock = FakeClock()
    transport, _ = scripted((429, {"Retry-After": "7"}), 200)
    client(transport, clock, retry=RetryPolicy(backoff_base=0.01)).request("GET", "/x")
    assert clock.sleeps and clock.sleeps[0] >= 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("garbage") is None


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried_and_carry_the_vendor_message(status):
    clock = FakeClock()
    transport, seen = scripted(status)
    with pytest.raises(ApiError) as info:
        client(transport, clock).request("GET", "/x")
    assert len(seen) == 1 and not clock.sleeps
    assert f"status {status} from the fake" in str(info.value)


def test_auth_errors_name_the_variable_and_hide_the_secret():
    clock = FakeClock()
    transport, seen = scripted(401)
    with pytest.raises(AuthError) as info:
        client(transport, clock).request("GET", f"/x?api_key={SECRET}")
    assert len(seen) == 1
    assert "FAKE_API_KEY" in str(info.value) and SECRET not in str(info.value)


def test_timeouts_and_dropped_connections_are_retried_then_give_up_clearly(caplog):
    clock = FakeClock()
    request = httpx.Request("GET", "https://api.fake.test/x")
    transport, seen = scripted(httpx.ReadTimeout("slow", request=request),
                               httpx.RemoteProtocolError("peer closed connection", request=request),
                               503, 503)
    caplog.set_level(logging.INFO, logger="integration_pipelines.http")
    with pytest.raises(RetriesExhaustedError) as info:
        client(transport, clock, retry=RetryPolicy(max_attempts=4)).request("GET", "/x", params={"token": SECRET})
    assert len(seen) == 4
    message = str(info.value)
    assert "4 attempts" in message and "FAKE_MAX_RETRIES" in message and SECRET not in message
    assert "ReadTimeout" in caplog.text and "attempt=4" in caplog.text
    assert (SECRET not in caplog.text and "token=%2A%2A%2A" in caplog.text) or "token=***" in caplog.text


def test_rate_limiter_paces_requests():
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=2, clock=clock.time, sleep=clock.sleep)
    for _ in range(6):
        bucket.acquire()
    # two free in the burst, then one every half second
    assert sum(clock.sleeps) == pytest.approx(2.0)


def test_oauth2_token_is_cached_refreshed_before_expiry_and_once_on_401():
    clock = FakeClock()
    issued: list[str] = []
    api_calls: list[str] = []
    revoke_next = {"flag": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            form = dict(x.split("=") for x in request.content.decode().split("&"))
            assert form["grant_type"] == "refresh_token" and form["refresh_token"].startswith("rt-FAKE")
            token = f"at-{len(issued)}"
            issued.append(token)
            return httpx.Response(200, json={"access_token": token, "expires_in": 3600,
                                             "refresh_token": f"rt-FAKE-{len(issued)}"})
        auth = request.headers["Authorization"]
        api_calls.append(auth)
        if revoke_next["flag"]:
            revoke_next["flag"] = False
            return httpx.Response(401, json={"error": {"message": "token revoked"}})
        return httpx.Response(200, json={"ok": True})

    auth = OAuth2Auth(system="Fake", token_url="https://auth.fake.test/token", client_id="cid",
                      client_secret="FAKE-client-secret", grant_type="refresh_token", refresh_token="rt-FAKE-0",
                      clock=clock.time, credential_hint="Reset FAKE_REFRESH_TOKEN.")
    http = HttpClient(system="Fake", base_url="https://api.fake.test", auth=auth,
                      transport=httpx.MockTransport(handler), sleep=clock.sleep)
    http.request("GET", "/a")
    http.request("GET", "/b")
    assert issued == ["at-0"]  # cached
    clock.now += 3600 - 30  # inside the refresh margin
    http.request("GET", "/c")
    assert issued == ["at-0", "at-1"] and auth.refresh_token == "rt-FAKE-2"
    revoke_next["flag"] = True
    http.request("GET", "/d")  # 401 → one refresh → retried with the new token
    assert issued[-1] == "at-2" and api_calls[-1] == "Bearer at-2"


def test_oauth2_refused_refresh_names_the_variable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Token revoked"})

    auth = OAuth2Auth(system="Fake", token_url="https://auth.fake.test/token", client_id="cid",
                      client_secret="FAKE-secret-xyz", grant_type="refresh_token", refresh_token="rt-FAKE-revoked",
                      credential_hint="Reset FAKE_REFRESH_TOKEN.")
    http = HttpClient(system="Fake", base_url="https://api.fake.test", auth=auth,
                      transport=httpx.MockTransport(handler))
    with pytest.raises(AuthError) as info:
        http.request("GET", "/a")
    assert "FAKE_REFRESH_TOKEN" in str(info.value) and "invalid_grant" in str(info.value)
    assert "rt-FAKE-revoked" not in str(info.value) and "FAKE-secret-xyz" not in str(info.value)


def test_redact_url_hides_userinfo_and_sensitive_params():
    shown = redact_url("https://user:pw@api.fake.test/x?access_token=abc123&limit=5&client_secret=s3")
    assert "pw" not in shown and "abc123" not in shown and "s3" not in shown and "limit=5" in shown
    assert json.dumps(shown)
