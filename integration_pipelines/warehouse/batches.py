"""JSON records → typed Arrow tables, one bounded batch at a time.

Top-level fields become columns (objects and arrays as JSON text); every row also keeps its original JSON,
so nothing the API sent is lost when a typed column lags behind or a field changes type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

META_COLUMNS = ("_pk", "_cursor", "_source_system", "_extracted_at", "_run_id", "_raw", "_seq")


def canonical_json(record: Any) -> str:
    """Deterministic JSON, so that an unchanged record compares equal across runs."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _column_type(values: Sequence[Any]) -> pa.DataType | None:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        if all(-(2**63) <= v < 2**63 for v in values if v is not None):
            return pa.int64()
        return pa.string()
    if kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value)


def _field_names(records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(json key, column name) pairs; a key that differs from another only by case keeps to `_raw`."""
    seen: dict[str, str] = {}
    for record in records:
        for key in record:
            column = f"{key}__field" if key in META_COLUMNS else key
            seen.setdefault(column.lower(), key)
    return [(key, f"{key}__field" if key in META_COLUMNS else key) for key in seen.values()]


def records_to_table(
    records: Sequence[dict[str, Any]],
    *,
    source_system: str,
    primary_keys: Sequence[str],
    cursors: Sequence[str | None],
    run_id: str,
    extracted_at: datetime,
    first_seq: int,
) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for key, column in _field_names(records):
        values = [record.get(key) for record in records]
        arrow_type = _column_type(values)
        if arrow_type is None:
            continue
        if arrow_type == pa.string():
            values = [_as_text(v) for v in values]
        columns[column] = pa.array(values, type=arrow_type)
    n = len(records)
    columns["_pk"] = pa.array(primary_keys, type=pa.string())
    columns["_cursor"] = pa.array(cursors, type=pa.string())
    columns["_source_system"] = pa.array([source_system] * n, type=pa.string())
    columns["_extracted_at"] = pa.array([extracted_at] * n, type=pa.timestamp("us", tz="UTC"))
    columns["_run_id"] = pa.array([run_id] * n, type=pa.string())
    columns["_raw"] = pa.array([canonical_json(r) for r in records], type=pa.string())
    columns["_seq"] = pa.array(range(first_seq, first_seq + n), type=pa.int64())
    return pa.table(columns)
