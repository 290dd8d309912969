"""Assemble every emulator into one Starlette app (vendor paths are disjoint, so one port serves all),
plus the `/_sandbox` control API tests and the demo use to inject faults, read the request log, and
inspect or change the world."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import __path__ as _package_path
from .base import Emulator, SandboxState
from .faults import FaultConfig, FaultInjector
from .world import build_world


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

    def __init__(self, seed: int = 7, scale: float = 1.0, anchor: datetime | None = None, days: int = 30) -> None:
        self.options = {"seed": seed, "scale": scale, "anchor": anchor, "days": days}
        self.state = SandboxState(world=build_world(seed, scale, anchor, days))
        self._build_emulators()
        routes = [
            Route("/_sandbox/health", self._health),
            Route("/_sandbox/systems", self._systems),
            Route("/_sandbox/faults/{system}", self._faults, methods=["PUT", "DELETE"]),
            Route("/_sandbox/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_sandbox/requests", self._requests, methods=["GET", "DELETE"]),
            Route("/_sandbox/reset", self._reset, methods=["POST"]),
            Route("/_sandbox/world/anomalies", self._anomalies),
            Route("/_sandbox/{system}/{stream}", self._dump),
            Route("/_sandbox/{system}/{stream}/touch", self._touch, methods=["POST"]),
            Route("/_sandbox/{system}/{stream}/simulate", self._simulate, methods=["POST"]),
        ]
        for emulator in self.state.emulators.values():
            routes.extend(emulator.routes())
        self.starlette = Starlette(routes=routes)
        self.faults = FaultInjector(self._dispatch, self.state)

    def _build_emulators(self) -> None:
        self.state.emulators = {cls.name: cls(self.state.world, self.state) for cls in discover_emulators()}

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

    def reset(self) -> None:
        """A brand-new world from the same options: every write since start is forgotten."""
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
        self.reset()
        return JSONResponse({"reset": True})

    async def _anomalies(self, request: Request) -> JSONResponse:
        return JSONResponse(self.state.world.anomalies)

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
