"""Outbound syncs (reverse ETL): declarative SyncSpecs, one diff/ledger engine, and the scenario catalog."""
