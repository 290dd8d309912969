"""What the OAuth emulators (Xero, QuickBooks) share: a clock a test can move, self-describing refresh tokens,
and the `/_sandbox/<system>/clock` and `/_sandbox/<system>/connect` controls.

- The clock: `now()` is the wall clock plus `clock_offset_seconds`; `advance_clock(seconds)` and
  `set_clock(unix_seconds)` move it (as the Stripe emulator's do), so "a day later" takes no real time: access
  tokens expire and refresh tokens age by this clock.
- `connect()` is the user connecting the app in the vendor's consent screen: it opens a new *grant* and returns
  its first refresh token, which then follows the vendor's rotation rules strictly (nothing standing about it).
  The spec's fake sandbox refresh token is a standing grant instead, so any number of sandbox-mode processes can
  start from the same environment.
- Refresh tokens of the standing grant carry a signature (`<prefix><grant>.<nonce>.<sig>`): a restarted or
  reset sandbox, which has forgotten every token it issued, still honours one it issued for the standing grant
  in an earlier life (a demo's stored token survives a sandbox restart, as a real grant outlives a deploy of the
  vendor). Tokens of connected grants are only known while the sandbox lives.
- HTTP controls (POST only: a GET under `/_sandbox/<system>/<name>` is the sandbox's dump route):
  `POST /_sandbox/<system>/clock` with `{"advance_seconds": n}` or `{"unix_seconds": t}` → `{"now": t}`;
  `POST /_sandbox/<system>/connect` with optional `{"client_id", "client_secret"}` (registers that app) →
  `{"refresh_token": …}`. The routes resolve the emulator serving now, so they survive `/_sandbox/reset`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .base import Emulator

_SIGNING_KEY = b"FAKE-sandbox-oauth-grant-signing-key"  # fake: signs sandbox tokens only
STANDING_GRANT = "g0"


class OAuthEmulator(Emulator):
    """An emulator with an OAuth token endpoint: the movable clock and the connect/clock controls."""

    refresh_prefix = "FAKE-refresh-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Seconds added to the wall clock (see the module docstring).
        self.clock_offset_seconds: float = 0.0
        #: client id → client secret of every app allowed at the token endpoint
        self.clients: dict[str, str] = {}
        self._grants = 0

    # -- clock -----------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset_seconds

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward ("six hours later"); returns the new `now()`."""
        with self.sandbox.lock:
            self.clock_offset_seconds += seconds
        return self.now()

    def set_clock(self, unix_seconds: float) -> None:
        """Put the emulator's clock at a moment; it runs on from there with the wall clock."""
        with self.sandbox.lock:
            self.clock_offset_seconds = unix_seconds - time.time()

    # -- tokens ----------------------------------------------------------------------------------
    def new_grant(self) -> str:
        self._grants += 1
        return f"g{self._grants}-{secrets.token_hex(4)}"

    def mint_refresh_token(self, grant: str) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{self.refresh_prefix}{grant}.{nonce}.{self._signature(grant, nonce)}"

    def _signature(self, grant: str, nonce: str) -> str:
        return hmac.new(_SIGNING_KEY, f"{self.name}.{grant}.{nonce}".encode(), hashlib.sha256).hexdigest()[:20]

    def standing_grant_token(self, token: str) -> bool:
        """A refresh token this emulator minted for the standing grant, perhaps in an earlier life."""
        if not token.startswith(self.refresh_prefix):
            return False
        grant, _, rest = token[len(self.refresh_prefix):].partition(".")
        nonce, _, signature = rest.partition(".")
        return grant == STANDING_GRANT and hmac.compare_digest(signature, self._signature(grant, nonce))

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        expected = self.clients.get(client_id)
        return expected is not None and hmac.compare_digest(client_secret.encode(), expected.encode())

    def connect(self, client_id: str | None = None, client_secret: str | None = None) -> str:
        """The user connects the app (consent screen): a new grant; returns its first refresh token."""
        raise NotImplementedError

    # -- HTTP controls ---------------------------------------------------------------------------
    def control_routes(self) -> list[Route]:
        """`/_sandbox/<system>/clock` and `/connect`, added once per sandbox: the app keeps every `/_sandbox`
        route across a reset, and these resolve the emulator serving now."""
        marker = f"_oauth_controls_{self.name}"
        if getattr(self.sandbox, marker, False):
            return []
        setattr(self.sandbox, marker, True)
        state, name = self.sandbox, self.name

        def current() -> OAuthEmulator:
            return state.emulators[name]  # type: ignore[return-value]

        async def clock(request: Request) -> JSONResponse:
            body = await _json_body(request)
            emulator = current()
            if "unix_seconds" in body:
                emulator.set_clock(float(body["unix_seconds"]))
            elif "advance_seconds" in body:
                emulator.advance_clock(float(body["advance_seconds"]))
            else:
                return JSONResponse({"error": "give advance_seconds or unix_seconds"}, status_code=400)
            return JSONResponse({"now": emulator.now(), "offset_seconds": emulator.clock_offset_seconds})

        async def connect(request: Request) -> JSONResponse:
            body = await _json_body(request)
            token = current().connect(body.get("client_id"), body.get("client_secret"))
            return JSONResponse({"refresh_token": token})

        return [Route(f"/_sandbox/{name}/clock", clock, methods=["POST"]),
                Route(f"/_sandbox/{name}/connect", connect, methods=["POST"])]


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}
