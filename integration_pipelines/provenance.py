"""Provenance: never push data that came from a sandbox into a real service.

A warehouse that was filled from the emulators (the demo, a trial run) holds fake customers, fake payments and fake
invoices. Once a target system is switched to its real service, a sync would happily create those records there:
fake invoices in the real books. So a live-mode write resolution (`resolve_system(..., purpose="write")` when the
target is live) looks at the warehouse's extract log first, and refuses while any stream in it was extracted in
sandbox mode, with one paragraph saying what to do: start a fresh warehouse for live data (`IP_WAREHOUSE`), or set
`IP_ALLOW_SANDBOX_DATA_IN_LIVE=true` to accept it knowingly (a staging service fed from the sandbox).

Where the mode is recorded: the `source_mode` column ('sandbox' | 'live') of `ops.extract_log`, one row per
extracted stream per run. Until the loader writes that column (warehouse/ and extraction.py belong to other
engineers; see docs/credentials.md) a warehouse without it is treated as having no sandbox extracts, and the check
is silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .connectors.errors import ConfigurationError
from .connectors.redaction import redact

if TYPE_CHECKING:
    from .connectors.runtime import ResolvedSystem
    from .settings import Settings

ALLOW_ENV = "IP_ALLOW_SANDBOX_DATA_IN_LIVE"
MODE_COLUMN = "source_mode"
_TRUE = {"1", "true", "yes", "on"}


#: non-secret values that say which account, company or tenant of a service is meant, in the order they are shown
ACCOUNT_VALUE_KEYS = ("shop", "realm_id", "tenant_id", "account_id", "company_id", "org_id", "db")


def account_of(resolved: ResolvedSystem) -> str:
    """Which account of the service a resolution talks to, in words that are safe anywhere: the base URL's host
    (and port), plus the spec's non-secret account values that the host does not already name (QuickBooks'
    realm id, Xero's tenant id, NetSuite's account id, an Odoo database), e.g.
    `quickbooks.api.intuit.com realm_id=9130350000000000` or, for the sandbox, `127.0.0.1:8765 realm_id=...`.
    Never a secret nor a hash of one: only values the spec marks `secret=False`, and the text is dropped for the
    bare host if any registered secret shows in it."""
    host = urlsplit(resolved.base_url).netloc.rpartition("@")[2].lower()  # never a URL's user:password@
    public = resolved.public_values
    extras = [f"{key}={public[key]}" for key in ACCOUNT_VALUE_KEYS
              if public.get(key) and str(public[key]).lower() not in host]
    text = " ".join([host, *extras]).strip()
    if redact(text) == text:
        return text
    return host if redact(host) == host else "unknown"


class SandboxDataInLiveError(ConfigurationError):
    """A live write was refused because the warehouse holds data extracted from a sandbox."""


def allowed(settings: Settings, environ: Mapping[str, str]) -> bool:
    flag = environ.get(ALLOW_ENV)
    if flag is not None:
        return flag.strip().lower() in _TRUE
    return bool(getattr(settings, "allow_sandbox_data_in_live", False))


def sandbox_extracts(database: str, lock_timeout: float = 120.0) -> dict[str, int]:
    """System → number of streams/runs extracted in sandbox mode, from `ops.extract_log.source_mode`."""
    if database == ":memory:":
        return {}
    if not database.startswith("md:") and not Path(database).exists():
        return {}
    from .warehouse.duckdb import Warehouse

    with Warehouse(database, lock_timeout=lock_timeout).connect() as con:
        has_column = con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ops' "
            "AND table_name = 'extract_log' AND column_name = ?", [MODE_COLUMN]).fetchone()[0]
        if not has_column:
            return {}
        rows = con.execute(
            f"SELECT system, count(*) FROM ops.extract_log WHERE {MODE_COLUMN} = 'sandbox' "
            "GROUP BY system ORDER BY system").fetchall()
    return {str(system): int(count) for system, count in rows}


def refuse_sandbox_data_in_live(resolved: ResolvedSystem, settings: Settings, environ: Mapping[str, str]) -> None:
    """Raise `SandboxDataInLiveError` when `resolved` (a live write) would push sandbox-extracted data."""
    if resolved.mode != "live" or resolved.purpose != "write" or allowed(settings, environ):
        return
    database = settings.warehouse_database
    found = sandbox_extracts(database, settings.warehouse_lock_timeout_seconds)
    if not found:
        return
    listed = ", ".join(f"{system} ({count} extract{'s' if count != 1 else ''})" for system, count in found.items())
    raise SandboxDataInLiveError(
        f"Refusing to write to the real {resolved.system.title}: the warehouse {database} holds data extracted from "
        f"the sandbox ({listed}), and a sync would push those fake records into the real service. Use a fresh "
        f"warehouse for live data (set IP_WAREHOUSE to a new file, or IP_DATA_DIR to a new folder) and extract "
        f"from the real services into it, or, if the target is itself a test account and this is intended, set "
        f"{ALLOW_ENV}=true."
    )
