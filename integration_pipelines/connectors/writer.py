"""Send one write (or one batch of writes) declared by a `Writer` spec, with the target's idempotency key.

Vendor-free: the spec says where the key goes (header, query param, body field) and how long it may be;
keys longer than the target allows are shortened to a stable hash, so a retried batch reuses the same key.

A writer that creates without a key (`Writer.replay_safe` false) is sent without automatic retries once the request
may have reached the target (http.py); `look_up` then asks the target, through the writer's `lookup`, whether the
record was made anyway.

One dispatch for REST and SOAP writes: a sync names a writer of its target, and `find_writer` finds it among the
system's REST `Writer`s and its SOAP `SoapWriter`s alike; `write_client` opens the client that writer needs
(an `HttpClient`, or a `SoapClient` over one), `dispatch_write` sends the records and answers a `WriteResult`
either way, and `replay_safe` / `batch_size` / `look_up_any` say how the engine may repeat, batch and look up a
write. The engine's ledger, journal, in-doubt and error handling is then the same for both: a SOAP fault (or an
`isSuccess="false"` status) for one record is an `ApiError` (that record is refused), a throttling fault is a 429
to the client (retried with backoff), and a lost answer is an `OutcomeUnknownError`/`ConnectorError`. A SOAP writer
is keyed by its business key (`key_field`: NetSuite `externalId`, the legacy ERP's `poNumber`), which the target
deduplicates on, so repeating it after a lost answer returns the record the first attempt made: it is replay-safe
and its lookup is the write itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .http import HttpClient, OutcomeUnknownError, json_path
from .reader import login_variables
from .runtime import ResolvedSystem, build_client
from .spec import SoapWriter, System, Writer, render_template

AnyWriter = Writer | SoapWriter


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


# -- one dispatch for REST and SOAP writers -------------------------------------------------------------------
def writer_names(system: System) -> list[str]:
    """Every writer a sync may name on `system`: its REST writers, then its SOAP writers."""
    return [w.name for w in system.writers] + [w.name for w in (system.soap.writers if system.soap else ())]


def find_writer(system: System, name: str) -> AnyWriter:
    """The writer `name` of `system`, REST or SOAP."""
    for writer in system.writers:
        if writer.name == name:
            return writer
    for soap_writer in system.soap.writers if system.soap else ():
        if soap_writer.name == name:
            return soap_writer
    raise KeyError(f"{system.name} has no writer {name!r}; its writers: {writer_names(system)}")


def replay_safe(writer: AnyWriter) -> bool:
    """Whether a write whose answer was lost may be sent again. A SOAP writer is keyed by the business key the
    target deduplicates on (NetSuite `upsert` by `externalId`, the ERP's create by `poNumber`): always."""
    return True if isinstance(writer, SoapWriter) else writer.replay_safe


def batch_size(writer: AnyWriter) -> int:
    return 1 if isinstance(writer, SoapWriter) else writer.batch_size


def has_lookup(writer: AnyWriter) -> bool:
    return isinstance(writer, Writer) and writer.lookup is not None


def http_of(client: Any) -> HttpClient:
    """The `HttpClient` beneath a write client (a `SoapClient` carries its envelopes over one)."""
    return client if isinstance(client, HttpClient) else client.http


@contextmanager
def write_client(resolved: ResolvedSystem, *, log: Any = None, **kwargs: Any) -> Iterator[Any]:
    """The client a system's writers need: a `SoapClient` for a SOAP system (its REST writers, if any, go through
    the `HttpClient` beneath it), an `HttpClient` otherwise; same retries, rate limit and logs either way."""
    if resolved.system.soap is not None:
        from .soap import build_soap_client  # zeep is loaded only for SOAP targets

        with build_soap_client(resolved, log=log, **kwargs) as soap_client:
            yield soap_client
    else:
        with build_client(resolved, log=log, **kwargs) as client:
            yield client


def dispatch_write(
    client: Any,
    resolved: ResolvedSystem,
    writer: AnyWriter,
    records: Sequence[Mapping[str, Any]],
    *,
    idempotency_key: str | None = None,
    path_variables: Mapping[str, Any] | None = None,
) -> WriteResult:
    """Send through a REST writer (`send_write`) or a SOAP writer (`soap.send_soap_write`), with one answer shape.
    A SOAP writer takes one record per call and needs no idempotency key: its business key is in the record."""
    if isinstance(writer, Writer):
        return send_write(http_of(client), resolved, writer, records, idempotency_key=idempotency_key,
                          path_variables=path_variables)
    from .soap import send_soap_write

    if len(records) != 1:
        raise ValueError(f"{resolved.system.name}.{writer.name} writes one record per call")
    written = send_soap_write(client, writer, records[0])
    return WriteResult(200, written.body, [written.external_id], False)


def look_up_any(client: Any, resolved: ResolvedSystem, writer: AnyWriter, payload: Mapping[str, Any]
                ) -> list[str | None] | None:
    """`look_up` for a REST writer; None (no lookup can tell) for a SOAP writer, whose write is its own lookup."""
    if not isinstance(writer, Writer):
        return None
    return look_up(http_of(client), resolved, writer, payload)
