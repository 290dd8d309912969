"""Dagster resources. Values come from settings (the environment), never from code."""

from __future__ import annotations

from typing import Any

import dagster as dg

from .warehouse.duckdb import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse, addressed by a connection string (a file path, or `md:` for MotherDuck)."""

    database: str
    lock_timeout_seconds: float = 120.0

    def get(self, log: Any = None) -> Warehouse:
        return Warehouse(self.database, lock_timeout=self.lock_timeout_seconds, log=log)
