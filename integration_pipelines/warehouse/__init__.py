"""The DuckDB warehouse: raw landing tables, staging and core models, and the ops schema."""
