"""Real PostgreSQL and Redis servers for the tests, from the operating system's packages (Debian's `postgresql`
and `redis-server`, which .ci/run installs), each on a free loopback port with its files in a fresh temporary
folder, stopped and removed afterwards. PYTEST_DONT_REWRITE.

PostgreSQL refuses to run as root: as root (CI, this project's machines) its commands run as the `postgres` user the
Debian package creates (`runuser -u postgres --`), in a folder that user owns; as anyone else they run as that user.

`require_services()` says what is missing: a test fails on it in CI (CI set), so a CI machine without the packages
never passes by skipping, and skips on a developer's machine without them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_OWNER = "postgres"  # the system user of Debian's postgresql package


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, else their folder on PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0)
    for folder in reversed(versions):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and shutil.which("initdb") else None


def redis_server() -> Path | None:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file()
                                             else None)
    return Path(found) if found else None


def require_services() -> tuple[Path, Path]:
    """PostgreSQL's bin folder and redis-server; fails in CI when either is missing, else skips."""
    pg, redis = postgres_bin(), redis_server()
    missing = [name for name, found in (("postgresql (initdb, pg_ctl)", pg), ("redis-server", redis)) if not found]
    if os.geteuid() == 0 and pg is not None:
        try:
            pwd.getpwnam(PG_OWNER)
        except KeyError:
            missing.append(f"the `{PG_OWNER}` user (PostgreSQL does not run as root)")
    if missing:
        message = (f"{' and '.join(missing)} not found: install Debian's packages "
                   "(`apt-get install postgresql redis-server`, as .ci/run does)")
        if in_ci():
            pytest.fail(f"CI must run the production-profile tests: {message}", pytrace=False)
        pytest.skip(message)
    assert pg is not None and redis is not None
    return pg, redis


def _wait(check, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} did not come up within {timeout:.0f} s ({last!r}):\n{tail}")


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=database or self.database, connect_timeout=5)

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


@contextlib.contextmanager
def postgres_server(bin_dir: Path, database: str = "dagster", user: str = "dagster") -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own (initdb), password-authenticated on 127.0.0.1, holding `database`."""
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", PG_OWNER, "--"] if as_root else []
    # not under pytest's tmp_path: its root folder is private to the user running the tests
    root = Path(tempfile.mkdtemp(prefix="ip-pg-"))
    data, log, password_file = root / "data", root / "postgres.log", root / "password"
    password = secrets.token_urlsafe(16)
    password_file.write_text(password + "\n")
    if as_root:
        owner = pwd.getpwnam(PG_OWNER)
        for path in (root, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    started = False
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={password_file}",
                        "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        password_file.unlink()
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off"
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                        "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
        started = True
        server = Postgres("127.0.0.1", port, user, password, database)
        with contextlib.closing(server.connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{database}"')
        yield server
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(f"PostgreSQL: {exc.cmd} exited with {exc.returncode}:\n"
                             f"{exc.stderr.decode(errors='replace')}\n{tail}") from exc
    finally:
        if started:
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60",
                            "stop"], capture_output=True, timeout=90)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    host: str
    port: int
    password: str

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"


@contextlib.contextmanager
def redis_server_running(binary: Path, folder: Path) -> Iterator[Redis]:
    """redis-server on 127.0.0.1 with a password, keeping nothing on disk; stopped (and waited for) afterwards."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    port, password = free_port(), secrets.token_urlsafe(16)
    config = folder / "redis.conf"  # the password in a file of the test's own, not on the command line
    config.write_text(f"port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave \"\"\nappendonly no\n"
                      f"dir {folder}\nlogfile {folder / 'redis.log'}\n")
    config.chmod(0o600)
    process = subprocess.Popen([str(binary), str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Redis("127.0.0.1", port, password)
        client = redis.Redis(host=server.host, port=port, password=password, socket_timeout=2)

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited with {process.returncode}")
            return bool(client.ping())

        _wait(up, "redis-server", 30, folder / "redis.log")
        client.close()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
