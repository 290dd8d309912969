"""A run's local spool of Parquet batches.

Pages stream into bounded Arrow batches that are written here as they fill, so memory stays flat however long
the stream; the warehouse then loads the whole spool in one short transaction, so a failure mid-read commits
nothing and the DuckDB write lock is held for seconds, not for the length of an API crawl.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if directory.exists():
            shutil.rmtree(directory)  # leftovers of a crashed attempt of this same run step
        directory.mkdir(parents=True)
        self.files: list[Path] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        path = self.directory / f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        self.files.append(path)
        self.rows += table.num_rows

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
