"""`integration-pipelines query` and `tables` as a user runs them, including while a run holds the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from .cli_in_process import run_in_process

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

CLI = [sys.executable, "-m", "integration_pipelines.cli"]

WRITER = textwrap.dedent("""
    import duckdb, sys
    con = duckdb.connect(sys.argv[1])
    con.execute("BEGIN")
    con.execute("INSERT INTO raw_demo.things VALUES (2, 'written while a query waited')")
    print("locked", flush=True)
    sys.stdin.readline()  # holds the file until the test says so: no race with how fast the CLI starts
    con.execute("COMMIT")
    con.close()
    print("writer done", flush=True)
""")


def make_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA raw_demo")
        con.execute("CREATE TABLE raw_demo.things (id INT, name VARCHAR)")
        con.execute("INSERT INTO raw_demo.things VALUES (1, 'first')")


def run_cli(args: list[str], warehouse: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "IP_WAREHOUSE": str(warehouse), "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start_writer(warehouse: Path) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(warehouse)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "locked"
    return writer


def test_query_waits_for_a_writing_process_and_the_writer_is_unaffected(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    make_warehouse(warehouse)
    writer = start_writer(warehouse)
    env = {**os.environ, "IP_WAREHOUSE": str(warehouse), "COLUMNS": "200"}
    query = subprocess.Popen([*CLI, "query", "SELECT count(*) AS n FROM raw_demo.things", "--format", "json"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = query.stderr.readline()  # the CLI says it waits (however long it took to start) ...
    writer_out, _ = writer.communicate(input="commit\n", timeout=60)  # ... and only then the writer commits
    stdout, stderr = query.communicate(timeout=120)
    assert query.returncode == 0, waiting + stderr
    assert "locked by another process; waiting" in (waiting + stderr).replace("\n", " ")
    assert json.loads(stdout) == [{"n": 2}]  # it read after the writer committed
    assert writer.returncode == 0 and "writer done" in writer_out


def test_query_gives_up_clearly_after_its_timeout(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    make_warehouse(warehouse)
    writer = start_writer(warehouse)  # holds the file for as long as the CLI runs
    result = run_cli(["query", "SELECT 1", "--timeout", "0.5"], warehouse)
    writer.communicate(input="commit\n", timeout=60)
    assert result.returncode == 2 and "IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS" in result.stderr.replace("\n", ""), (
        result.returncode, result.stdout, result.stderr)
    assert writer.returncode == 0


def test_formats_tables_and_errors(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    make_warehouse(warehouse)
    table = run_cli(["query", "SELECT * FROM raw_demo.things"], warehouse)
    assert table.returncode == 0 and "first" in table.stdout and "1 row(s)" in table.stdout
    csv = run_cli(["query", "SELECT id, name FROM raw_demo.things", "--format", "csv"], warehouse)
    assert csv.stdout.splitlines() == ["id,name", "1,first"]
    parquet = tmp_path / "out.parquet"
    export = run_cli(["query", "SELECT * FROM raw_demo.things", "--format", "parquet", "--output", str(parquet)],
                     warehouse)
    assert export.returncode == 0 and duckdb.sql(f"SELECT count(*) FROM '{parquet}'").fetchall()[0][0] == 1
    listing = run_cli(["tables"], warehouse)
    assert listing.returncode == 0 and "raw_demo" in listing.stdout and "things" in listing.stdout
    bad = run_cli(["query", "SELECT nope"], warehouse)
    assert bad.returncode == 1 and "nope" in bad.stderr
    readonly = run_cli(["query", "DROP TABLE raw_demo.things"], warehouse)
    assert readonly.returncode == 2 and "only reads" in readonly.stderr.lower()
    missing = run_cli(["query", "SELECT 1"], tmp_path / "absent.duckdb")
    assert missing.returncode == 2 and "no warehouse" in missing.stderr.lower()


def test_tables_counts_are_whole_numbers_and_staging_views_read_from_another_session(tmp_path):
    from integration_pipelines.warehouse.models import build_all

    warehouse = tmp_path / "warehouse.duckdb"
    make_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as con:  # a core build, as the `core` asset runs it
        con.execute("CREATE SCHEMA raw_stripe")
        con.execute("CREATE TABLE raw_stripe.charges (_pk VARCHAR, _raw VARCHAR, _extracted_at TIMESTAMPTZ)")
        con.execute("""INSERT INTO raw_stripe.charges VALUES ('ch_1', '{"id": "ch_1", "amount": 1250,
                       "currency": "usd", "created": 1773100000, "amount_refunded": 0, "status": "succeeded"}',
                       now())""")
        build_all(con, [("stripe", "payments")])
    result = run_cli(["tables", "--timeout", "5"], warehouse)
    assert result.returncode == 0, result.stderr
    assert "cannot be read" not in result.stderr
    row = next(line for line in result.stdout.splitlines() if "things" in line)
    assert "│ 1 " in row and "1.0" not in row
    query = run_cli(["query", "SELECT source_id, amount_minor FROM staging.payments", "--format", "csv"], warehouse)
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines() == ["source_id,amount_minor", "ch_1,1250"]


def test_sync_list_shows_every_name_whole_on_a_narrow_terminal(tmp_path):
    from integration_pipelines.syncs.registry import discover_syncs

    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([*CLI, "sync", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for spec in discover_syncs():
        assert spec.name in result.stdout


def test_roi_on_a_folder_without_a_warehouse_says_what_to_do(tmp_path):
    result = run_cli(["roi", "--timeout", "5"], tmp_path / "missing" / "warehouse.duckdb")
    assert result.returncode == 2
    assert "There is no warehouse at" in result.stderr and "Traceback" not in result.stderr


def _snapshot(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute("SELECT database_name, schema_name, table_name FROM duckdb_tables() "
                             "ORDER BY ALL").fetchall()
        rows = con.execute("SELECT * FROM raw_demo.things ORDER BY id").fetchall()
    return tables + rows


def test_query_refuses_writes_files_extensions_and_settings(tmp_path, monkeypatch):
    """Every way out of "read the warehouse" is refused in one paragraph with exit 2, and nothing changes."""
    warehouse = tmp_path / "w.duckdb"
    make_warehouse(warehouse)
    before = _snapshot(warehouse)
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    attempts = [
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        "ATTACH ':memory:' AS scratch",
        f"COPY raw_demo.things TO '{tmp_path / 'copied.csv'}'",
        f"COPY (SELECT * FROM raw_demo.things) TO '{tmp_path / 'copied.parquet'}' (FORMAT parquet)",
        f"EXPORT DATABASE '{tmp_path / 'exported'}'",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM '{secret}'",
        f"SELECT * FROM read_parquet('{tmp_path}/*.parquet')",
        "SELECT * FROM read_json('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "DETACH w",
        "USE raw_demo",
        "SET enable_external_access = true",
        "SELECT 1; SET lock_configuration = false",
        "DROP TABLE raw_demo.things",
        "INSERT INTO raw_demo.things VALUES (9, 'x')",
        "CREATE TABLE raw_demo.more AS SELECT 1",
    ]
    monkeypatch.chdir(tmp_path)  # no `.env` of the checkout in this process
    for number, sql in enumerate(attempts):
        args = ["query", sql, "--timeout", "5"]
        result = run_cli(args, warehouse) if number == 0 else run_in_process(args, monkeypatch,
                                                                               IP_WAREHOUSE=str(warehouse))
        assert result.returncode == 2, (sql, result.returncode, result.stderr)
        message = " ".join(result.stderr.split())
        assert "only reads the warehouse" in message and "--output" in message, (sql, message)
        assert "Traceback" not in result.stderr
    assert _snapshot(warehouse) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv", "w.duckdb"]


def test_query_reads_and_output_still_writes_the_file(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    make_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE raw_demo.things ADD COLUMN seen_at TIMESTAMPTZ")
        con.execute("ALTER TABLE raw_demo.things ADD COLUMN amount DECIMAL(10, 2)")
        con.execute("UPDATE raw_demo.things SET seen_at = TIMESTAMPTZ '2026-03-01 10:00:00+00', amount = 12.5")
    plain = run_cli(["query", "SELECT id, name FROM raw_demo.things WHERE name LIKE 'f%'", "--format", "json"],
                    warehouse)
    assert plain.returncode == 0 and json.loads(plain.stdout) == [{"id": 1, "name": "first"}]
    described = run_cli(["query", "DESCRIBE raw_demo.things"], warehouse)
    assert described.returncode == 0 and "amount" in described.stdout
    csv = tmp_path / "x.csv"
    written = run_cli(["query", "SELECT id, name FROM raw_demo.things", "--format", "csv", "--output", str(csv)],
                      warehouse)
    assert written.returncode == 0, written.stderr
    assert "wrote 1 row(s)" in written.stderr
    assert csv.read_text().splitlines() == ["id,name", "1,first"]
    as_json = tmp_path / "x.json"
    assert run_cli(["query", "SELECT * FROM raw_demo.things", "--format", "json", "--output", str(as_json)],
                   warehouse).returncode == 0
    [row] = json.loads(as_json.read_text())
    assert row["name"] == "first" and row["amount"] == 12.5
    assert row["seen_at"].replace("T", " ").startswith("2026-03-01 10:00:00")
    empty = tmp_path / "empty.parquet"
    assert run_cli(["query", "SELECT * FROM raw_demo.things WHERE false", "--format", "parquet", "--output",
                    str(empty)], warehouse).returncode == 0
    assert duckdb.sql(f"SELECT count(*) FROM '{empty}'").fetchall()[0][0] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
