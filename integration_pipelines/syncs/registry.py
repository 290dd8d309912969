"""Find every sync: any module in `syncs/catalog/` that defines a module-level `SYNC` (or `SYNCS`)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from . import catalog
from .spec import SyncSpec


@cache
def discover_syncs() -> tuple[SyncSpec, ...]:
    found: list[SyncSpec] = []
    for info in pkgutil.iter_modules(catalog.__path__):
        module = importlib.import_module(f"{catalog.__name__}.{info.name}")
        found.extend(s for s in [getattr(module, "SYNC", None), *getattr(module, "SYNCS", ())]
                     if isinstance(s, SyncSpec))
    names = [s.name for s in found]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"sync names must be unique; repeated: {sorted(duplicated)}")
    unknown = {d for s in found for d in s.depends_on} - set(names)
    if unknown:
        raise ValueError(f"syncs depend on unknown syncs {sorted(unknown)}")
    return tuple(sorted(found, key=lambda s: s.name))


def get_sync(name: str) -> SyncSpec:
    for spec in discover_syncs():
        if spec.name == name:
            return spec
    raise KeyError(f"no sync named {name!r}; known: {[s.name for s in discover_syncs()]}")
