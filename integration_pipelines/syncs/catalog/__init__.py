"""The business scenarios, one module each (`SYNC = SyncSpec(...)`)."""
