"""Find every system spec: any module in `connectors/` that defines a module-level `SYSTEM`.

Adding a system is adding a file; nothing else needs to list it.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from . import __path__ as _package_path
from .spec import System


@cache
def discover_systems() -> tuple[System, ...]:
    found: list[System] = []
    for info in pkgutil.iter_modules(_package_path):
        module = importlib.import_module(f"{__package__}.{info.name}")
        system = getattr(module, "SYSTEM", None)
        if isinstance(system, System):
            found.append(system)
    return tuple(sorted(found, key=lambda s: s.name))


def get_system(name: str) -> System:
    for system in discover_systems():
        if system.name == name:
            return system
    raise KeyError(f"no system named {name!r}; known: {[s.name for s in discover_systems()]}")
