"""An S3-compatible server on loopback for tests: moto's, in its own process, one request at a time.

Why one at a time: moto checks `If-None-Match: *` / `If-Match` and then writes, with no lock between the two, so
its threaded server can let two conditional writes to one key both succeed (seen here: two claimers each claimed
the same event). AWS S3, MinIO, R2 and Ceph apply a conditional write atomically; a lock around each request
gives moto the same guarantee. Why its own process: in a thread of the test process it would share one GIL
with the test's own threads and be several times slower.

    with s3_server() as endpoint:          # "http://127.0.0.1:<port>"
        ...                                # AWS_ENDPOINT_URL=endpoint, any key id and secret

It answers every AWS service moto emulates (the request's signature names the service): the secrets manager
tests use it too. `python -m integration_pipelines_tests.s3_server HOST PORT` runs it in the foreground.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def serve(host: str, port: int) -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, one_at_a_time, threaded=True)


@contextmanager
def s3_server(host: str = "127.0.0.1", start_timeout: float = 60.0) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "integration_pipelines_tests.s3_server", host, str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=Path(__file__).resolve().parent.parent)  # a test may have changed folder
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the S3 server did not start on {endpoint}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
