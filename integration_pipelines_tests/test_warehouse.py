"""The warehouse loader on real DuckDB files: keyed upserts, evolving columns, type changes that do not fail
the load, atomic cursor state, and a writer that waits out another process's lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from integration_pipelines.warehouse.batches import records_to_table
from integration_pipelines.warehouse.duckdb import StreamState, Warehouse, WarehouseLockedError, WarehouseMemoryError
from integration_pipelines.warehouse.spool import Spool


def spool_of(tmp_path: Path, *batches: list[dict], name: str = "s") -> Spool:
    spool = Spool(tmp_path / "spool" / name)
    seq = 0
    for batch in batches:
        spool.write(records_to_table(batch, source_system="fake", primary_keys=[str(r["id"]) for r in batch],
                                     cursors=[None] * len(batch), run_id="run-1",
                                     extracted_at=datetime.now(UTC), first_seq=seq))
        seq += len(batch)
    return spool


def load(warehouse: Warehouse, spool: Spool, cursor: str | None = None):
    return warehouse.load_spool(schema="raw_fake", table="things", files=spool.files,
                                state=StreamState("fake", "things", "all", cursor), run_id="run-1")


def test_upsert_by_key_and_last_duplicate_wins(tmp_path):
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    result = load(wh, spool_of(tmp_path, [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], [{"id": 1, "v": "a2"}]))
    assert (result.inserted, result.updated, result.total_rows) == (2, 0, 2)
    with wh.connect() as con:
        assert con.execute("SELECT v FROM raw_fake.things WHERE _pk='1'").fetchone()[0] == "a2"
    again = load(wh, spool_of(tmp_path, [{"id": 1, "v": "a2"}, {"id": 2, "v": "b2"}], name="t"))
    assert (again.inserted, again.updated, again.unchanged, again.total_rows) == (0, 1, 1, 2)


def test_new_fields_become_columns_and_type_changes_do_not_fail(tmp_path):
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    load(wh, spool_of(tmp_path, [{"id": 1, "amount": 100, "meta": {"a": 1}}]))
    result = load(wh, spool_of(tmp_path, [{"id": 2, "amount": "one hundred", "brand_new": True}], name="t"))
    assert result.new_columns == ["brand_new"]
    assert result.type_warnings and "amount" in result.type_warnings[0] and "_raw" in result.type_warnings[0]
    with wh.connect() as con:
        rows = con.execute("SELECT _pk, amount, brand_new, _raw FROM raw_fake.things ORDER BY _pk").fetchall()
    assert rows[0][1] == 100 and rows[1][1] is None and rows[1][2] is True
    assert '"amount":"one hundred"' in rows[1][3]  # nothing the API sent is lost


def test_hostile_field_names_are_quoted_not_executed(tmp_path):
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    nasty = {"id": 1, 'x"; DROP TABLE raw_fake.things; --': "v", "_raw": "shadow", "Id": "case-twin"}
    load(wh, spool_of(tmp_path, [nasty]))
    with wh.connect() as con:
        columns = [r[0] for r in con.execute("DESCRIBE raw_fake.things").fetchall()]
        assert con.execute("SELECT count(*) FROM raw_fake.things").fetchone()[0] == 1
    assert 'x"; DROP TABLE raw_fake.things; --' in columns and "_raw__field" in columns
    assert "Id" not in columns  # a case twin of `id` stays in _raw only


def test_cursor_is_committed_with_the_rows_or_not_at_all(tmp_path):
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    load(wh, spool_of(tmp_path, [{"id": 1}]), cursor="2026-01-01T00:00:00+00:00")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(duckdb.Error):
        wh.load_spool(schema="raw_fake", table="things", files=[broken],
                      state=StreamState("fake", "things", "all", "2030-01-01T00:00:00+00:00"), run_id="run-2")
    assert wh.read_state("fake", "things", "all") == "2026-01-01T00:00:00+00:00"


HOLD_LOCK = textwrap.dedent("""
    import duckdb, sys, time
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS hold(x INT)")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


def test_a_writer_waits_out_another_process_lock_then_succeeds(tmp_path):
    path = str(tmp_path / "w.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path, "2.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    result = load(Warehouse(path, lock_timeout=30), spool_of(tmp_path, [{"id": 1}]))
    waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert result.inserted == 1 and waited >= 1.5 and holder.returncode == 0


def test_a_lock_held_too_long_gives_a_clear_error(tmp_path):
    path = str(tmp_path / "w.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path, "6"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        with pytest.raises(WarehouseLockedError, match="IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS"):
            load(Warehouse(path, lock_timeout=1), spool_of(tmp_path, [{"id": 1}]))
    finally:
        holder.kill()
        holder.wait()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_runs_spool_is_swept_with_a_message_and_a_live_ones_is_kept(tmp_path):
    import json
    import os

    from integration_pipelines.warehouse.spool import OWNER_FILE, sweep_stale_spools

    root = tmp_path / "spool"
    dead = spool_of(tmp_path, [{"id": 1}], name="run-dead/fake/things/all")
    live = spool_of(tmp_path, [{"id": 2}], name="run-live/fake/things/all")
    owner = json.loads((dead.directory / OWNER_FILE).read_text())
    assert owner["pid"] == os.getpid()  # written by the process that spools
    (dead.directory / OWNER_FILE).write_text(json.dumps({**owner, "pid": _dead_pid()}))

    messages: list[str] = []

    class Log:
        def warning(self, message: str) -> None:
            messages.append(message)

    assert sweep_stale_spools(root, Log()) == 1
    assert not (root / "run-dead").exists(), "the dead run's folders go with its spool"
    assert live.files[0].exists(), "a live run's spool is never touched"
    assert len(messages) == 1 and "run-dead" in messages[0] and "1 Parquet part(s), never loaded" in messages[0]
    assert "is gone" in messages[0]

    live.cleanup()
    assert not (root / "run-live").exists(), "a finished spool leaves no empty run folders behind"


def test_hashes_and_loads_survive_awkward_values(tmp_path):
    """Integers beyond 64 bits stay exact (text column, `_raw`), a lone surrogate does not fail the batch, and an
    unchanged record is recognised by its digest on the next load."""
    records = [{"id": 1, "big": 2**70, "text": "x\udc80", "nested": {"b": 1, "a": [1.5, None]}}]
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    first = load(wh, spool_of(tmp_path, records))
    second = load(wh, spool_of(tmp_path, records, name="again"))
    assert (first.inserted, second.unchanged, second.updated) == (1, 1, 0)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        big, nested, raw, digest = con.execute(
            "SELECT big, nested, _raw, _hash FROM raw_fake.things").fetchone()
    assert big == str(2**70) and str(2**70) in raw
    assert nested == '{"a":[1.5,null],"b":1}' and len(digest) == 32


def _wide_batches(rows: int = 20_000, columns: int = 120, per_batch: int = 2_000) -> list[list[dict]]:
    return [[{"id": i, **{f"field_{c:03d}": f"value {i} {c}" for c in range(columns)}}
             for i in range(start, start + per_batch)] for start in range(0, rows, per_batch)]


def test_a_load_that_outgrows_its_memory_limit_retries_with_twice_the_limit(tmp_path, caplog):
    """What a load needs grows with the table's width and DuckDB's threads; a small IP_LOAD_MEMORY_LIMIT must not
    fail a wide stream's run, only cost a retry (said in the log, with the setting that avoids it)."""
    wh = Warehouse(str(tmp_path / "w.duckdb"), memory_limit="1GB", load_memory_limit="4MB")
    with caplog.at_level("WARNING", logger="integration_pipelines.warehouse"):
        result = load(wh, spool_of(tmp_path, *_wide_batches()), cursor="c1")
    assert (result.inserted, result.total_rows) == (20_000, 20_000)
    assert "needed more than 4MB of DuckDB memory; retrying the load with 8MB" in caplog.text
    assert "IP_LOAD_MEMORY_LIMIT=" in caplog.text
    with wh.connect(read_only=True) as con:  # exactly one copy of every row and one cursor: the retry was clean
        assert con.execute("SELECT count(*), count(DISTINCT _pk) FROM raw_fake.things").fetchone() == (20_000, 20_000)
        assert con.execute("SELECT cursor FROM ops.stream_state").fetchall() == [("c1",)]


def test_a_load_beyond_the_largest_memory_limit_commits_nothing_and_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr("integration_pipelines.warehouse.duckdb.LOAD_MEMORY_DOUBLINGS", 0)
    wh = Warehouse(str(tmp_path / "w.duckdb"), memory_limit="1GB", load_memory_limit="4MB")
    with pytest.raises(WarehouseMemoryError) as info:
        load(wh, spool_of(tmp_path, *_wide_batches()), cursor="c1")
    message = str(info.value)
    assert "raw_fake.things needed more than 4MB" in message and "IP_LOAD_MEMORY_LIMIT" in message
    assert "nothing was committed" in message
    with wh.connect(read_only=True) as con:
        # not the raw table, nor the ops tables (cursor, log) created in the same transaction
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema IN "
                           "('raw_fake', 'ops')").fetchone()[0] == 0


def test_raw_json_is_stored_with_zstd_and_the_other_columns_as_duckdb_chooses(tmp_path):
    """`_raw` (the whole record) is most of a raw table; zstd makes the load's checkpoint cheaper and the file
    smaller (benchmarks/RESULTS.md). Typed columns keep DuckDB's own choice, which suits queries on them."""
    wh = Warehouse(str(tmp_path / "w.duckdb"))
    load(wh, spool_of(tmp_path, *_wide_batches(rows=4_000, columns=5)))
    with wh.connect(read_only=True) as con:
        methods = dict(con.execute("""SELECT column_name, string_agg(DISTINCT compression, ',')
                                      FROM pragma_storage_info('raw_fake.things')
                                      WHERE segment_type = 'VARCHAR' GROUP BY ALL""").fetchall())
    assert methods["_raw"] == "ZSTD"
    assert "ZSTD" not in methods["field_000"]
