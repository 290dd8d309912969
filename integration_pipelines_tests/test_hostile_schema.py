"""An API that suddenly sends thousands of new fields: the raw loader stays within bounded memory, adds at most
IP_MAX_NEW_COLUMNS_PER_LOAD typed columns per load and IP_MAX_COLUMNS_PER_TABLE per table, and keeps every value
in `_raw` with a warning that says how many fields got no column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from integration_pipelines.warehouse.batches import FIELDS_LEFT_IN_RAW, records_to_table
from integration_pipelines.warehouse.duckdb import StreamState, Warehouse
from integration_pipelines.warehouse.spool import Spool

# One process: a normal first load, then pages whose records each carry 5,000 fields nobody has seen before.
HOSTILE_LOAD = textwrap.dedent("""
    import json, resource, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from integration_pipelines.warehouse.batches import records_to_table
    from integration_pipelines.warehouse.duckdb import StreamState, Warehouse
    from integration_pipelines.warehouse.spool import Spool

    folder = Path(sys.argv[1])
    warehouse = Warehouse(str(folder / "w.duckdb"), memory_limit="1GB", load_memory_limit="128MB")

    def load(name, pages):
        spool = Spool(folder / "spool" / name)
        seq = 0
        for page in pages:
            spool.write(records_to_table(page, source_system="fake", primary_keys=[str(r["id"]) for r in page],
                                         cursors=[None] * len(page), run_id=name,
                                         extracted_at=datetime.now(UTC), first_seq=seq))
            seq += len(page)
        try:
            return warehouse.load_spool(schema="raw_fake", table="things", files=spool.files,
                                        state=StreamState("fake", "things", "all", None), run_id=name)
        finally:
            spool.cleanup()

    load("first", [[{"id": i, "name": f"thing {i}", "amount": i * 10} for i in range(50)]])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, the peak so far

    def hostile_pages():
        for page in range(6):
            yield [{"id": page * 40 + i, "name": "x", **{f"extra_{n}": n * 1.5 + i for n in range(5000)}}
                   for i in range(40)]

    result = load("hostile", hostile_pages())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - baseline) / 1024, "new_columns": len(result.new_columns),
                      "columns": len(result.columns), "left_in_raw": result.fields_left_in_raw,
                      "warnings": result.type_warnings, "written": result.inserted + result.updated}))
""")


def test_thousands_of_new_fields_load_in_bounded_memory_and_stay_in_raw(tmp_path):
    env = {**os.environ, "IP_MAX_NEW_COLUMNS_PER_LOAD": "200", "IP_MAX_COLUMNS_PER_TABLE": "1000",
           "IP_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", HOSTILE_LOAD, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["growth_mb"] < 400, report
    assert report["written"] == 240
    assert report["new_columns"] == 200  # extra_0 .. extra_199
    assert report["left_in_raw"] == 4800
    assert any("4800 field(s) got no typed column" in w and "_raw" in w for w in report["warnings"]), report
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        columns = {row[0] for row in con.execute("DESCRIBE raw_fake.things").fetchall()}
        assert "extra_199" in columns and "extra_200" not in columns and "extra_4999" not in columns
        typed, kept = con.execute(
            "SELECT extra_199, json_extract(_raw, '$.extra_4999')::DOUBLE FROM raw_fake.things WHERE _pk = '41'"
        ).fetchone()
    assert typed == 199 * 1.5 + 1 and kept == 4999 * 1.5 + 1  # nothing the API sent is lost


def _spool(tmp_path: Path, name: str, records: list[dict], max_columns: int | None = None) -> Spool:
    spool = Spool(tmp_path / "spool" / name)
    spool.write(records_to_table(records, source_system="fake", primary_keys=[str(r["id"]) for r in records],
                                 cursors=[None] * len(records), run_id=name, extracted_at=datetime.now(UTC),
                                 first_seq=0, max_columns=max_columns))
    return spool


def _load(warehouse: Warehouse, spool: Spool):
    return warehouse.load_spool(schema="raw_fake", table="things", files=spool.files,
                                state=StreamState("fake", "things", "all", None), run_id="r")


def test_a_batch_builds_at_most_max_columns_and_says_how_many_it_left_out():
    records = [{"id": 1, **{f"f{n}": n for n in range(30)}}]
    table = records_to_table(records, source_system="fake", primary_keys=["1"], cursors=[None], run_id="r",
                             extracted_at=datetime.now(UTC), first_seq=0, max_columns=10)
    fields = [name for name in table.column_names if not name.startswith("_")]
    assert fields == ["id"] + [f"f{n}" for n in range(9)]
    assert table.schema.metadata[FIELDS_LEFT_IN_RAW] == b"21"
    assert '"f29":29' in table.column("_raw")[0].as_py()
    narrow = records_to_table(records[:1], source_system="fake", primary_keys=["1"], cursors=[None], run_id="r",
                              extracted_at=datetime.now(UTC), first_seq=0)
    assert narrow.schema.metadata is None and "f29" in narrow.column_names


def test_new_columns_per_load_and_columns_per_table_are_capped(tmp_path):
    warehouse = Warehouse(str(tmp_path / "w.duckdb"), memory_limit="1GB", load_memory_limit="256MB")
    warehouse.max_new_columns_per_load, warehouse.max_columns_per_table = 3, 6
    first = _load(warehouse, _spool(tmp_path, "a", [{"id": 1, "a": 1, "b": 2}]))
    assert first.fields_left_in_raw == 0 and not first.type_warnings
    grown = _load(warehouse, _spool(tmp_path, "b", [{"id": 2, "a": 1, "b": 2, **{f"n{i}": i for i in range(5)}}]))
    assert grown.new_columns == ["n0", "n1", "n2"] and grown.fields_left_in_raw == 2
    assert "2 field(s) got no typed column" in grown.type_warnings[0]
    full = _load(warehouse, _spool(tmp_path, "c", [{"id": 3, **{f"m{i}": i for i in range(4)}}]))
    assert full.new_columns == [] and full.fields_left_in_raw == 4  # id, a, b, n0..n2: six typed columns
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        names = [row[0] for row in con.execute("DESCRIBE raw_fake.things").fetchall()]
        kept = con.execute("SELECT json_extract(_raw, '$.m3')::INT FROM raw_fake.things WHERE _pk = '3'").fetchone()
    assert [n for n in names if not n.startswith("_")] == ["id", "a", "b", "n0", "n1", "n2"]
    assert kept == (3,)
    # a first load takes up to the table's limit, not only the per-load one
    other = Warehouse(str(tmp_path / "x.duckdb"), memory_limit="1GB", load_memory_limit="256MB")
    other.max_new_columns_per_load, other.max_columns_per_table = 3, 6
    wide = _load(other, _spool(tmp_path, "d", [{"id": 1, **{f"w{i}": i for i in range(8)}}]))
    assert wide.fields_left_in_raw == 3 and len([c for c, _ in wide.columns if not c.startswith("_")]) == 6
