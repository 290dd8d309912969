"""Run each competitor in its own child process and measure it from outside: wall time, and the child's own
CPU time and peak RSS from `wait4` (the kernel's rusage of that child and the children it waited for), so one
competitor's CPU and memory never bleed into another's figure, nor the server's into the client's."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULT_PREFIX = "RESULT "
RSS_CAP_MB = float(os.environ.get("BENCH_RSS_CAP_MB", "8192"))  # a competitor above this is killed, not waited for


class WorkerFailed(RuntimeError):
    pass


@dataclass
class Measured:
    name: str
    wall: float  # seconds, process start to exit (interpreter start and imports included)
    peak_rss_mb: float
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cpu_seconds: float = float("nan")  # user + system of the child (all its threads), from wait4's rusage


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("IP_", "STRIPE_", "DAGSTER_")) or k.endswith("_WEBHOOK_SECRET"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_worker(name: str, args: dict[str, Any], *, label: str | None = None, timeout: float = 1800,
               env: dict[str, str] | None = None, cwd: Path | None = None, log_dir: Path) -> Measured:
    """`python -m benchmarks.workers <name> <json args>` in a child; the child prints `RESULT {json}`."""
    label = label or name
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / f"{label.replace('/', '_').replace(' ', '_')}.out"
    err_path = out_path.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([PYTHON, "-m", "benchmarks.workers", name, json.dumps(args)], stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, env=_env(env), cwd=cwd or ROOT,
                                start_new_session=True)
        deadline = started + timeout
        status, usage, killed = 0, None, ""
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _tree_rss_mb(proc.pid)
            if rss > RSS_CAP_MB:
                killed = f"killed at {rss / 1024:.1f} GB RSS after {time.perf_counter() - started:.0f} s (cap " \
                         f"{RSS_CAP_MB / 1024:.0f} GB)"
            elif time.perf_counter() > deadline:
                killed = f"killed after the {timeout:.0f} s time limit"
            if killed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024 if usage else float("nan")  # Linux: KiB
    cpu = usage.ru_utime + usage.ru_stime if usage else float("nan")
    text = out_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-12:]
        reason = killed or f"exit {proc.returncode}"
        return Measured(label, wall, peak, {}, f"{reason}: " + " | ".join(tail)[-1500:], cpu)
    return Measured(label, wall, peak, json.loads(lines[-1][len(RESULT_PREFIX):]), cpu_seconds=cpu)


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return 0.0


class ServerProcess:
    """A server in its own process (so its CPU and memory are not the client's). It prints `PORT <n>` (then
    optional `key=value` facts about itself) once listening and exits when its stdin closes; `stop()` returns
    its own peak RSS (MB) from `wait4`; `cpu_seconds()` reads its CPU time so far, to charge the server's share
    of each competitor's run to the server and not to the competitor."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen([PYTHON, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     env=_env(env), cwd=ROOT, start_new_session=True)
        line = self.proc.stdout.readline().decode().strip() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{' '.join(argv)} did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.info = dict(word.split("=", 1) for word in line.split()[2:] if "=" in word)
        self.peak_rss_mb = float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (its threads included)."""
        import psutil

        try:
            times = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return float("nan")
        return times.user + times.system

    def get_json(self, path: str) -> dict[str, Any]:
        """One GET on the server's own bookkeeping endpoint (`/_bench/...`), outside any timed run (urllib, so
        the runner does not grow by httpx's imports: children's ru_maxrss starts at the runner's RSS at fork)."""
        from urllib.request import urlopen

        with urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> float:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                if self.proc.stdin:
                    self.proc.stdin.close()  # its watchdog exits on EOF
            deadline = time.monotonic() + 15
            while True:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(self.proc.pid, 0)
                    break
                time.sleep(0.02)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.peak_rss_mb = usage.ru_maxrss / 1024
            if self.log is not subprocess.DEVNULL:
                self.log.close()
        return self.peak_rss_mb

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stripe_server(records: int, max_seconds: float = 3600) -> ServerProcess:
    """The cached synthetic Stripe list endpoint (benchmarks/synthetic_stripe.py) serving `records` charges;
    it returns once every page is rendered and mapped, so the cache's build is never inside a timed run."""
    return ServerProcess(["-m", "benchmarks.synthetic_stripe", "--records", str(records), "--max-seconds",
                          str(max_seconds)])


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ip-bench-{prefix}-"))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    packages = ["integration_pipelines", "dagster", "duckdb", "pyarrow", "httpx", "uvicorn", "starlette", "dlt"]
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "memory": memory,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "load average at start": load,
        "packages": ", ".join(f"{p} {_version(p)}" for p in packages),
    }
