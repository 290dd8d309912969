"""The receiver over real HTTP on 127.0.0.1: every provider's valid request lands exactly one file; every bad
one (tampered, wrong secret, stale/future, missing headers, wrong URL, non-JSON, oversized) gets its 4xx and
leaves nothing. Stripe and Standard Webhooks signatures come from the vendors' own libraries."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import standardwebhooks
import stripe
from hubspot.utils.signature import Signature

from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.connectors.runtime import credential_variables
from integration_pipelines.webhooks.config import (
    SANDBOX_SALESFORCE_ORG_IDS,
    SANDBOX_SECRETS,
    WebhookSecrets,
    WebhookSettings,
    provider_states,
)
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.simulator import Delivery, Signer
from integration_pipelines.webhooks.testing import make_receiver, scrubbed_environment_names

PUBLIC_URL = "https://hooks.example.test/base"  # what the vendors sign; the app itself listens elsewhere
STRIPE_SECRET = SANDBOX_SECRETS["stripe_webhook_secret"]
STANDARD_SECRET = SANDBOX_SECRETS["standard_webhook_secret"]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReceiverServer]:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    receiver, _, _ = make_receiver(tmp_path / "store", PUBLIC_URL, max_body_bytes=64 * 1024)
    with ReceiverServer(receiver) as running:
        yield running


def landed(root: Path) -> list[Path]:
    return sorted((root / "landing").rglob("*.json")) if (root / "landing").exists() else []


def post(server: ReceiverServer, delivery: Delivery) -> httpx.Response:
    return httpx.post(server.url + delivery.path, content=delivery.body, headers=delivery.headers, timeout=10)


def signer(**secrets: str) -> Signer:
    _receiver, _, config = make_receiver(Path("/nonexistent"), PUBLIC_URL)
    return Signer(WebhookSecrets(**secrets), config)  # type: ignore[arg-type]


def stripe_delivery(event_id: str = "evt_1", secret: str = STRIPE_SECRET, timestamp: int | None = None,
                    body: bytes | None = None) -> Delivery:
    body = body or json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded",
                               "data": {"object": {"id": "ch_1", "object": "charge", "amount": 500}}}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp)
    return Delivery("stripe", "/webhooks/stripe", body, {"stripe-signature": header,
                                                         "content-type": "application/json"})


def standard_delivery(msg_id: str = "msg_1", secret: str = STANDARD_SECRET, when: datetime | None = None,
                      body: bytes | None = None) -> Delivery:
    body = body or json.dumps({"type": "invoice.paid", "timestamp": "2026-03-10T00:00:00Z",
                               "data": {"id": "inv_1"}}).encode()
    when = when or datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body.decode())
    return Delivery("standard", "/webhooks/standard", body, {
        "webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature,
        "content-type": "application/json"})


def hubspot_delivery(secret: str = SANDBOX_SECRETS["hubspot_webhook_secret"], url: str = PUBLIC_URL,
                     millis: int | None = None, body: bytes | None = None) -> Delivery:
    body = body or json.dumps([{"eventId": 101, "subscriptionType": "contact.creation", "objectId": 5,
                                "portalId": 1, "occurredAt": 1}]).encode()
    stamp = str(millis if millis is not None else int(time.time() * 1000))
    signature = Signature.get_signature(secret, body.decode(), "v3", url + "/webhooks/hubspot", "POST", stamp)
    return Delivery("hubspot", "/webhooks/hubspot", body, {
        "x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": stamp,
        "content-type": "application/json"})


SALESFORCE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>
<SessionId>00Dsession!SECRETSESSIONTOKEN</SessionId>
<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0</EnterpriseUrl>
<Notification><Id>04l000000000001AAA</Id>
<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
<sf:Id>001000000000001AAA</sf:Id><sf:Name>Acme</sf:Name></sObject></Notification>
</notifications></soapenv:Body></soapenv:Envelope>"""


def valid_deliveries() -> dict[str, Delivery]:
    sign = signer().sign
    return {
        "stripe": stripe_delivery(),
        "standard": standard_delivery(),
        "square": sign("square", json.dumps({"merchant_id": "M1", "type": "payment.created", "event_id": "e-1",
                                             "data": {"type": "payment", "id": "p1",
                                                      "object": {"payment": {"id": "p1"}}}}).encode()),
        "hubspot": hubspot_delivery(),
        "shopify": sign("shopify", b'{"id": 7, "updated_at": "2026-03-10T00:00:00Z"}', event_id="wh-7",
                        topic="orders/create"),
        "xero": sign("xero", json.dumps({"events": [{"resourceId": "r1", "eventCategory": "INVOICE",
                                                     "eventType": "UPDATE", "tenantId": "t1"}],
                                         "firstEventSequence": 1, "lastEventSequence": 1,
                                         "entropy": "ABC"}).encode()),
        "quickbooks": sign("quickbooks", json.dumps({"eventNotifications": [{"realmId": "1", "dataChangeEvent": {
            "entities": [{"name": "Invoice", "id": "9", "operation": "Update",
                          "lastUpdated": "2026-03-10T00:00:00Z"}]}}]}).encode()),
        "salesforce": sign("salesforce", SALESFORCE_XML.format(org=SANDBOX_SALESFORCE_ORG_IDS).encode()),
        "forms": sign("forms", b'{"email": "a@example.test", "submission_id": "s1"}'),
        "odoo": sign("odoo", b'{"_action": "write", "_id": 3, "_model": "res.partner", "name": "X"}'),
    }


PROVIDERS = sorted(valid_deliveries())
SIGNED = [p for p in PROVIDERS if p not in ("salesforce", "forms", "odoo")]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_valid_event_lands_exactly_one_file_and_a_duplicate_is_acknowledged(server, tmp_path, provider):
    delivery = valid_deliveries()[provider]
    first = post(server, delivery)
    assert 200 <= first.status_code < 300, first.text
    files = landed(tmp_path / "store")
    assert len(files) == 1
    document = json.loads(files[0].read_text())
    assert document["provider"] == provider
    assert document["received_at"]
    assert not any("signature" in h or "hmac" in h for h in document["headers"])
    again = post(server, delivery)
    assert again.status_code == first.status_code
    assert landed(tmp_path / "store") == files
    if provider == "salesforce":
        assert "<Ack>true</Ack>" in first.text and "SECRETSESSIONTOKEN" not in files[0].read_text()
    if provider == "xero":
        assert first.content == b""


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p not in ("salesforce",)])
def test_tampered_body_is_rejected_and_writes_nothing(server, tmp_path, provider):
    delivery = valid_deliveries()[provider]
    if provider in ("forms", "odoo"):  # unsigned: the path token is the secret
        delivery.path = delivery.path.rsplit("/", 1)[0] + "/wrong-token"
        expected = 404
    else:
        delivery.body = delivery.body.replace(b"1", b"2", 1)
        expected = 401
    assert post(server, delivery).status_code == expected
    assert landed(tmp_path / "store") == []


@pytest.mark.parametrize("provider", SIGNED)
def test_wrong_secret_is_rejected(server, tmp_path, provider):
    if provider == "stripe":
        delivery = stripe_delivery(secret="whsec_not_the_right_one")
    elif provider == "standard":
        delivery = standard_delivery(secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    elif provider == "hubspot":
        delivery = hubspot_delivery(secret="another-client-secret")
    else:
        field = {"square": "square_webhook_signature_key", "shopify": "shopify_webhook_secret",
                 "xero": "xero_webhook_key", "quickbooks": "quickbooks_webhook_verifier_token"}[provider]
        good = valid_deliveries()[provider]
        delivery = signer(**{field: "wrong-secret-value"}).sign(
            provider, good.body, event_id=good.headers.get("x-shopify-webhook-id", ""),
            topic=good.headers.get("x-shopify-topic", ""))
    response = post(server, delivery)
    assert response.status_code == 401
    assert landed(tmp_path / "store") == []
    if provider == "xero":
        assert response.content == b""  # intent-to-receive contract: empty 401


@pytest.mark.parametrize("provider", SIGNED)
def test_missing_signature_headers_are_rejected(server, tmp_path, provider):
    delivery = valid_deliveries()[provider]
    delivery.headers = {"content-type": "application/json"}
    assert post(server, delivery).status_code in (400, 401)
    assert landed(tmp_path / "store") == []


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p not in ("salesforce",)])
def test_validly_signed_non_json_is_rejected(server, tmp_path, provider):
    if provider == "stripe":
        delivery = stripe_delivery(body=b"this is not json")
    elif provider == "standard":
        delivery = standard_delivery(body=b"this is not json")
    elif provider == "hubspot":
        delivery = hubspot_delivery(body=b"this is not json")
    else:
        delivery = signer().sign(provider, b"this is not json", event_id="x1", topic="orders/create")
    response = post(server, delivery)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "malformed"}
    assert landed(tmp_path / "store") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_oversized_body_is_refused_with_413(server, tmp_path, provider):
    delivery = valid_deliveries()[provider]
    delivery.body = b"{" + b" " * (65 * 1024) + b"}"
    assert post(server, delivery).status_code == 413
    # also when the sender streams it without a Content-Length
    chunks = iter([b"{", b" " * (65 * 1024), b"}"])
    response = httpx.post(server.url + delivery.path, content=chunks, headers=delivery.headers, timeout=10)
    assert response.status_code == 413
    assert landed(tmp_path / "store") == []


def test_stale_and_future_timestamps(server, tmp_path):
    now = time.time()
    # 30 s outside the 300 s windows, so a slow, loaded machine cannot drift a request back inside one
    assert post(server, stripe_delivery(timestamp=int(now - 330))).status_code == 401
    assert post(server, standard_delivery(when=datetime.fromtimestamp(now - 330, UTC))).status_code == 401
    assert post(server, standard_delivery(when=datetime.fromtimestamp(now + 330, UTC))).status_code == 401
    assert post(server, hubspot_delivery(millis=int((now - 330) * 1000))).status_code == 401
    assert landed(tmp_path / "store") == []
    # inside the windows: accepted (HubSpot's timestamp is in milliseconds, not seconds)
    assert post(server, stripe_delivery("evt_ok", timestamp=int(now - 200))).status_code == 200
    assert post(server, standard_delivery("msg_ok", when=datetime.fromtimestamp(now + 200, UTC))).status_code == 200
    assert post(server, hubspot_delivery(millis=int((now - 200) * 1000))).status_code == 200
    assert len(landed(tmp_path / "store")) == 3


def test_square_and_hubspot_sign_the_configured_public_url(server, tmp_path):
    body = valid_deliveries()["square"].body
    wrong = signer()
    wrong.config = wrong.config.model_copy(update={"public_url": server.url})  # what request.url would say
    assert post(server, wrong.sign("square", body)).status_code == 401
    assert post(server, hubspot_delivery(url=server.url)).status_code == 401
    assert landed(tmp_path / "store") == []
    assert post(server, signer().sign("square", body)).status_code == 200


def test_stripe_header_from_the_sdk_verifies_with_the_sdk_too(server, tmp_path):
    delivery = stripe_delivery("evt_sdk")
    event = stripe.Webhook.construct_event(delivery.body.decode(), delivery.headers["stripe-signature"],
                                           STRIPE_SECRET)
    assert event["id"] == "evt_sdk"
    assert post(server, delivery).status_code == 200
    verified = standardwebhooks.Webhook(STANDARD_SECRET).verify(
        standard_delivery("msg_sdk").body, standard_delivery("msg_sdk").headers)
    assert verified["type"] == "invoice.paid"


def test_key_rotation_accepts_old_and_new_secrets(tmp_path, monkeypatch):
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    old_std, new_std = STANDARD_SECRET, "whsec_" + "TkVXLXN0YW5kYXJkLXNlY3JldC1rZXktMTIzNA=="
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_old_one,whsec_new_one")
    monkeypatch.setenv("STANDARD_WEBHOOK_SECRET", f"{old_std},{new_std}")
    receiver, _, _ = make_receiver(tmp_path / "store", PUBLIC_URL)
    with ReceiverServer(receiver) as server:
        assert post(server, stripe_delivery("evt_old", secret="whsec_old_one")).status_code == 200
        assert post(server, stripe_delivery("evt_new", secret="whsec_new_one")).status_code == 200
        assert post(server, stripe_delivery("evt_bad", secret="whsec_other")).status_code == 401
        assert post(server, standard_delivery("m_old", secret=old_std)).status_code == 200
        assert post(server, standard_delivery("m_new", secret=new_std)).status_code == 200
        # Stripe during rotation sends two v1 signatures; either may match
        both = stripe_delivery("evt_two", secret="whsec_other")
        extra = stripe.WebhookSignature.generate_signature_header(both.body.decode(), "whsec_new_one",
                                                                  timestamp=int(time.time()))
        both.headers["stripe-signature"] += "," + extra.split(",")[1]
        assert post(server, both).status_code == 200
    assert len(landed(tmp_path / "store")) == 5


def test_xero_intent_to_receive(server, tmp_path):
    body = b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"S0M3R4ND0M"}'
    good = signer().sign("xero", body)
    response = post(server, good)
    assert (response.status_code, response.content) == (200, b"")
    bad = signer(xero_webhook_key="not-the-key").sign("xero", body)
    response = post(server, bad)
    assert (response.status_code, response.content) == (401, b"")
    assert landed(tmp_path / "store") == []


def test_salesforce_org_allow_list_and_hostile_xml(server, tmp_path):
    sign = signer().sign
    wrong_org = sign("salesforce", SALESFORCE_XML.format(org="00DSOMEONEELSE0001AAA").encode())
    assert post(server, wrong_org).status_code == 403
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<notifications><OrganizationId>&b;</OrganizationId></notifications>")
    assert post(server, sign("salesforce", bomb)).status_code == 400
    assert post(server, sign("salesforce", b"not xml")).status_code == 400
    assert landed(tmp_path / "store") == []
    # the 15-character form of an allowed 18-character org id is the same org
    short = sign("salesforce", SALESFORCE_XML.format(org=SANDBOX_SALESFORCE_ORG_IDS[:15]).encode())
    assert post(server, short).status_code == 200


def test_forms_accept_urlencoded_and_quickbooks_accepts_cloudevents(server, tmp_path):
    form = signer().sign("forms", b"email=b%40example.test&name=B")
    form.headers["content-type"] = "application/x-www-form-urlencoded"
    assert post(server, form).status_code == 200
    cloud = json.dumps([{"specversion": "1.0", "id": "ce-1", "source": "intuit.qbo", "type": "qbo.invoice.updated.v1",
                         "time": "2026-03-10T00:00:00Z", "intuitentityid": "9", "intuitaccountid": "1",
                         "data": {}}]).encode()
    assert post(server, signer().sign("quickbooks", cloud)).status_code == 200
    names = [p.name for p in landed(tmp_path / "store")]
    assert "ce-1.json" in names and len(names) == 2


def test_hostile_event_ids_cannot_escape_the_landing_folder(server, tmp_path):
    for msg_id in ("../../../../tmp/evil", "a/b", "..", "x y", ".hidden"):
        assert post(server, standard_delivery(msg_id)).status_code == 200
    files = landed(tmp_path / "store")
    assert len(files) == 5
    root = (tmp_path / "store" / "landing" / "standard").resolve()
    assert all(f.resolve().parent.parent == root and f.name.startswith("h-") for f in files)


def test_a_duplicate_of_an_already_processed_event_is_not_landed_again(server, tmp_path):
    assert post(server, stripe_delivery("evt_once")).status_code == 200
    [_file] = landed(tmp_path / "store")
    store = server.receiver.store
    [ref] = store.list("landing")
    store.move(ref, "processed")
    response = post(server, stripe_delivery("evt_once"))
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert landed(tmp_path / "store") == []


def test_rejections_are_counted_and_logged_without_secrets(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="integration_pipelines.webhooks")
    post(server, stripe_delivery(secret="whsec_wrong"))
    post(server, stripe_delivery(timestamp=int(time.time()) - 1000))
    forms = valid_deliveries()["forms"]
    forms.path = "/webhooks/forms/" + "guess"
    post(server, forms)
    post(server, stripe_delivery("evt_counted"))
    metrics = httpx.get(server.url + "/metrics").text
    assert 'webhook_requests_rejected_total{provider="stripe",reason="bad_signature"} 1' in metrics
    assert 'webhook_requests_rejected_total{provider="stripe",reason="stale_timestamp"} 1' in metrics
    assert 'webhook_requests_rejected_total{provider="forms",reason="unknown_token"} 1' in metrics
    assert 'webhook_events_accepted_total{provider="stripe"} 1' in metrics
    text = caplog.text + metrics
    assert "rejected" in caplog.text
    for secret in SANDBOX_SECRETS.values():
        assert secret not in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_prints_each_providers_state_and_the_receiver_does_what_it_prints(tmp_path):
    """`webhooks serve` in its own process: Stripe live (its secret is set), Square sandbox (nothing set, the
    Square system runs against the sandbox), HubSpot off (HUBSPOT_TOKEN makes the HubSpot system live, and no
    webhook secret is set), forms off (no system of its own, and a system is live), the rest disabled. The start
    lines say so, and requests over HTTP get exactly that."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    drop = {*scrubbed_environment_names(), *(n for s in discover_systems() for n in credential_variables(s))}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("IP_")}
    env |= {"IP_DATA_DIR": str(tmp_path / "data"), "IP_WEBHOOK_PUBLIC_URL": url, "PYTHONUNBUFFERED": "1",
            "IP_WEBHOOK_PROVIDERS": "stripe,square,hubspot,forms",
            "STRIPE_WEBHOOK_SECRET": "FAKE-test-secret", "HUBSPOT_TOKEN": "FAKE-test-hubspot-token"}
    process = subprocess.Popen([sys.executable, "-m", "integration_pipelines.cli", "webhooks", "serve", "--port",
                                str(port)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.1)
        sign = Signer(WebhookSecrets(square_webhook_signature_key=SANDBOX_SECRETS["square_webhook_signature_key"],
                                     forms_webhook_token=SANDBOX_SECRETS["forms_webhook_token"]),
                      WebhookSettings(public_url=url)).sign
        square = sign("square", json.dumps({"merchant_id": "M1", "type": "payment.created", "event_id": "e-1",
                                            "data": {"type": "payment", "id": "p1"}}).encode())
        forms = sign("forms", b'{"email": "a@example.test", "submission_id": "s1"}')
        answers = {
            "stripe live": post_to(url, stripe_delivery("evt_live", secret="FAKE-test-secret")).status_code,
            "stripe sandbox secret": post_to(url, stripe_delivery("evt_fake")).status_code,
            "square sandbox": post_to(url, square).status_code,
            "hubspot off": post_to(url, hubspot_delivery(url=url)).status_code,
            "forms off": post_to(url, forms).status_code,
            "odoo disabled": httpx.post(f"{url}/webhooks/odoo/x", json={}).status_code,
        }
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert answers == {"stripe live": 200, "stripe sandbox secret": 401, "square sandbox": 200, "hubspot off": 503,
                       "forms off": 503, "odoo disabled": 404}
    assert 'webhook_requests_rejected_total{provider="hubspot",reason="not_configured"} 1' in metrics
    lines = out.splitlines()
    start = lines.index("Providers (live: configured secret; sandbox: the published fake secret; off: refused):")
    assert [line.strip() for line in lines[start + 1:start + 11]] == [
        "stripe      live",
        "standard    off      set IP_WEBHOOK_PROVIDERS to include standard to switch it on",
        "square      sandbox  accepts the sandbox's published SQUARE_WEBHOOK_SIGNATURE_KEY",
        "hubspot     off      set HUBSPOT_WEBHOOK_SECRET to switch it on (hubspot is live, so the sandbox's "
        "published value is refused)",
        "shopify     off      set IP_WEBHOOK_PROVIDERS to include shopify to switch it on",
        "xero        off      set IP_WEBHOOK_PROVIDERS to include xero to switch it on",
        "quickbooks  off      set IP_WEBHOOK_PROVIDERS to include quickbooks to switch it on",
        "salesforce  off      set IP_WEBHOOK_PROVIDERS to include salesforce to switch it on",
        "forms       off      set FORMS_WEBHOOK_TOKEN to switch it on (hubspot is live, so the sandbox's "
        "published value is refused)",
        "odoo        off      set IP_WEBHOOK_PROVIDERS to include odoo to switch it on",
    ]
    assert "webhook hubspot refused: not configured; set HUBSPOT_WEBHOOK_SECRET" in err
    for secret in ("FAKE-test-secret", "FAKE-test-hubspot-token", *SANDBOX_SECRETS.values()):
        assert secret not in out + err


def post_to(url: str, delivery: Delivery) -> httpx.Response:
    return httpx.post(url + delivery.path, content=delivery.body, headers=delivery.headers, timeout=10)


def test_a_variable_set_explicitly_counts_as_configured_even_to_a_sandbox_value():
    """A test against the emulators runs Salesforce live with the emulator's org id: set explicitly, that is the
    operator's choice (the line says it is the published value); left unset, the same value is refused."""
    live = {"SALESFORCE_CLIENT_ID": "FAKE-test-id", "SALESFORCE_CLIENT_SECRET": "FAKE-test-secret",
            "SALESFORCE_REFRESH_TOKEN": "FAKE-test-refresh"}
    config = WebhookSettings(providers="salesforce")
    explicit = WebhookSecrets(salesforce_webhook_organization_ids=SANDBOX_SALESFORCE_ORG_IDS)
    assert provider_states(config, explicit, live)["salesforce"].line() == (
        "salesforce  live     SALESFORCE_WEBHOOK_ORGANIZATION_IDS set to the sandbox's published value")
    unset = WebhookSecrets.model_construct()  # no variable read: every field at its (sandbox) default
    assert provider_states(config, unset, live)["salesforce"].state == "off"
    assert provider_states(config, unset, {})["salesforce"].state == "sandbox"
