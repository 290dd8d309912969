"""Find every sync: any module in `syncs/catalog/` that defines a module-level `SYNC` (or `SYNCS`).

Checked at load, so a mistake fails on start-up with the file to fix rather than in the middle of a run: names are
unique, dependencies exist, and every sync's target system exists and has the writers the sync names (REST
`Writer`s and SOAP writers alike, `connectors/writer.find_writer`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache

from ..connectors.registry import discover_systems
from ..connectors.writer import writer_names
from . import catalog
from .spec import SyncSpec


@cache
def discover_syncs() -> tuple[SyncSpec, ...]:
    found: list[tuple[SyncSpec, str]] = []
    for info in pkgutil.iter_modules(catalog.__path__):
        module = importlib.import_module(f"{catalog.__name__}.{info.name}")
        source = f"integration_pipelines/syncs/catalog/{info.name}.py"
        found.extend((s, source) for s in [getattr(module, "SYNC", None), *getattr(module, "SYNCS", ())]
                     if isinstance(s, SyncSpec))
    return check_syncs(found)


def check_syncs(found: Iterable[tuple[SyncSpec, str]]) -> tuple[SyncSpec, ...]:
    """The syncs (each with the file that declares it), sorted by name, once they pass the load-time checks;
    otherwise a ValueError naming the file, the sync and what is wrong."""
    found = list(found)
    names = [s.name for s, _ in found]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"sync names must be unique; repeated: {sorted(duplicated)}")
    unknown = {d for s, _ in found for d in s.depends_on} - set(names)
    if unknown:
        raise ValueError(f"syncs depend on unknown syncs {sorted(unknown)}")
    systems = {s.name: s for s in discover_systems()}
    problems = []
    for spec, source in found:
        system = systems.get(spec.target)
        if system is None:
            problems.append(f"{source}: sync {spec.name} targets {spec.target!r}, which is not a system; "
                            f"known systems: {sorted(systems)}")
            continue
        known = writer_names(system)
        for field in ("create_writer", "update_writer", "delete_writer"):
            name = getattr(spec, field)
            if name is not None and name not in known:
                problems.append(f"{source}: sync {spec.name} names {field}={name!r}, which {spec.target} does not "
                                f"have; its writers (REST and SOAP): {known}")
    if problems:
        raise ValueError("syncs that cannot run:\n" + "\n".join(problems))
    return tuple(sorted((s for s, _ in found), key=lambda s: s.name))


def get_sync(name: str) -> SyncSpec:
    for spec in discover_syncs():
        if spec.name == name:
            return spec
    raise KeyError(f"no sync named {name!r}; known: {[s.name for s in discover_syncs()]}")
