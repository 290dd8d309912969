"""Send one write (or one batch of writes) declared by a `Writer` spec, with the target's idempotency key.

Vendor-free: the spec says where the key goes (header, query param, body field) and how long it may be;
keys longer than the target allows are shortened to a stable hash, so a retried batch reuses the same key.

A writer that creates without a key (`Writer.replay_safe` false) is sent without automatic retries once the request
may have reached the target (http.py); `look_up` then asks the target, through the writer's `lookup`, whether the
record was made anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .http import HttpClient, OutcomeUnknownError, json_path
from .reader import login_variables
from .runtime import ResolvedSystem
from .spec import Writer, render_template


@dataclass(frozen=True)
class WriteResult:
    status: int
    body: Any
    external_ids: list[str | None]
    replayed: bool


def fit_key(key: str, max_length: int) -> str:
    """Keep the key if it fits; otherwise a stable digest of it (same input → same key on every retry)."""
    if len(key) <= max_length:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return digest[:max_length]


def send_write(
    client: HttpClient,
    resolved: ResolvedSystem,
    writer: Writer,
    records: Sequence[Mapping[str, Any]],
    *,
    idempotency_key: str | None = None,
    path_variables: Mapping[str, Any] | None = None,
) -> WriteResult:
    if not records:
        raise ValueError("send_write needs at least one record")
    if writer.batch_envelope is None and len(records) != 1:
        raise ValueError(f"{resolved.system.name}.{writer.name} writes one record per request")
    if len(records) > writer.batch_size:
        raise ValueError(f"{resolved.system.name}.{writer.name} takes at most {writer.batch_size} per batch")
    variables = {**resolved.values, **login_variables(client, resolved), **(path_variables or {})}
    where = f"{resolved.system.name} writer {writer.name}"
    path = render_template(writer.path, variables, where=where)
    params = dict(render_template(writer.params, variables, where=where))
    headers = {k: str(v) for k, v in render_template(writer.headers, variables, where=where).items()}
    body: Any = {writer.batch_envelope: list(records)} if writer.batch_envelope else dict(records[0])
    idem = writer.idempotency
    if idempotency_key and idem.location != "none":
        key = fit_key(idempotency_key, idem.max_length)
        if idem.location == "header":
            headers[idem.name] = key
        elif idem.location == "query":
            params[idem.name] = key
        else:
            body = {**body, idem.name: key}
    if writer.csrf_fetch_path:
        headers["X-CSRF-Token"] = _csrf_token(client, writer, variables, where)
    kwargs: dict[str, Any] = {"params": params or None, "headers": headers or None}
    if writer.method != "DELETE":
        kwargs["data" if writer.body_format == "form" else "json"] = body
    response = client.request(writer.method, path, replay_safe=writer.replay_safe, **kwargs)
    try:
        parsed: Any = response.json() if response.content else None
    except ValueError as exc:  # a success status whose answer is unreadable: applied, but with which id?
        raise OutcomeUnknownError(resolved.system.title, f"{where} answered {response.status_code} with a body that "
                                  f"is not JSON ({response.text[:200]!r}); the write may have been applied") from exc
    error_path = resolved.system.body_error_path
    if error_path and parsed is not None and json_path(parsed, error_path) is not None:
        # JSON-RPC style: the write failed inside a 200 answer, and must count as failed, not as "no id"
        raise ApiError(resolved.system.title, f"{where} was refused: {str(json_path(parsed, error_path))[:500]}",
                       status=response.status_code, body=response.text[:2000])
    if writer.results_path:
        results = json_path(parsed, writer.results_path) or []
        ids = [_as_id(json_path(item, writer.id_path)) for item in results]
    else:
        ids = [_as_id(json_path(parsed, writer.id_path))]
    replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
    return WriteResult(response.status_code, parsed, ids, replayed)


def look_up(client: HttpClient, resolved: ResolvedSystem, writer: Writer, payload: Mapping[str, Any]
            ) -> list[str | None] | None:
    """The ids of the target records matching the unique reference `payload` carries (the writer's `lookup`), or
    None when the writer has no lookup or the payload carries no reference to search for."""
    lookup = writer.lookup
    if lookup is None:
        return None
    found = {name: json_path(payload, path) for name, path in lookup.variables.items()}
    if any(value in (None, "") for value in found.values()):
        return None
    variables = {**resolved.values, **login_variables(client, resolved), **found}
    where = f"{resolved.system.name} writer {writer.name} lookup"
    request = lookup.request
    response = client.request(
        request.method, render_template(request.path, variables, where=where),
        params=render_template(request.params, variables, where=where) or None,
        json=render_template(request.body, variables, where=where) if request.body is not None else None,
        headers={k: str(v) for k, v in render_template(request.headers, variables, where=where).items()} or None)
    parsed = response.json()
    error_path = resolved.system.body_error_path
    if error_path and json_path(parsed, error_path) is not None:
        raise ApiError(resolved.system.title, f"{where} was refused: {str(json_path(parsed, error_path))[:500]}",
                       status=response.status_code, body=response.text[:2000])
    matches = json_path(parsed, lookup.results_path) if lookup.results_path else parsed
    return [_as_id(json_path(item, lookup.id_path)) for item in matches or []]


def _csrf_token(client: HttpClient, writer: Writer, variables: Mapping[str, Any], where: str) -> str:
    """SAP's fetch-then-send: a GET with `X-CSRF-Token: Fetch` returns the token (and a session cookie,
    which the client's cookie jar keeps) that every modifying request must carry."""
    path = render_template(writer.csrf_fetch_path, dict(variables), where=where)
    response = client.request("GET", path, headers={"X-CSRF-Token": "Fetch"})
    token = response.headers.get("X-CSRF-Token")
    if not token:
        raise ApiError(client.system, f"{where}: {path} returned no X-CSRF-Token header to write with")
    return token


def _as_id(value: Any) -> str | None:
    return None if value is None else str(value)
