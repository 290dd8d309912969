"""Assemble every emulator into one Starlette app (vendor paths are disjoint, so one port serves all),
plus the `/_sandbox` control API tests and the demo use to inject faults, read the request log, and
inspect or change the world.

`Sandbox(world="messy")` is the messy world: once the app is served (`SandboxServer.start`, `serve_forever`),
`plant_messy(url)` plants the "before" anomalies of `sandbox/messy.py` through the vendors' own APIs, and every
planted situation is recorded under `"planted"` in `GET /_sandbox/world/anomalies` (docs/messy-world.md)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __path__ as _package_path
from .base import Emulator, SandboxState
from .faults import FaultConfig, FaultInjector
from .world import build_world

WORLDS = ("tidy", "messy")
log = logging.getLogger(__name__)


def discover_emulators() -> list[type[Emulator]]:
    found: list[type[Emulator]] = []
    for info in pkgutil.iter_modules(_package_path):
        module = importlib.import_module(f"{__package__}.{info.name}")
        emulator = getattr(module, "EMULATOR", None)
        if isinstance(emulator, type) and issubclass(emulator, Emulator):
            found.append(emulator)
    return sorted(found, key=lambda e: e.name)


class Sandbox:
    """The sandbox as an object: its state, its fault injector, and the ASGI app serving both."""

    def __init__(self, seed: int = 7, scale: float = 1.0, anchor: datetime | None = None, days: int = 30,
                 world: str = "tidy") -> None:
        if world not in WORLDS:
            raise ValueError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
        self.options = {"seed": seed, "scale": scale, "anchor": anchor, "days": days}
        self.world_kind = world
        #: Where the app is served, once it is (set by `plant_messy`): the messy world is planted over HTTP,
        #: so a reset can only plant it again when the URL is known.
        self.url: str | None = None
        self.strict = True
        self.state = SandboxState(world=build_world(seed, scale, anchor, days))
        self._build_emulators()
        routes = [
            Route("/_sandbox/health", self._health),
            Route("/_sandbox/systems", self._systems),
            Route("/_sandbox/faults/{system}", self._faults, methods=["PUT", "DELETE"]),
            Route("/_sandbox/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_sandbox/requests", self._requests, methods=["GET", "DELETE"]),
            Route("/_sandbox/reset", self._reset, methods=["POST"]),
            Route("/_sandbox/world/anomalies", self._anomalies, methods=["GET", "POST"]),
            Route("/_sandbox/{system}/{stream}", self._dump),
            Route("/_sandbox/{system}/{stream}/touch", self._touch, methods=["POST"]),
            Route("/_sandbox/{system}/{stream}/simulate", self._simulate, methods=["POST"]),
        ]
        for emulator in self.state.emulators.values():
            routes.extend(emulator.routes())
        self.starlette = Starlette(routes=routes, exception_handlers={HTTPException: self._route_error})
        self.faults = FaultInjector(self._dispatch, self.state)

    def _build_emulators(self) -> None:
        self.state.emulators = {cls.name: cls(self.state.world, self.state) for cls in discover_emulators()}

    def system_for(self, path: str) -> Emulator | None:
        """The emulator whose prefix is the longest one `path` starts with (QuickBooks' `/v2/oauth2/tokens/`
        inside Square's `/v2/`, NetSuite's `/services/NetSuitePort` inside Salesforce's `/services/`)."""
        best, length = None, -1
        for emulator in self.state.emulators.values():
            for prefix in emulator.prefixes:
                if path.startswith(prefix) and len(prefix) > length:
                    best, length = emulator, len(prefix)
        return best

    async def _route_error(self, request: Request, exc: Exception) -> Response:
        """No route serves the request (404) or not with this method (405): the vendor's own error body, rendered
        by the emulator that owns the path, instead of Starlette's plain text (which no vendor SDK can parse)."""
        assert isinstance(exc, HTTPException)
        emulator = self.system_for(request.url.path)
        if emulator is None or exc.status_code not in (404, 405):
            return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
        allowed = frozenset(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip())
        return emulator.route_error(request, exc.status_code, allowed)

    async def _dispatch(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await self.starlette(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await self.faults(scope, receive, send)

    # -- python API (tests in the same process use these directly) ---------------------------------
    def emulator(self, name: str) -> Emulator:
        return self.state.emulators[name]

    def set_faults(self, system: str, **config: object) -> None:
        self.faults.configure(system, FaultConfig(**config))  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        self.faults.clear()

    def plant_messy(self, url: str, *, strict: bool | None = None) -> list[dict[str, Any]]:
        """Plant the messy world's "before" anomalies through the served APIs at `url` (a no-op for the tidy
        world). Must run outside the server's event loop: it is an HTTP client of the server. `strict` (default:
        as given the first time, else True) makes a kind with nothing to plant on an error instead of a skip."""
        self.url = url
        if strict is not None:
            self.strict = strict
        if self.world_kind != "messy":
            return []
        from .messy import MessyWorld  # the planter is an HTTP client; import it only when it is needed

        with MessyWorld(url, seed=int(self.options["seed"])) as messy:  # type: ignore[call-overload]
            planted = messy.plant_before(strict=self.strict)
        log.info("messy world: planted %d anomalies at %s", len(planted), url)
        return planted

    def reset(self) -> None:
        """A brand-new world from the same options: every write since start is forgotten. A messy world that is
        being served is planted again, so a reset messy world is the same messy world."""
        self._rebuild()
        if self.world_kind == "messy" and self.url:
            self.plant_messy(self.url)

    def _rebuild(self) -> None:
        with self.state.lock:
            self.state.world = build_world(**self.options)  # type: ignore[arg-type]
            self.state.idempotency.clear()
            self.state.requests.clear()
            self._build_emulators()
            self.faults.clear()
        # routes are bound to the old emulator objects; rebuild the router around the new ones
        routes = [r for r in self.starlette.routes if getattr(r, "path", "").startswith("/_sandbox")]
        for emulator in self.state.emulators.values():
            routes.extend(emulator.routes())
        self.starlette.router.routes = routes

    # -- control endpoints ---------------------------------------------------------------------
    async def _health(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "systems": sorted(self.state.emulators)})

    async def _systems(self, request: Request) -> JSONResponse:
        return JSONResponse({name: {"prefixes": e.prefixes, "streams": e.streams}
                             for name, e in self.state.emulators.items()})

    async def _faults(self, request: Request) -> JSONResponse:
        system = request.path_params["system"]
        if request.method == "DELETE":
            self.faults.configure(system, None)
            return JSONResponse({"system": system, "faults": None})
        config = FaultConfig.model_validate(await request.json())
        self.faults.configure(system, config)
        return JSONResponse({"system": system, "faults": config.model_dump()})

    async def _clear_faults(self, request: Request) -> JSONResponse:
        self.faults.clear()
        return JSONResponse({"faults": None})

    async def _requests(self, request: Request) -> JSONResponse:
        if request.method == "DELETE":
            self.state.clear_requests()
            return JSONResponse({"cleared": True})
        return JSONResponse(self.state.request_log(request.query_params.get("system")))

    async def _reset(self, request: Request) -> JSONResponse:
        # planting is HTTP against this very server: run it off the event loop so the loop can answer it
        await run_in_threadpool(self.reset)
        return JSONResponse({"reset": True})

    async def _anomalies(self, request: Request) -> JSONResponse:
        """GET: the seeded world's anomalies (name → value) plus `"planted"`, every anomaly planted through the
        APIs since start. POST: append one planted anomaly (a JSON object with a string `kind`), answered 201
        with the stored record, which gains `seq` (its 1-based position in the list)."""
        world = self.state.world
        if request.method == "POST":
            try:
                record = await request.json()
            except ValueError:
                return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
            if not isinstance(record, dict) or not isinstance(record.get("kind"), str) or not record["kind"]:
                return JSONResponse({"error": "an anomaly is a JSON object with a non-empty string `kind`"},
                                    status_code=400)
            with self.state.lock:
                stored = {**record, "seq": len(world.planted) + 1}
                world.planted.append(stored)
            return JSONResponse(stored, status_code=201)
        with self.state.lock:
            return JSONResponse({**world.anomalies, "planted": list(world.planted)})

    def _emulator_or_404(self, request: Request) -> Emulator | JSONResponse:
        emulator = self.state.emulators.get(request.path_params["system"])
        if emulator is None or request.path_params["stream"] not in emulator.streams:
            return JSONResponse({"error": "unknown system or stream"}, status_code=404)
        return emulator

    async def _dump(self, request: Request) -> JSONResponse:
        emulator = self._emulator_or_404(request)
        if isinstance(emulator, JSONResponse):
            return emulator
        return JSONResponse(emulator.dump(request.path_params["stream"]))

    async def _simulate(self, request: Request) -> JSONResponse:
        emulator = self._emulator_or_404(request)
        if isinstance(emulator, JSONResponse):
            return emulator
        try:
            created = emulator.simulate(request.path_params["stream"], await request.json())
        except NotImplementedError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"bad simulate request: {exc}"}, status_code=400)
        return JSONResponse(created)

    async def _touch(self, request: Request) -> JSONResponse:
        emulator = self._emulator_or_404(request)
        if isinstance(emulator, JSONResponse):
            return emulator
        count = int(request.query_params.get("count", "1"))
        return JSONResponse({"touched": emulator.touch(request.path_params["stream"], count)})
