"""Reference docs generated from the specs themselves, so they cannot drift from the code."""

from __future__ import annotations

from .connectors.registry import discover_systems
from .connectors.spec import OAuth2AuthSpec


def systems_markdown() -> str:
    lines = [
        "# Systems",
        "",
        "Generated from the connector specs by `integration-pipelines docs`; do not edit by hand.",
        "",
        "With none of a system's secret variables set, it talks to the sandbox; with all of them set, to the "
        "real service at its base URL. Every system also honours `<SYSTEM>_BASE_URL`, "
        "`<SYSTEM>_REQUESTS_PER_SECOND`, `<SYSTEM>_MAX_RETRIES`, `<SYSTEM>_TIMEOUT_SECONDS`, "
        "`<SYSTEM>_PAGE_SIZE` and `<SYSTEM>_ENABLED`.",
        "",
    ]
    for system in discover_systems():
        lines += [f"## {system.title} (`{system.name}`, {system.category})", ""]
        if system.docs_url:
            lines += [f"Vendor reference: {system.docs_url}", ""]
        lines += [f"- Base URL: `{system.base_url}`; default budget {system.requests_per_second:g} requests/s "
                  f"(burst {system.burst}), {system.max_attempts} attempts per request.",
                  f"- Auth: {system.auth.kind}"
                  + (f" ({system.auth.grant_type}, token URL `{system.auth.token_url}`)"
                     if isinstance(system.auth, OAuth2AuthSpec) else ""), ""]
        lines += ["| variable | secret | what |", "|---|---|---|"]
        lines += [f"| `{v.env}` | {'yes' if v.secret else 'no'} | {v.description or key} |"
                  for key, v in system.values.items()]
        lines += ["", "| stream | asset | primary key | incremental | partitions |", "|---|---|---|---|---|"]
        for stream in system.streams:
            incremental = f"`{stream.cursor_field}`" if stream.incremental_request and stream.cursor_field else "—"
            lines.append(f"| {stream.name} | `{system.name}/{stream.name}` | `{stream.primary_key}` | {incremental} "
                         f"| {stream.partitioned or '—'} |")
        if system.writers:
            lines += ["", "| writer | request | idempotency |", "|---|---|---|"]
            for writer in system.writers:
                idem = writer.idempotency
                key = f"{idem.location} `{idem.name}`" if idem.location != "none" else "none (upsert by key)"
                lines.append(f"| {writer.name} | `{writer.method} {writer.path}` | {key} |")
        lines.append("")
    return "\n".join(lines)
