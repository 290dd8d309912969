"""Known errors as one readable paragraph for the command line (the CLI prints it and exits 2; `--debug` shows the
traceback instead). Every network error names the variable its URL comes from."""

from __future__ import annotations

import httpx

from ..connectors.errors import AuthError, ConfigurationError, ConnectorError, UnreachableError
from ..connectors.redaction import redact
from ..connectors.registry import discover_systems
from ..connectors.runtime import url_variable
from ..settings import load_overrides, load_settings
from .checks import first_in_chain, network_cause
from .streams import UnknownStreamError


def _variable_for_url(url: str) -> str | None:
    """Which variable points at this URL: a system's `<SYSTEM>_BASE_URL`, or `IP_SANDBOX_URL`."""
    settings = load_settings()
    for system in discover_systems():
        base = load_overrides(system.name).base_url
        if base and url.startswith(base.rstrip("/")):
            return f"{system.env_prefix}_BASE_URL"
    if url.startswith(settings.sandbox_url.rstrip("/")):
        return "IP_SANDBOX_URL"
    return None


def _system_url(title: str) -> tuple[str, str] | None:
    """(the variable, the URL) a system talks to, by its title or name."""
    from ..connectors.runtime import resolve_system

    settings = load_settings()
    for system in discover_systems():
        if title in (system.title, system.name):
            try:
                resolved = resolve_system(system, settings)
            except ConfigurationError:
                return url_variable(system, settings), ""
            return url_variable(system, settings, resolved.mode), resolved.base_url
    return None


def describe_error(exc: BaseException) -> str | None:
    """The paragraph to show for a known error, or None for anything else (which keeps its traceback)."""
    import duckdb

    from ..warehouse.duckdb import WarehouseLockedError
    from ..warehouse.query import WarehouseMissingError

    if isinstance(exc, (ConfigurationError, UnknownStreamError, WarehouseLockedError, WarehouseMissingError)):
        return redact(str(exc))
    if isinstance(exc, AuthError):
        return str(exc)
    if isinstance(exc, ConnectorError):
        unreachable = first_in_chain(exc, UnreachableError)
        if unreachable is not None:  # the HTTP client already wrote the paragraph, naming the URL's variable
            return str(unreachable)
        cause = network_cause(exc)
        if cause is None:
            return str(exc)
        found = _system_url(exc.system)
        if found is None:
            return str(exc)
        variable, url = found
        return redact(f"Could not connect to {exc.system}" + (f" at {url}" if url else "")
                      + f" ({type(cause).__name__}: {cause}). The URL comes from {variable}: check it, and that "
                      "the service is up.")
    if isinstance(exc, httpx.HTTPError):
        try:
            url = str(exc.request.url)
        except RuntimeError:
            url = ""
        variable = _variable_for_url(url) if url else None
        where = f" talking to {url}" if url else ""
        return redact(f"{type(exc).__name__}{where}: {exc}."
                      + (f" The URL comes from {variable}: check it, and that the service is up." if variable
                         else ""))
    if isinstance(exc, duckdb.IOException):
        return redact(f"The warehouse could not be opened: {exc}. Check IP_WAREHOUSE (or IP_DATA_DIR, where the "
                      "default warehouse.duckdb lives).")
    if isinstance(exc, duckdb.CatalogException):
        first = str(exc).splitlines()[0]
        return redact(f"The warehouse lacks a table this needs ({first}). Has anything been extracted into it yet? "
                      "Check IP_WAREHOUSE / IP_DATA_DIR point at the right one.")
    return None
