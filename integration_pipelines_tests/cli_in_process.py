"""The CLI through its own Typer app inside the test process: the same commands, exit codes, stdout and stderr
without a process per call. A process costs seconds of imports, and tests that run a command a dozen times spent
minutes on them; each such test keeps at least one call through the real entry point (a subprocess)."""

from __future__ import annotations

import subprocess

import pytest


def run_in_process(args: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> subprocess.CompletedProcess:
    """Run `integration-pipelines ARGS` with `env` added to the environment (undone with the test's monkeypatch).
    The caller's working folder should be the test's own (`monkeypatch.chdir`): the CLI reads `.env` there."""
    from typer.testing import CliRunner

    from integration_pipelines.cli import app

    with monkeypatch.context() as patch:
        patch.setenv("COLUMNS", "200")
        for name, value in env.items():
            patch.setenv(name, value)
        result = CliRunner().invoke(app, args)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
