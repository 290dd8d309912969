"""JSON records → typed Arrow tables, one bounded batch at a time.

Top-level fields become columns (objects and arrays as JSON text); every row also keeps its original JSON,
so nothing the API sent is lost when a typed column lags behind or a field changes type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from hashlib import md5
from itertools import chain
from typing import Any

import orjson
import pyarrow as pa

META_COLUMNS = ("_pk", "_cursor", "_source_system", "_extracted_at", "_run_id", "_raw", "_hash", "_seq", "_version")

# Datetimes go through `default=str` as with the standard library, so the text is the same on both paths.
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_NONE = type(None)


def canonical_json_bytes(record: Any) -> bytes:
    """Deterministic JSON (UTF-8), so that an unchanged record compares equal across runs.

    orjson does this an order of magnitude faster than `json.dumps`, which matters because every record is
    serialized on the extract path. What orjson refuses (integers beyond 64 bits, non-string keys, lone
    surrogates) takes the standard library's path, so no record is ever rejected for its shape.
    """
    try:
        return orjson.dumps(record, option=_ORJSON_OPTIONS, default=str)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode("utf-8", "surrogatepass")


def _raw_bytes(records: Sequence[dict[str, Any]]) -> list[bytes]:
    """`canonical_json_bytes` of every record, with the orjson call inlined for the common case."""
    dumps, options = orjson.dumps, _ORJSON_OPTIONS
    try:
        return [dumps(record, option=options, default=str) for record in records]
    except (orjson.JSONEncodeError, TypeError):
        return [canonical_json_bytes(record) for record in records]


def canonical_json(record: Any) -> str:
    return canonical_json_bytes(record).decode("utf-8", "replace")


def _typed_array(values: list[Any]) -> pa.Array | None:
    """One column: bool, int64 or float64 when every value agrees, else text (objects and arrays as JSON)."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if not kinds:
        return None
    if kinds == {bool}:
        return pa.array(values, type=pa.bool_())
    if kinds == {int}:
        try:
            return pa.array(values, type=pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            pass  # beyond 64 bits: kept exactly, as text
    elif kinds <= {int, float}:
        return pa.array(values, type=pa.float64())
    elif kinds == {str}:
        return _text_array(values)
    return _text_array(_json_texts(values))


def _text_array(values: list[str | None]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:  # a lone surrogate (`"\udc80"` in the JSON) cannot be UTF-8; it stays in `_raw`
        return pa.array([v.encode("utf-8", "replace").decode() if v else v for v in values], type=pa.string())


def _json_texts(values: list[Any]) -> list[str | None]:
    """Objects and arrays as canonical JSON text, strings as they are. The inlined orjson call is the fast path
    (a nested column is serialized on every record's path); a value orjson refuses takes `canonical_json`'s."""
    dumps, options = orjson.dumps, _ORJSON_OPTIONS
    try:
        return [v if v is None or v.__class__ is str else dumps(v, option=options, default=str).decode()
                for v in values]
    except (orjson.JSONEncodeError, TypeError, UnicodeDecodeError):
        return [_as_text(v) for v in values]


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value)


def column_name(key: str) -> str:
    """The column a top-level field lands in: its own name, except for names a column cannot take as they are,
    which get a `__field` suffix: our metadata columns (`_pk`, `_raw` ...) and the empty name (DuckDB would invent
    `C1` for it, and clash with a real `C1`)."""
    return f"{key}__field" if key in META_COLUMNS or key == "" else key


def _field_names(records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(json key, column name) pairs; a key whose column differs from another's only by case keeps to `_raw`
    (DuckDB names are case-insensitive)."""
    seen: dict[str, tuple[str, str]] = {}
    for key in dict.fromkeys(chain.from_iterable(records)):
        column = column_name(key)
        seen.setdefault(column.lower(), (key, column))
    return list(seen.values())


FIELDS_LEFT_IN_RAW = b"integration_pipelines.fields_left_in_raw"
"""Arrow schema metadata of a batch (kept in its Parquet file): how many fields got no typed column."""
_FEW_FIELDS = 100  # IP_MAX_COLUMNS_PER_TABLE is at least this, so a batch this narrow never asks the settings


def records_to_table(
    records: Sequence[dict[str, Any]],
    *,
    source_system: str,
    primary_keys: Sequence[str],
    cursors: Sequence[str | None],
    run_id: str,
    extracted_at: datetime,
    first_seq: int,
    versions: Sequence[datetime | None] | None = None,
    seqs: Sequence[int] | None = None,
    max_columns: int | None = None,
) -> pa.Table:
    """One Arrow batch of `records`. `versions` is the moment each snapshot was true at the source (an event's
    creation time); without it every row is as new as `extracted_at`, the moment the read started. The load
    never lets an older version replace a newer one, so a late or replayed event cannot undo a later change.

    At most `max_columns` (default IP_MAX_COLUMNS_PER_TABLE) fields become typed columns, the first in the
    records' own order; the rest are counted in the schema's metadata and stay in `_raw` only. Why: a page that
    suddenly carries thousands of new fields would otherwise build (and load) thousands of sparse columns, and
    memory grows with the width; a raw table never takes more columns than that anyway."""
    columns: dict[str, pa.Array] = {}
    fields = _field_names(records)
    left_in_raw = 0
    if len(fields) > _FEW_FIELDS or (max_columns is not None and len(fields) > max_columns):
        if max_columns is None:
            from ..settings import load_settings

            max_columns = load_settings().max_columns_per_table
        if len(fields) > max_columns:
            left_in_raw = len(fields) - max_columns
            fields = fields[:max_columns]
    for key, column in fields:
        array = _typed_array([record.get(key) for record in records])
        if array is not None:
            columns[column] = array
    n = len(records)
    columns["_pk"] = pa.array(primary_keys, type=pa.string())
    columns["_cursor"] = pa.array(cursors, type=pa.string())
    columns["_source_system"] = pa.array([source_system] * n, type=pa.string())
    columns["_extracted_at"] = pa.array([extracted_at] * n, type=pa.timestamp("us", tz="UTC"))
    columns["_run_id"] = pa.array([run_id] * n, type=pa.string())
    # A read's rows are as new as the second the read started: providers stamp changes in whole seconds, so a
    # change made in that same second compares equal (and is applied) rather than older (and dropped).
    read_version = extracted_at.replace(microsecond=0)
    columns["_version"] = pa.array(
        [read_version] * n if versions is None else [v or read_version for v in versions],
        type=pa.timestamp("us", tz="UTC"))
    raws = _raw_bytes(records)
    # The load compares this digest, not `_raw` itself, so finding what changed needs ~50 bytes per row.
    columns["_hash"] = pa.array([md5(raw, usedforsecurity=False).hexdigest() for raw in raws], type=pa.string())
    try:
        columns["_raw"] = pa.array(raws, type=pa.string())  # UTF-8 bytes go straight into the column
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a lone surrogate: kept, replaced by U+FFFD
        columns["_raw"] = pa.array([raw.decode("utf-8", "replace") for raw in raws], type=pa.string())
    # _seq orders the records of one load: between two snapshots of one key with the same version, the higher wins
    columns["_seq"] = pa.array(range(first_seq, first_seq + n) if seqs is None else seqs, type=pa.int64())
    table = pa.table(columns)
    if left_in_raw:
        table = table.replace_schema_metadata({FIELDS_LEFT_IN_RAW: str(left_in_raw).encode()})
    return table
