"""End to end: 1,000 concurrent signed deliveries (genuine, duplicated, forged) → exactly the genuine distinct
events in DuckDB after sensor-triggered runs; a receiver killed with SIGKILL mid-burst loses no acknowledged
event; the simulator drives the sandbox and delivers events the receiver accepts."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import stripe
from typer.testing import CliRunner

from integration_pipelines.webhooks.config import SANDBOX_SECRETS, WebhookSecrets
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.simulator import Delivery, Signer, simulate_app
from integration_pipelines.webhooks.testing import make_receiver, scrubbed_environment_names

from .test_webhooks_ingest import Env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STRIPE_SECRET = SANDBOX_SECRETS["stripe_webhook_secret"]


def stripe_event(event_id: str, charge_id: str, refunded: int, secret: str = STRIPE_SECRET) -> Delivery:
    body = json.dumps({"id": event_id, "object": "event", "type": "charge.updated", "data": {"object": {
        "id": charge_id, "object": "charge", "amount": 5000, "amount_refunded": refunded,
        "created": 1773100000}}}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    return Delivery("stripe", "/webhooks/stripe", body, {"stripe-signature": header,
                                                         "content-type": "application/json"})


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_thousand_concurrent_deliveries_yield_exactly_the_genuine_distinct_events(clean_env):
    env = Env(clean_env / "data", batch_files=500)
    receiver, _, config = make_receiver(clean_env / "data")
    signer = Signer(WebhookSecrets(), config)
    rng = random.Random(6)
    genuine: list[Delivery] = []
    for i in range(600):  # 300 charges, each changed twice
        genuine.append(stripe_event(f"evt_{i:04d}", f"ch_{i // 2:04d}", refunded=i % 2))
    for i in range(200):
        genuine.append(signer.sign("shopify", json.dumps({"id": i, "total_price": "10.00"}).encode(),
                                   event_id=f"wh-{i}", topic="orders/updated"))
    forged = [stripe_event(f"evt_forged_{i}", f"ch_forged_{i}", 0, secret="whsec_attacker") for i in range(50)]
    for i in range(50):
        tampered = stripe_event(f"evt_tampered_{i}", f"ch_tampered_{i}", 0)
        tampered.body = tampered.body.replace(b"5000", b"1")
        forged.append(tampered)
    duplicates = rng.sample(genuine, 100)
    deliveries = genuine + forged + duplicates
    rng.shuffle(deliveries)
    assert len(deliveries) == 1000

    with ReceiverServer(receiver) as server, httpx.Client(
            base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=32)) as client:
        def send(delivery: Delivery) -> int:
            return client.post(delivery.path, content=delivery.body, headers=delivery.headers).status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(send, deliveries))
    assert statuses.count(200) == 900 and statuses.count(401) == 100

    runs = env.drain()
    assert 2 <= runs <= 3  # 800 files in batches of at most 500
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_webhooks.events") == [(800, 800)]
    assert env.rows("SELECT count(*) FROM raw_webhooks.events WHERE event_id LIKE '%forged%' "
                    "OR event_id LIKE '%tampered%'") == [(0,)]
    # one row per charge and per order (concurrent deliveries arrive in any order: the last received wins)
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_stripe.charges") == [(300, 300)]
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_shopify.orders") == [(200, 200)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.reliability
def test_killing_the_receiver_mid_burst_loses_no_acknowledged_event(clean_env):
    data = clean_env / "data"
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in scrubbed_environment_names()},
           "IP_DATA_DIR": str(data), "IP_WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    code = "from integration_pipelines.webhooks.cli import webhooks_app; webhooks_app()"
    process = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port)], env=env,
                               cwd=clean_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.1)
        acknowledged: list[str] = []
        lock = threading.Lock()

        def sender(worker: int) -> None:
            with httpx.Client(timeout=5) as client:
                for i in range(10_000):
                    event_id = f"evt_w{worker}_{i}"
                    delivery = stripe_event(event_id, f"ch_{worker}_{i}", 0)
                    try:
                        response = client.post(f"http://127.0.0.1:{port}{delivery.path}", content=delivery.body,
                                               headers=delivery.headers)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        with lock:
                            acknowledged.append(event_id)

        threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        while len(acknowledged) < 150:
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    landed = {p.stem: p for p in (data / "landing" / "stripe").rglob("*.json")}
    assert acknowledged and set(acknowledged) <= set(landed)
    for event_id in acknowledged:  # complete, parseable, the body as sent
        document = json.loads(landed[event_id].read_text())
        assert json.loads(document["body"])["id"] == event_id
    assert not [p for p in (data / "landing").rglob("*") if p.is_file() and p.suffix == ".json"
                and p.stat().st_size == 0]


def test_simulator_sends_signed_events_the_receiver_accepts(clean_env, sandbox_server, sandbox, monkeypatch):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("IP_WEBHOOK_PUBLIC_URL", url)  # the simulator signs Square/HubSpot URLs with it
    receiver, _, _ = make_receiver(clean_env / "data", public_url=url)
    with ReceiverServer(receiver, port=port):
        result = CliRunner().invoke(simulate_app, ["--receiver-url", url, "--sandbox-url", sandbox_server.url,
                                                   "--count", "14", "--interval", "0", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("→ 200") == 14, result.output
    env = Env(clean_env / "data")
    assert env.drain() == 1
    providers = {row[0] for row in env.rows("SELECT DISTINCT provider FROM raw_webhooks.events")}
    assert len(providers) >= 3
    with pytest.raises(ValueError):
        from integration_pipelines.webhooks.simulator import deliver
        deliver(httpx.Client(), "http://example.com", Delivery("stripe", "/webhooks/stripe", b"", {}))
