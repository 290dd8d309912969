"""A process waiting for the warehouse gets the next turn, even against a holder that reopens the file at once
(the event lane under steady traffic; the nightly's steps used to wait 20-40 s per connection behind it).

Counted in the holder's turns, not timed: five times over, the waiter must be in by the holder's next turn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.lock_queue import FRESH_SECONDS, LockQueue

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from integration_pipelines.warehouse.duckdb import Warehouse
    database, turns_file, turns = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    warehouse = Warehouse(database, memory_limit="256MB", load_memory_limit="256MB")
    for turn in range(1, turns + 1):
        with warehouse.connect() as con:  # a lane batch: holds the file, then reopens it straight away
            turns_file.write_text(str(turn))
            con.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            con.execute("INSERT INTO t VALUES (?)", [turn])
            time.sleep(0.8)
""")


def turns(path: Path) -> int:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else 0


def test_a_waiting_process_gets_the_next_turn(tmp_path: Path):
    database, turns_file = tmp_path / "warehouse.duckdb", tmp_path / "turns"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(database), str(turns_file), "40"])
    try:
        deadline = time.monotonic() + 120
        while turns(turns_file) < 2:  # the holder is in its loop
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not start"
            time.sleep(0.05)
        warehouse = Warehouse(str(database), lock_timeout=120, memory_limit="256MB", load_memory_limit="256MB")
        for attempt in range(5):  # a waiter that got in by luck (it tried in the holder's short gap) passes once
            before = turns(turns_file)
            with warehouse.connect() as con:
                during = turns(turns_file)
                assert con.execute("SELECT count(*) FROM t").fetchone()[0] >= before
            assert during - before <= 1, (
                f"attempt {attempt + 1}: the waiter got in only after the holder's turn {during} (it started "
                f"waiting in turn {before})")
            while turns(turns_file) == during and holder.poll() is None:  # wait in the holder's next turn
                time.sleep(0.05)
            time.sleep(0.2)
        assert holder.poll() is None, "the holder was still taking turns: the waiter did not just outlast it"
        mine = list((tmp_path / "warehouse.duckdb.waiting").glob(f"{os.getpid()}.*"))
        assert mine == [], "the waiter's marker is removed once it has the file"
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_marker_of_a_dead_waiter_is_not_waited_for(tmp_path: Path):
    database = tmp_path / "warehouse.duckdb"
    folder = tmp_path / "warehouse.duckdb.waiting"
    folder.mkdir()
    marker = folder / "999999999.1"
    marker.touch()
    old = time.time() - FRESH_SECONDS - 10
    os.utime(marker, (old, old))
    assert LockQueue(str(database)).let_waiters_go_first() < 1.0


@pytest.mark.parametrize("database", [":memory:"])
def test_in_memory_warehouses_have_no_queue(database: str):
    with Warehouse(database, memory_limit="256MB", load_memory_limit="256MB").connect() as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
