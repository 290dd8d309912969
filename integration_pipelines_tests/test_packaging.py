"""The package as a user installs it: build the sdist and the wheel (the wheel from the sdist, as `uv build` does,
so a file missing from either shows), install the wheel with the locked dependencies into a fresh venv, and run
`integration-pipelines --help` and `integration-pipelines demo` from an empty folder, far from this checkout.

The demo check stops at "the UI and the sandbox answer and the code location loaded": its first catch-up run (a
30-day backfill of every system) is skipped with the data folder's `.caught-up` marker, since the other slow tests
already run the pipelines; what a wheel could lose is a file, and `test_wheel_holds_every_data_file` compares the
wheel with the package's files one by one. Also here, fast: the lock matches pyproject.toml, and the Makefile
bootstraps the uv version the lock pins.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from .dagster_dev import PROJECT_ROOT, clean_environment, free_port

UV = [sys.executable, "-m", "uv"]  # uv is in the dev extra (and bootstrapped by the Makefile)
PACKAGE = "integration_pipelines"
DEMO_BOOT_TIMEOUT = 300.0  # dagster dev boots in 20-60 s on a quiet 2-core machine; seen 200 s with load 18


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _env(**extra: str) -> dict[str, str]:
    """Nothing of this checkout's venv or the developer's configuration, and no editable install on the path."""
    env = clean_environment()
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
        env.pop(name, None)
    return {**env, **extra}


def _locked_version(name: str) -> str:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == name}
    assert len(versions) == 1, f"uv.lock pins {name} at {versions or 'no version'}"
    return versions.pop()


# -- the lock (fast) -----------------------------------------------------------------------------------------------


def test_the_makefile_bootstraps_the_uv_version_the_lock_pins():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert pinned, "the Makefile names no UV_VERSION"
    assert pinned.group(1) == _locked_version("uv"), "bump UV_VERSION in the Makefile with uv in uv.lock"


def test_the_lock_matches_pyproject():
    """`make install` syncs with --frozen (exactly the lock, never re-resolved): a dependency added to
    pyproject.toml without `make lock` would silently not be installed. This catches it."""
    _run([*UV, "lock", "--check"], cwd=PROJECT_ROOT, env=_env(), timeout=120)


# -- the wheel (slow) ----------------------------------------------------------------------------------------------


@dataclass
class WheelInstall:
    dist: Path
    wheel: Path
    sdist: Path
    venv: Path
    home: Path  # an empty folder outside the checkout, the working folder of every command

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> WheelInstall:
    root = tmp_path_factory.mktemp("packaging")
    dist, venv, home = root / "dist", root / "venv", root / "home"
    home.mkdir()
    env = _env()
    started = time.monotonic()
    _run([*UV, "build", "--out-dir", str(dist), str(PROJECT_ROOT)], cwd=root, env=env, timeout=600)
    built = time.monotonic()
    (wheel,) = dist.glob(f"{PACKAGE}-*.whl")
    (sdist,) = dist.glob(f"{PACKAGE}-*.tar.gz")
    # the runtime dependencies exactly as locked, with their hashes, then the wheel alone
    requirements = root / "requirements.txt"
    _run([*UV, "export", "--frozen", "--no-emit-project", "--format", "requirements-txt", "--output-file",
          str(requirements)], cwd=PROJECT_ROOT, env=env)
    _run([*UV, "venv", "--python", sys.executable, str(venv)], cwd=root, env=env)
    python = str(venv / "bin" / "python")
    _run([*UV, "pip", "install", "--python", python, "--require-hashes", "-r", str(requirements)], cwd=root,
         env=env, timeout=600)
    _run([*UV, "pip", "install", "--python", python, "--no-deps", str(wheel)], cwd=root, env=env)
    print(f"built sdist+wheel in {built - started:.1f} s, installed in {time.monotonic() - built:.1f} s")
    return WheelInstall(dist, wheel, sdist, venv, home)


def _package_files() -> set[str]:
    """Every file of the package a checkout holds, as paths inside the wheel (git's list where there is one)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", PACKAGE], cwd=PROJECT_ROOT, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / PACKAGE).rglob("*") if p.is_file()]
    return {name for name in listed
            if name and "__pycache__" not in name and not name.endswith(".pyc")
            and (PROJECT_ROOT / name).is_file()}


@pytest.mark.slow
def test_wheel_holds_every_data_file(wheel_install: WheelInstall):
    in_wheel = set(zipfile.ZipFile(wheel_install.wheel).namelist())
    missing = sorted(_package_files() - in_wheel)
    assert not missing, f"not in the wheel (add the type to [tool.setuptools.package-data]): {missing}"
    for needed in (f"{PACKAGE}/deploy/dagster.yaml", f"{PACKAGE}/deploy/workspace.yaml"):
        assert needed in in_wheel
    assert not [n for n in in_wheel if n.startswith(f"{PACKAGE}_tests/")], "the tests are not shipped"
    with tarfile.open(wheel_install.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", f"{PACKAGE}/deploy/dagster.yaml"} <= names
    # the wheel's metadata carries the entry point and the locked dagster's range
    with zipfile.ZipFile(wheel_install.wheel) as wheel:
        (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        assert f"integration-pipelines = {PACKAGE}.cli:app" in wheel.read(entry_points).decode()


@pytest.mark.slow
def test_help_from_the_wheel(wheel_install: WheelInstall):
    env = _env()
    where = _run([str(wheel_install.bin / "python"), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
                 cwd=wheel_install.home, env=env).stdout.strip()
    assert Path(where).is_relative_to(wheel_install.venv), f"imported from {where}, not from the wheel"
    shown = _run([str(wheel_install.bin / "integration-pipelines"), "--help"], cwd=wheel_install.home,
                 env={**env, "COLUMNS": "200"}).stdout
    for command in ("demo", "sandbox", "sync", "webhooks", "query"):
        assert re.search(rf"\b{command}\b", shown), f"`{command}` not in --help:\n{shown}"


def _from_the_wheel_venv(venv: Path) -> list[psutil.Process]:
    """Every live process started from the wheel's venv (its python, dagster, uvicorn ... all live there)."""
    found = []
    for process in psutil.process_iter(["pid", "exe", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            text = " ".join([process.info["exe"] or "", *(process.info["cmdline"] or [])])
            if str(venv) in text and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


@contextlib.contextmanager
def _demo(install: WheelInstall, ports: dict[str, int], data: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = _env(PYTHONUNBUFFERED="1", COLUMNS="200")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(install.bin / "integration-pipelines"), "demo", "--port", str(ports["ui"]), "--sandbox-port",
             str(ports["sandbox"]), "--webhook-port", str(ports["webhooks"]), "--data-dir", str(data)],
            cwd=install.home, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        yield process
    finally:  # whatever happened, nothing of the wheel's venv outlives the test
        leftovers = _from_the_wheel_venv(install.venv)
        if process.poll() is None or leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            for leftover in leftovers:
                with contextlib.suppress(psutil.Error):
                    leftover.kill()
            process.wait(timeout=30)


def _wait_for(what: str, ready, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with {process.returncode} before {what}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


@pytest.mark.slow
@pytest.mark.xdist_group("stack")  # meant to share one worker: see the Makefile
@pytest.mark.timeout(900)
def test_demo_from_the_wheel_in_an_empty_folder(wheel_install: WheelInstall):
    ports = {"ui": free_port(), "sandbox": free_port(), "webhooks": free_port()}
    assert len(set(ports.values())) == 3
    data = wheel_install.home.parent / "demo-data"
    data.mkdir()
    (data / ".caught-up").write_text("skipped by test_packaging\n")  # no 30-day catch-up run (module docstring)
    log = wheel_install.home.parent / "demo.log"
    ui = f"http://127.0.0.1:{ports['ui']}"
    started = time.monotonic()
    with _demo(wheel_install, ports, data, log) as demo:
        _wait_for("'Dagster UI ready'", lambda: "Dagster UI ready" in log.read_text(errors="replace"), demo, log,
                  DEMO_BOOT_TIMEOUT)
        booted = time.monotonic() - started
        assert httpx.get(f"{ui}/server_info", timeout=10).status_code == 200

        def location_loaded() -> bool:
            body = httpx.post(f"{ui}/graphql", json={"query": LOCATIONS}, timeout=30).json()
            entries = body["data"]["workspaceOrError"]["locationEntries"]
            if not entries or entries[0]["loadStatus"] != "LOADED":
                return False
            loaded = entries[0]["locationOrLoadError"]
            assert loaded["__typename"] == "RepositoryLocation", f"the code location failed to load: {loaded}"
            return True

        _wait_for("loaded code location", location_loaded, demo, log, 120)
        sandbox = f"http://127.0.0.1:{ports['sandbox']}"
        health = httpx.get(f"{sandbox}/_sandbox/health", timeout=10).json()
        assert health["ok"] and "stripe" in health["systems"]
        assert httpx.get(f"{sandbox}/_sandbox/stripe/customers", timeout=30).json(), "the sandbox world is empty"
        assert httpx.get(f"http://127.0.0.1:{ports['webhooks']}/healthz", timeout=10).status_code == 200
        # the instance config the demo copied is the packaged one, and dagster runs from the wheel's venv
        packaged = wheel_install.venv.glob(f"lib/python*/site-packages/{PACKAGE}/deploy/dagster.yaml")
        assert (data / "dagster" / "dagster.yaml").read_bytes() == next(packaged).read_bytes()
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 4, f"expected sandbox, receiver, simulator and dagster dev: {children}"
        assert not list(wheel_install.home.iterdir()), "the demo wrote into its working folder, not --data-dir"

        stopping = time.monotonic()
        demo.send_signal(signal.SIGTERM)  # as `kill` or a service manager stops it
        demo.wait(timeout=90)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"outlived the demo's SIGTERM: {alive}"
        assert not _from_the_wheel_venv(wheel_install.venv), "a process of the wheel's venv outlived the demo"
    print(f"demo from the wheel: UI ready after {booted:.1f} s, stopped in {time.monotonic() - stopping:.1f} s")
    assert "Stopping the demo" in log.read_text(errors="replace")


# -- another Python ------------------------------------------------------------------------------------------------


def _other_pythons() -> dict[tuple[int, int], str]:
    """CPython 3.11+ interpreters on this machine other than the running one (pyenv's, or python3.N on PATH)."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    candidates += [found for n in range(11, 20) if (found := shutil.which(f"python3.{n}"))]
    pythons: dict[tuple[int, int], str] = {}
    for candidate in candidates:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            answer = subprocess.run([candidate, "-c", "import sys; print(*sys.version_info[:2])"],
                                    capture_output=True, text=True, timeout=30, env=_env())
            if answer.returncode == 0:
                version = tuple(int(part) for part in answer.stdout.split())
                if version >= (3, 11) and version != sys.version_info[:2]:
                    pythons.setdefault(version, candidate)
    return pythons


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_on_the_newest_other_python(wheel_install: WheelInstall):
    """requires-python is >=3.11 and CI runs 3.11: the newest other CPython the machine has (none can be
    downloaded here) gets the wheel with the locked dependencies, and must load every definition and show --help."""
    pythons = _other_pythons()
    if not pythons:
        pytest.skip(f"no CPython 3.11+ besides {sys.version_info[0]}.{sys.version_info[1]} on this machine")
    version, interpreter = max(pythons.items())
    venv = wheel_install.home.parent / f"venv-{version[0]}.{version[1]}"
    env = _env()
    requirements = wheel_install.home.parent / "requirements.txt"  # exported by the fixture
    _run([*UV, "venv", "--python", interpreter, str(venv)], cwd=wheel_install.home.parent, env=env)
    python = str(venv / "bin" / "python")
    _run([*UV, "pip", "install", "--python", python, "--require-hashes", "-r", str(requirements)],
         cwd=wheel_install.home.parent, env=env, timeout=600)
    _run([*UV, "pip", "install", "--python", python, "--no-deps", str(wheel_install.wheel)],
         cwd=wheel_install.home.parent, env=env)
    count = _run([python, "-c", f"from {PACKAGE}.definitions import defs; "
                  "print(len(list(defs.resolve_all_asset_keys())))"], cwd=wheel_install.home, env=env)
    from integration_pipelines.definitions import defs

    assert int(count.stdout.split()[-1]) == len(list(defs.resolve_all_asset_keys()))
    shown = _run([str(venv / "bin" / "integration-pipelines"), "--help"], cwd=wheel_install.home, env=env).stdout
    assert "demo" in shown
