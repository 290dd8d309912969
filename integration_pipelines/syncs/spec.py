"""SyncSpec: what to send where, declared as data.

The source is SQL over the warehouse (transformations belong there, where they are testable and diffable);
the payload is a template filled from each source row; the mode says which operations are allowed. A sync
that needs another sync's results (the accounting customer before the invoice that references it) reads that
sync's ledger in its SQL (`sync.ledger`) and lists it in `depends_on`; rows whose `required_columns` are still
null wait for a later run instead of being sent half-formed.

A payload field whose template is one column (`"{phone}"`) takes that column's value, so a NULL is sent as JSON
null, which most APIs read as "clear this field". `null_fields="omit"` leaves such fields out instead, so the
target keeps what it holds: a sync that must only fill empty fields (web-form leads into a CRM) sets the columns
it must not touch to NULL in its source SQL.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SyncSetting(BaseModel):
    """A value the operator configures for a sync (an ERP route, a plant), read from the environment when the sync
    plans. The source SQL sees each as a row of the temp table `_sync_settings (name, value)`, e.g.
    `(SELECT value FROM _sync_settings WHERE name = 'purchase_orders_target')`; values are passed as parameters,
    never pasted into SQL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    default: str = ""
    description: str

    def value(self) -> str:
        found = os.environ.get(self.env, "").strip()
        return found or self.default


class SyncSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str
    source_sql: str
    source_assets: tuple[tuple[str, ...], ...] = ()
    key: str = Field(description="source column that identifies a record across runs")
    target: str = Field(description="system name, e.g. quickbooks")
    mode: Literal["insert", "update", "upsert", "mirror"]
    create_writer: str | None = None
    update_writer: str | None = None
    delete_writer: str | None = None
    external_id_column: str | None = Field(
        default=None, description="source column already holding the target's id (records that exist there)"
    )
    payload: dict[str, Any]
    update_payload: dict[str, Any] | None = None
    delete_payload: dict[str, Any] | None = None
    required_columns: tuple[str, ...] = ()
    null_fields: Literal["send", "omit"] = Field(
        default="send", description="a payload field whose value renders as null: `send` sends JSON null (the "
        "target usually clears the field), `omit` leaves it out so the target keeps its value")
    settings: dict[str, SyncSetting] = Field(
        default_factory=dict, description="operator configuration the source SQL reads from `_sync_settings`")
    start_column: str | None = Field(
        default=None, description="source column with the record's business time (paid_at, created_at): the sync "
        "acts only on records at or after its start (IP_SYNC_<NAME>_START, IP_SYNC_START, else its first run)")
    depends_on: tuple[str, ...] = ()
    batch_size: int | None = Field(default=None, ge=1)
    error_threshold: float = Field(default=0.25, ge=0, le=1, description="fail the run above this failure share")
    manual_minutes_per_record: float = Field(default=3.0, ge=0, description="ROI: minutes a person spends per record")

    def shape_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The rendered payload as it is sent: with `null_fields="omit"`, object fields whose value is null are
        left out at every depth (list items stay, so positions keep their meaning)."""
        return _without_nulls(payload) if self.null_fields == "omit" else payload

    @model_validator(mode="after")
    def _writers_fit_mode(self) -> SyncSpec:
        needs = {"insert": ("create_writer",), "update": ("update_writer",),
                 "upsert": ("create_writer", "update_writer"),
                 "mirror": ("create_writer", "update_writer", "delete_writer")}[self.mode]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"sync {self.name}: mode {self.mode!r} needs {', '.join(missing)}")
        if self.mode == "update" and not self.external_id_column:
            raise ValueError(f"sync {self.name}: mode 'update' needs external_id_column (which target record)")
        return self


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
