"""Dagster asset factories: one generic factory per layer, fed by the declarative specs."""
