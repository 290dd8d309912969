"""Authentication strategies as `httpx.Auth` flows.

OAuth2 flows send their token request through the same client (so the token endpoint gets the same
timeouts, logging and transport as the API), cache the token, refresh it shortly before it expires, and
refresh once more when the API answers 401 to a token we believed valid. Rotated refresh tokens are kept in a
durable `TokenStore` (connectors/token_store.py), so the next process presents the newest one.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from .errors import AuthError, TransientError
from .redaction import redact, register_secret
from .token_store import TokenStore

_REFRESH_MARGIN_SECONDS = 60.0


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        register_secret(token)
        self._value = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request


class HeaderAuth(httpx.Auth):
    """An API key in a named header (`X-Shopify-Access-Token`, `X-API-Key` ...)."""

    def __init__(self, header: str, value: str, prefix: str = "") -> None:
        register_secret(value)
        self._header = header
        self._value = f"{prefix}{value}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._value
        yield request


class BasicAuth(httpx.Auth):
    def __init__(self, username: str, password: str) -> None:
        register_secret(password)
        raw = f"{username}:{password}".encode()
        register_secret(base64.b64encode(raw).decode())
        self._value = "Basic " + base64.b64encode(raw).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request


@dataclass
class _Token:
    access_token: str
    expires_at: float


_AUTO = "auto"


def _store_for_title(title: str) -> TokenStore | None:
    """The token store of the registered system with this title, when its OAuth uses refresh tokens.

    `runtime.build_auth` names systems by title; looking the spec up here keeps the store's file named after the
    system (`xero.json`), and leaves ad-hoc clients (tests, tools) without a store unless they pass one."""
    from .registry import discover_systems  # the registry imports every spec: only when a client is built
    from .spec import OAuth2AuthSpec

    for system in discover_systems():
        auth = system.auth
        if system.title == title and isinstance(auth, OAuth2AuthSpec) and auth.grant_type == "refresh_token":
            return TokenStore.for_system(system.name)
    return None


class OAuth2Auth(httpx.Auth):
    """OAuth2 bearer tokens from a token endpoint: refresh-token or client-credentials grant.

    `on_token` lets a spec read extra fields of the token response (Salesforce's `instance_url`).

    A refresh token that the vendor rotates (Xero, QuickBooks) is written to `token_store` the moment it is
    issued, and the store is read before the environment's value on every refresh, under the store's lock: so
    the next process, or a process that waited while another one refreshed, presents the newest token and never
    a consumed one (see `token_store`). By default the store is the registered system's (by title) for a
    refresh-token grant; pass `token_store=None` to keep rotated tokens in memory only.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        system: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        grant_type: str,
        refresh_token: str | None = None,
        scope: str | None = None,
        credential_hint: str = "",
        client_auth: str = "basic",
        extra_params: dict[str, str] | None = None,
        instance_url_field: str | None = None,
        on_token: Callable[[dict], None] | None = None,
        clock: Callable[[], float] = time.time,
        token_store: TokenStore | str | None = _AUTO,
    ) -> None:
        for secret in (client_secret, refresh_token):
            register_secret(secret)
        self.system = system
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.grant_type = grant_type
        self.refresh_token = refresh_token
        #: The environment's refresh token: the root of every token the store keeps for it.
        self.seed_refresh_token = refresh_token
        self.scope = scope
        self.credential_hint = credential_hint
        self.client_auth = client_auth
        self.extra_params = extra_params or {}
        self.instance_url_field = instance_url_field
        self.instance_url: httpx.URL | None = None
        #: the scopes the last token was granted, when the token endpoint says (`scope`, RFC 6749 §5.1); None if not
        self.granted_scopes: tuple[str, ...] | None = None
        self.on_token = on_token
        self._clock = clock
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self.token_requests = 0
        if token_store == _AUTO:
            token_store = _store_for_title(system) if grant_type == "refresh_token" and refresh_token else None
        self.token_store: TokenStore | None = token_store if isinstance(token_store, TokenStore) else None

    def _valid_token(self) -> str | None:
        with self._lock:
            if self._token and self._token.expires_at - _REFRESH_MARGIN_SECONDS > self._clock():
                return self._token.access_token
        return None

    def _token_request(self, refresh_token: str | None = None) -> httpx.Request:
        form = {"grant_type": self.grant_type, **self.extra_params}
        if self.grant_type == "refresh_token":
            form["refresh_token"] = refresh_token or self.refresh_token or ""
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            raw = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def _accept_token_response(self, response: httpx.Response, *, from_store: str = "") -> str:
        self.token_requests += 1
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(
                self.system, f"{self.system} token endpoint answered {response.status_code}; will retry"
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            reason = " ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
            reason = redact(reason or response.text)[:200]  # redact first: an excerpt could halve a secret
            raise AuthError(
                self.system,
                f"{self.system} refused to issue an access token ({response.status_code}: {reason}). "
                f"{from_store}{self.credential_hint}",
            )
        token = str(body["access_token"])
        register_secret(token)
        if body.get("refresh_token"):
            register_secret(str(body["refresh_token"]))
            self.refresh_token = str(body["refresh_token"])
        expires_in = float(body.get("expires_in") or 3600)
        with self._lock:
            self._token = _Token(token, self._clock() + expires_in)
        scope = body.get("scope")
        if isinstance(scope, str | list):
            self.granted_scopes = tuple(scope.split() if isinstance(scope, str) else (str(s) for s in scope))
        if self.instance_url_field and body.get(self.instance_url_field):
            self.instance_url = httpx.URL(str(body[self.instance_url_field]))
        if self.on_token:
            self.on_token(body)
        return token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _refresh(self, rejected: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """A new access token; `rejected` is the one the API just refused (never to be reused)."""
        store = self.token_store
        if store is None or self.seed_refresh_token is None:
            return self._accept_token_response((yield self._token_request()))
        with store.locked():
            token = self._valid_token()
            if token is not None and token != rejected:
                return token  # another thread of this process refreshed while we waited for the lock
            stored = store.load(self.seed_refresh_token)
            presented = stored.refresh_token if stored else (self.refresh_token or self.seed_refresh_token)
            note = (f"The refresh token saved in {store.path} (the newest descendant of the environment's) was "
                    "refused: reconnect the app and put the new refresh token in the environment; a new value "
                    "there replaces the saved one. ") if stored else ""
            token = self._accept_token_response((yield self._token_request(presented)), from_store=note)
            if self.refresh_token and self.refresh_token != presented:
                store.save(self.seed_refresh_token, self.refresh_token)  # rotated: durable before it is used
            return token

    def _to_instance(self, request: httpx.Request) -> None:
        """Send the request to the tenant's own host when the token told us one (Salesforce)."""
        if self.instance_url is not None:
            url = self.instance_url
            request.url = request.url.copy_with(scheme=url.scheme, host=url.host, port=url.port)
            request.headers["Host"] = url.netloc.decode()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's own wrapper, plus closing the inner flow when httpx abandons it (a token request whose answer
        was lost raises inside the client, which closes only this outer generator): the inner one may hold the
        token store's lock across its token request, and must release it now, not when the garbage collector
        gets to it; until then every refresh in this process waits on the lock."""
        flow = self.auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = yield request
                response.read()  # requires_response_body
                try:
                    request = flow.send(response)
                except StopIteration:
                    break
        finally:
            flow.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token()
        if token is None:
            token = yield from self._refresh(rejected=None)
        self._to_instance(request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # The token may have been revoked or expired early: refresh once, then let the API decide.
            self.invalidate()
            token = yield from self._refresh(rejected=token)
            self._to_instance(request)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
