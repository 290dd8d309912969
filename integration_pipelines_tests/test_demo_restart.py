"""A restarted demo starts on a new sandbox world, so the last demo's data folder is set aside, not reused: its
sync ledgers say "synced" for records the new world never had, and the syncs would never write to it (seen: a
restarted demo created no milestone invoice, no expense and no purchase in the new sandbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_pipelines.cli import SANDBOX_WORLD_MARKER, _set_aside_previous_world
from integration_pipelines.webhooks.testing import scrubbed_environment_names


@pytest.fixture(autouse=True)
def _sandbox_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)


def _last_demo(root: Path) -> Path:
    data = root / ".data"
    (data / "dagster").mkdir(parents=True)
    (data / "warehouse.duckdb").write_text("the last world's warehouse")
    (data / SANDBOX_WORLD_MARKER).write_text("tidy world started 2026-12-07T23:28:00+00:00\n")
    return data


def test_the_last_demos_folder_is_moved_aside_and_one_earlier_copy_replaced(tmp_path: Path) -> None:
    data = _last_demo(tmp_path)
    (tmp_path / ".data.previous").mkdir()
    (tmp_path / ".data.previous" / "older").write_text("the world before")
    _set_aside_previous_world(data)
    assert not data.exists()
    assert (tmp_path / ".data.previous" / "warehouse.duckdb").read_text() == "the last world's warehouse"
    assert not (tmp_path / ".data.previous" / "older").exists()


def test_a_folder_no_demo_sandbox_wrote_is_left_alone(tmp_path: Path) -> None:
    data = _last_demo(tmp_path)
    (data / SANDBOX_WORLD_MARKER).unlink()  # e.g. a test's or an operator's own folder
    _set_aside_previous_world(data)
    assert (data / "warehouse.duckdb").exists() and not (tmp_path / ".data.previous").exists()


def test_kept_when_a_system_talks_to_a_real_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its ledger is what stops a second write to the real system: never moved away then."""
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_FAKE_not_a_real_key_0000000000")
    data = _last_demo(tmp_path)
    _set_aside_previous_world(data)
    assert (data / "warehouse.duckdb").exists() and not (tmp_path / ".data.previous").exists()
    said = " ".join(capsys.readouterr().out.split())
    assert "stripe use real credentials" in said and "rk_test" not in said
