"""Find every system spec: any module in `connectors/` that defines a module-level `SYSTEM`, plus the custom
systems declared in YAML (`custom_systems/*.yaml` and the folder named by `IP_CUSTOM_SYSTEMS_DIR`).

Adding a system is adding a file; nothing else needs to list it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from functools import cache

from . import __path__ as _package_path
from .custom import CUSTOM_DIR_ENV, load_custom_systems
from .errors import ConfigurationError
from .spec import System


@cache
def _python_systems() -> tuple[System, ...]:
    found: list[System] = []
    for info in pkgutil.iter_modules(_package_path):
        module = importlib.import_module(f"{__package__}.{info.name}")
        system = getattr(module, "SYSTEM", None)
        if isinstance(system, System):
            found.append(system)
    return tuple(found)


@cache
def _discover(custom_dir: str | None) -> tuple[System, ...]:
    python = _python_systems()
    names = {s.name for s in python}
    custom = load_custom_systems(custom_dir or "")
    for system in custom:
        if system.name in names:
            raise ConfigurationError(
                f"custom system {system.source_file} is named {system.name!r}, like a built-in connector; "
                "rename it."
            )
    return tuple(sorted((*python, *custom), key=lambda s: s.name))


def discover_systems() -> tuple[System, ...]:
    """Built-in and custom systems, cached per value of `IP_CUSTOM_SYSTEMS_DIR`."""
    return _discover(os.environ.get(CUSTOM_DIR_ENV) or None)


discover_systems.cache_clear = _discover.cache_clear  # type: ignore[attr-defined]


def get_system(name: str) -> System:
    for system in discover_systems():
        if system.name == name:
            return system
    raise KeyError(f"no system named {name!r}; known: {[s.name for s in discover_systems()]}")
