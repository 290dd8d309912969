"""Ready for the real services (issue 15): least-privilege read/write credentials, secrets from files and a secrets
manager, a webhook receiver that fails closed, redaction of encoded secrets, custom systems confined to their own
variables, sandbox data never written to a live service, and an explicit token store per credential set.

Every secret here is obviously fake; the expected values are written out by hand.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest

from integration_pipelines.connectors import redaction
from integration_pipelines.connectors.auth import OAuth2Auth
from integration_pipelines.connectors.custom import CustomSystemError, load_custom_file
from integration_pipelines.connectors.errors import AuthError, ConfigurationError
from integration_pipelines.connectors.redaction import redact, register_secret
from integration_pipelines.connectors.registry import discover_systems, get_system
from integration_pipelines.connectors.runtime import build_auth, build_client, resolve_system
from integration_pipelines.connectors.secrets import SecretSourceError, clear_manager_cache, lookup
from integration_pipelines.connectors.token_store import TokenStore
from integration_pipelines.docs import sync_catalog_markdown, systems_markdown
from integration_pipelines.provenance import SandboxDataInLiveError
from integration_pipelines.settings import Settings
from integration_pipelines.webhooks.config import SANDBOX_SECRETS, WebhookSecrets, WebhookSettings
from integration_pipelines.webhooks.receiver import build_receiver
from integration_pipelines.webhooks.server import ReceiverServer

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "integration_pipelines.cli"]

STRIPE_READ_ONLY = "rk_test_FAKE_sandbox_read_only_key_0000"  # the Stripe emulator's own table of restricted keys
HUBSPOT_READ_ONLY = "pat-FAKE-sandbox-read-only-0000"
HUBSPOT_READ_WRITE = "pat-FAKE-sandbox-read-write-0000"


# -- 1. least privilege ----------------------------------------------------------------------------------
def test_reads_take_the_read_set_and_writes_the_write_set(settings):
    stripe = get_system("stripe")
    env = {"STRIPE_READ_API_KEY": "rk_test_FAKE_read_1111", "STRIPE_WRITE_API_KEY": "rk_test_FAKE_write_2222"}
    read = resolve_system(stripe, settings, env)
    assert (read.mode, read.purpose, read.values["api_key"]) == ("live", "read", "rk_test_FAKE_read_1111")
    assert read.sources == {"api_key": "STRIPE_READ_API_KEY"}
    assert "STRIPE_READ_API_KEY" in read.credential_hint
    write = resolve_system(stripe, settings, env, purpose="write")
    assert (write.purpose, write.values["api_key"]) == ("write", "rk_test_FAKE_write_2222")


def test_a_read_never_reads_the_write_credentials(settings):
    env = {"HUBSPOT_READ_TOKEN": "pat-FAKE-read-only-never-seen-1",
           "HUBSPOT_WRITE_TOKEN": "pat-FAKE-write-never-seen-2"}
    resolved = resolve_system(get_system("hubspot"), settings, env)
    assert resolved.values == {"token": "pat-FAKE-read-only-never-seen-1"}
    assert "pat-FAKE-write-never-seen-2" not in redaction._secrets  # never read, so never registered either


def test_each_purpose_falls_back_to_the_shared_set(settings):
    env = {"STRIPE_API_KEY": "sk_test_FAKE_shared_3333"}
    for purpose in ("read", "write"):
        resolved = resolve_system(get_system("stripe"), settings, env, purpose=purpose)
        assert resolved.values["api_key"] == "sk_test_FAKE_shared_3333"
        assert resolved.sources == {"api_key": "STRIPE_API_KEY"}


def test_a_read_set_alone_never_sends_writes_to_the_sandbox(settings):
    env = {"HUBSPOT_READ_TOKEN": "pat-FAKE-read-4444"}
    assert resolve_system(get_system("hubspot"), settings, env).mode == "live"
    with pytest.raises(ConfigurationError) as caught:
        resolve_system(get_system("hubspot"), settings, env, purpose="write")
    assert str(caught.value) == (
        "HubSpot (writes): HUBSPOT_READ_TOKEN set but HUBSPOT_WRITE_TOKEN (or HUBSPOT_TOKEN) not. Set all of them to "
        "use the real HubSpot for writes, or unset them all to use the sandbox.")


def test_purpose_specific_oauth_credentials_keep_their_own_token_store(settings, tmp_path):
    xero = get_system("xero")
    shared = build_auth(resolve_system(xero, settings, {}))
    assert isinstance(shared, OAuth2Auth) and shared.token_store is not None
    assert shared.token_store.path == tmp_path / "data" / "secrets" / "tokens" / "xero.json"
    env = {"XERO_READ_CLIENT_ID": "FAKE-read-client", "XERO_READ_CLIENT_SECRET": "FAKE-read-secret",
           "XERO_READ_REFRESH_TOKEN": "FAKE-read-refresh", "XERO_TENANT_ID": "FAKE-tenant",
           "XERO_CLIENT_ID": "FAKE-client", "XERO_CLIENT_SECRET": "FAKE-secret", "XERO_REFRESH_TOKEN": "FAKE-refresh"}
    read = build_auth(resolve_system(xero, settings, env))
    write = build_auth(resolve_system(xero, settings, env, purpose="write"))
    assert isinstance(read, OAuth2Auth) and isinstance(write, OAuth2Auth)
    assert read.token_store is not None and read.token_store.path.name == "xero_read.json"
    assert write.token_store is not None and write.token_store.path.name == "xero.json"
    assert (read.refresh_token, write.refresh_token) == ("FAKE-read-refresh", "FAKE-refresh")


def test_the_stripe_emulator_refuses_a_write_with_a_read_only_restricted_key(sandbox_server):
    headers = {"Authorization": f"Bearer {STRIPE_READ_ONLY}"}
    with httpx.Client(base_url=sandbox_server.url, headers=headers) as client:
        assert client.get("/v1/customers", params={"limit": 1}).status_code == 200
        refused = client.post("/v1/customers", data={"email": "fake@example.test"})
    assert refused.status_code == 403
    assert refused.json() == {"error": {
        "type": "invalid_request_error",
        "message": "The provided key 'rk_test_***************************0000' does not have the required "
                   "permissions for this endpoint on account 'acct_FAKEsandbox0000'. Having the 'rak_customer_write' "
                   "permission would allow this request to continue."}}


def test_the_hubspot_emulator_refuses_a_write_without_the_write_scope(sandbox_server):
    body = {"inputs": [{"id": "fake@example.test", "idProperty": "email", "properties": {"firstname": "Fake"}}]}
    with httpx.Client(base_url=sandbox_server.url, headers={"Authorization": f"Bearer {HUBSPOT_READ_ONLY}"}) as client:
        assert client.get("/crm/v3/objects/contacts", params={"limit": 1}).status_code == 200
        assert client.post("/crm/v3/objects/contacts/search", json={"limit": 1}).status_code == 200
        refused = client.post("/crm/v3/objects/contacts/batch/upsert", json=body)
    assert refused.status_code == 403
    answer = refused.json()
    assert answer["category"] == "MISSING_SCOPES"
    assert answer["message"].startswith("This app hasn't been granted all required scopes to make this call.")
    assert answer["errors"][0]["context"] == {"requiredGranularScopes": ["crm.objects.contacts.write"]}


def test_the_engine_names_the_write_variable_when_the_write_token_lacks_a_scope(settings, sandbox_server, monkeypatch):
    monkeypatch.setenv("HUBSPOT_BASE_URL", sandbox_server.url)  # the "real" HubSpot is the emulator here
    monkeypatch.setenv("HUBSPOT_READ_TOKEN", HUBSPOT_READ_ONLY)
    monkeypatch.setenv("HUBSPOT_WRITE_TOKEN", HUBSPOT_READ_ONLY)  # a mistake: the read-only token for writes
    resolved = resolve_system(get_system("hubspot"), settings, purpose="write")
    body = {"inputs": [{"id": "fake@example.test", "idProperty": "email", "properties": {}}]}
    with build_client(resolved) as client, pytest.raises(AuthError) as caught:
        client.request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body)
    assert "hasn't been granted all required scopes" in str(caught.value)
    assert "Check HUBSPOT_WRITE_TOKEN (the write credentials" in str(caught.value)
    monkeypatch.setenv("HUBSPOT_WRITE_TOKEN", HUBSPOT_READ_WRITE)
    resolved = resolve_system(get_system("hubspot"), settings, purpose="write")
    with build_client(resolved) as client:
        assert client.request("POST", "/crm/v3/objects/contacts/batch/upsert", json=body).status_code == 200


def test_every_shipped_system_documents_its_scopes(settings):
    for system in discover_systems():
        assert system.scopes is not None and system.scopes.read, system.name
    text = systems_markdown()
    assert "- Read credentials need: `crm.objects.contacts.read`, `crm.objects.companies.read`, " \
           "`crm.objects.deals.read`." in text
    assert "| upsert_contacts | `POST /crm/v3/objects/contacts/batch/upsert` | none (upsert by key) | " \
           "`crm.objects.contacts.write` |" in text
    catalog = sync_catalog_markdown()
    assert "| hubspot | upsert | — | 3 | `crm.objects.contacts.write` |" in catalog


def test_syncs_resolve_their_target_for_writing():
    engine = (PROJECT_ROOT / "integration_pipelines" / "syncs" / "engine.py").read_text()
    assert 'resolve_system(system, settings, purpose="write")' in engine


# -- 2. secrets beyond environment variables ---------------------------------------------------------------
def test_a_secret_file_gives_the_value_without_its_newline(settings, tmp_path):
    secret = tmp_path / "stripe_key"
    secret.write_text("sk_test_FAKE_from_a_file_5555\n")
    resolved = resolve_system(get_system("stripe"), settings, {"STRIPE_READ_API_KEY_FILE": str(secret)})
    assert (resolved.mode, resolved.values["api_key"]) == ("live", "sk_test_FAKE_from_a_file_5555")
    assert redact("key sk_test_FAKE_from_a_file_5555") == "key ***"
    secret.write_text("FAKE-crlf-value-6666\r\n")
    assert lookup("X_TOKEN", {"X_TOKEN_FILE": str(secret)}) == "FAKE-crlf-value-6666"


def test_an_unreadable_secret_file_is_one_paragraph_naming_variable_and_path(settings, tmp_path):
    missing = tmp_path / "nope" / "stripe_key"
    with pytest.raises(ConfigurationError) as caught:
        resolve_system(get_system("stripe"), settings, {"STRIPE_API_KEY_FILE": str(missing)})
    message = str(caught.value)
    assert message.startswith(f"STRIPE_API_KEY_FILE is set to {missing}, which cannot be read (No such file or "
                              "directory). STRIPE_API_KEY_FILE must name a readable file holding the value of "
                              "STRIPE_API_KEY")
    assert "\n" not in message
    with pytest.raises(SecretSourceError, match=r"STRIPE_API_KEY_FILE is set to .*, which cannot be read"):
        lookup("STRIPE_API_KEY", {"STRIPE_API_KEY_FILE": str(tmp_path)})  # a folder


def test_an_unreadable_file_never_shows_its_content(tmp_path):
    secret = tmp_path / "key"
    secret.write_bytes(b"\xffFAKE-not-utf8-secret-7777")
    with pytest.raises(SecretSourceError) as caught:
        lookup("MAILER_SERVER_TOKEN", {"MAILER_SERVER_TOKEN_FILE": str(secret)})
    assert "FAKE-not-utf8" not in str(caught.value) and "MAILER_SERVER_TOKEN_FILE" in str(caught.value)


def test_a_value_and_a_file_for_one_variable_are_refused(tmp_path):
    (tmp_path / "k").write_text("FAKE-a")
    with pytest.raises(SecretSourceError, match="Both STRIPE_API_KEY and STRIPE_API_KEY_FILE are set"):
        lookup("STRIPE_API_KEY", {"STRIPE_API_KEY": "FAKE-b", "STRIPE_API_KEY_FILE": str(tmp_path / "k")})


def test_webhook_secrets_and_the_token_store_key_come_from_files(settings, tmp_path, monkeypatch):
    (tmp_path / "whsec").write_text("whsec_FAKE_from_file_8888\n")
    (tmp_path / "store_key").write_text("FAKE-token-store-key-from-file-9999\n")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_FILE", str(tmp_path / "whsec"))
    monkeypatch.setenv("IP_TOKEN_STORE_KEY_FILE", str(tmp_path / "store_key"))
    assert WebhookSecrets().values("stripe_webhook_secret") == ["whsec_FAKE_from_file_8888"]
    assert TokenStore.for_system("xero")._key == "FAKE-token-store-key-from-file-9999"
    assert redact("whsec_FAKE_from_file_8888") == "***"


def test_the_aws_secrets_manager_feeds_system_credentials(settings, monkeypatch):
    """Over HTTP with AWS's own SDK (boto3) against moto's Secrets Manager on loopback: the operator stores the
    credentials as one JSON secret, the system resolves live from it, the value is redacted, the secret is read once
    per process, and a secret that is not there is one paragraph naming the variable."""
    import boto3

    from .s3_server import s3_server

    with s3_server() as endpoint:
        for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "FAKE-key-id",
                            "AWS_SECRET_ACCESS_KEY": "FAKE-secret-access-key", "AWS_DEFAULT_REGION": "eu-west-1"
                            }.items():
            monkeypatch.setenv(name, value)
        aws = boto3.client("secretsmanager", region_name="eu-west-1")
        aws.create_secret(Name="integration-pipelines/prod",
                          SecretString=json.dumps({"SQUARE_READ_ACCESS_TOKEN": "EAAA-FAKE-from-aws-1010"}))
        clear_manager_cache()
        env = {"IP_AWS_SECRETS_MANAGER_SECRET_ID": "integration-pipelines/prod",
               "IP_AWS_SECRETS_MANAGER_REGION": "eu-west-1"}
        try:
            resolved = resolve_system(get_system("square"), settings, env)
            assert (resolved.mode, resolved.values["access_token"]) == ("live", "EAAA-FAKE-from-aws-1010")
            assert redact("Bearer EAAA-FAKE-from-aws-1010") == "Bearer ***"
            aws.delete_secret(SecretId="integration-pipelines/prod", ForceDeleteWithoutRecovery=True)
            # read once per process: the deleted secret still resolves from what was read
            assert resolve_system(get_system("square"), settings, env).values["access_token"] == (
                "EAAA-FAKE-from-aws-1010")
            clear_manager_cache()
            with pytest.raises(SecretSourceError, match="IP_AWS_SECRETS_MANAGER_SECRET_ID") as refused:
                resolve_system(get_system("square"), settings, env)
            assert "ResourceNotFoundException" in str(refused.value) and "\n" not in str(refused.value)
        finally:
            clear_manager_cache()


def test_without_boto3_the_secrets_manager_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # import fails
    clear_manager_cache()
    with pytest.raises(SecretSourceError, match=r"pip install 'pydantic-settings\[aws-secrets-manager\]'"):
        lookup("STRIPE_API_KEY", {"IP_AWS_SECRETS_MANAGER_SECRET_ID": "x"})


# -- 3. the webhook receiver fails closed ---------------------------------------------------------------------
REAL_LOOKING = {  # fake, but not the sandbox's published values
    "STRIPE_WEBHOOK_SECRET": "whsec_FAKE_but_not_sandbox_1",
    "STANDARD_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"FAKE-but-not-the-sandbox-key-02").decode(),
    "SQUARE_WEBHOOK_SIGNATURE_KEY": "FAKE-not-sandbox-square-3", "HUBSPOT_WEBHOOK_SECRET": "FAKE-not-sandbox-hs-4",
    "SHOPIFY_WEBHOOK_SECRET": "FAKE-not-sandbox-shopify-5", "XERO_WEBHOOK_KEY": "FAKE-not-sandbox-xero-6",
    "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN": "FAKE-not-sandbox-qb-7", "FORMS_WEBHOOK_TOKEN": "FAKE-not-sandbox-forms-8",
    "ODOO_WEBHOOK_TOKEN": "FAKE-not-sandbox-odoo-9", "SALESFORCE_WEBHOOK_ORGANIZATION_IDS": "00DFAKENOTSANDBOX01",
}


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    names = {v.upper() for v in SANDBOX_SECRETS} | {"SALESFORCE_WEBHOOK_ORGANIZATION_IDS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IP_") and k not in names}
    return {**env, "IP_DATA_DIR": str(tmp_path / "data"), **extra}


def test_webhooks_serve_refuses_a_public_url_with_sandbox_secrets(tmp_path):
    env = _clean_env(tmp_path, IP_WEBHOOK_PUBLIC_URL="https://hooks.example.com")
    done = subprocess.run([*CLI, "webhooks", "serve", "--port", "0"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "Refusing to start the webhook receiver: IP_WEBHOOK_PUBLIC_URL (https://hooks.example.com) is not a loopback "
        "address, and STRIPE_WEBHOOK_SECRET, STANDARD_WEBHOOK_SECRET, SQUARE_WEBHOOK_SIGNATURE_KEY, "
        "HUBSPOT_WEBHOOK_SECRET, SHOPIFY_WEBHOOK_SECRET, XERO_WEBHOOK_KEY, QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN, "
        "SALESFORCE_WEBHOOK_ORGANIZATION_IDS, FORMS_WEBHOOK_TOKEN, ODOO_WEBHOOK_TOKEN still hold the sandbox's "
        "published fake value")
    assert "IP_WEBHOOK_PROVIDERS" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1  # one paragraph


def test_the_cli_reads_dotenv_like_dagster_and_the_environment_wins(tmp_path):
    """`.env` in the working folder: Dagster's processes read it, so the CLI must too, or `systems` says sandbox
    while the runs use the live token. A variable already set in the environment wins over the file."""
    env = {k: v for k, v in _clean_env(tmp_path).items() if not k.startswith("STRIPE_")}
    (tmp_path / ".env").write_text("STRIPE_API_KEY=sk_live_FAKE_from_dotenv_0001\n"
                                   "IP_SANDBOX_URL=http://127.0.0.1:1111\n")
    done = subprocess.run([*CLI, "systems"], cwd=tmp_path, env={**env, "IP_SANDBOX_URL": "http://127.0.0.1:2222"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2:4] for line in done.stdout.splitlines()
            if line.startswith("│")}
    assert [c.strip() for c in rows["stripe"]] == ["live", "https://api.stripe.com"]
    assert [c.strip() for c in rows["hubspot"]] == ["sandbox", "http://127.0.0.1:2222"]
    assert "sk_live_FAKE_from_dotenv_0001" not in done.stdout + done.stderr


@pytest.fixture
def webhook_env(monkeypatch, tmp_path):
    for name in [*REAL_LOOKING, "IP_WEBHOOK_PROVIDERS", "IP_WEBHOOK_PUBLIC_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IP_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


@pytest.mark.parametrize("url", ["http://127.0.0.1:8766", "http://localhost:9000/base", "http://[::1]:8766",
                                 "http://127.1.2.3"])
def test_loopback_receivers_accept_the_sandbox_secrets(webhook_env, url):
    webhook_env.setenv("IP_WEBHOOK_PUBLIC_URL", url)
    assert "forms" in build_receiver().providers


def test_a_forged_forms_post_with_the_published_token_is_refused(webhook_env):
    for name, value in REAL_LOOKING.items():
        webhook_env.setenv(name, value)
    webhook_env.setenv("IP_WEBHOOK_PUBLIC_URL", "https://hooks.example.com")
    with ReceiverServer(build_receiver()) as running:
        forged = httpx.post(f"{running.url}/webhooks/forms/{SANDBOX_SECRETS['forms_webhook_token']}",
                            json={"email": "x@y.test"})
    assert forged.status_code == 404 and forged.json() == {"error": "unknown_token"}


def test_a_disabled_provider_needs_no_secret_and_answers_404(webhook_env):
    webhook_env.setenv("IP_WEBHOOK_PUBLIC_URL", "https://hooks.example.com")
    webhook_env.setenv("IP_WEBHOOK_PROVIDERS", "stripe, forms")
    webhook_env.setenv("STRIPE_WEBHOOK_SECRET", REAL_LOOKING["STRIPE_WEBHOOK_SECRET"])
    with pytest.raises(ConfigurationError, match=r"and FORMS_WEBHOOK_TOKEN still holds the sandbox's published"):
        build_receiver()
    webhook_env.setenv("IP_WEBHOOK_PROVIDERS", "stripe")
    with ReceiverServer(build_receiver()) as running, httpx.Client(base_url=running.url) as client:
        assert client.get("/healthz").json() == {"ok": True, "providers": ["stripe"]}
        forged = client.post(f"/webhooks/forms/{SANDBOX_SECRETS['forms_webhook_token']}", json={"email": "x@y.test"})
        assert forged.status_code == 404
        assert client.post("/webhooks/hubspot", json=[]).status_code == 404


def test_an_unknown_provider_is_named():
    with pytest.raises(ConfigurationError, match="IP_WEBHOOK_PROVIDERS names paypal, which the receiver does not"):
        WebhookSettings(providers="stripe,paypal").enabled_providers()


# -- 4. redaction in any encoding ----------------------------------------------------------------------------
def test_a_secret_is_redacted_however_it_was_encoded():
    secret = "sk_test_FAKE+/=abc"
    register_secret(secret)
    url = httpx.Request("GET", "https://api.example.test/v1/x", params={"key": secret}).url
    assert str(url) == "https://api.example.test/v1/x?key=sk_test_FAKE%2B%2F%3Dabc"
    assert redact(str(url)) == "https://api.example.test/v1/x?key=***"
    assert redact("key=sk_test_FAKE%2b%2f%3dabc") == "key=***"  # lower-case hex
    assert redact("q=sk_test_FAKE%2B/%3Dabc") == "q=***"  # quote() keeps '/'
    assert redact("b64 c2tfdGVzdF9GQUtFKy89YWJj.") == "b64 ***."
    assert redact(json.dumps({"k": secret}).replace("/", "\\/")) == '{"k": "***"}'
    quoted = 'FAKE"pass\\word'
    register_secret(quoted)
    assert json.dumps({"password": quoted}) == '{"password": "FAKE\\"pass\\\\word"}'
    assert redact(json.dumps({"password": quoted})) == '{"password": "***"}'


# -- 5. custom systems read only their own variables ----------------------------------------------------------
CUSTOM = """name: pm_tool_two
title: PM tool two
category: project_management
base_url: https://pm.example.internal
values:
  api_token:
    env: {token_env}
    sandbox: FAKE-token
  workspace:
    env: {other_env}
    sandbox: ws1
    secret: false
auth:
  kind: bearer
  token: api_token
streams:
  - name: projects
    request:
      path: /projects
    primary_key: id
"""


def test_a_custom_system_cannot_read_another_systems_secret(tmp_path):
    path = tmp_path / "pm_tool.yaml"
    path.write_text(CUSTOM.format(token_env="STRIPE_API_KEY", other_env="PM_TOOL_TWO_WORKSPACE"))
    with pytest.raises(CustomSystemError) as caught:
        load_custom_file(path)
    assert str(caught.value) == (
        f"custom system {path} is invalid (1 problem):\n  {path}:7:5: values.api_token.env: STRIPE_API_KEY belongs to "
        "Stripe; a custom system cannot read another system's credentials. Give this system its own variable, named "
        "PM_TOOL_TWO_<SOMETHING>.")


def test_a_custom_system_reads_no_variable_outside_its_prefix(tmp_path):
    path = tmp_path / "pm_tool.yaml"
    path.write_text(CUSTOM.format(token_env="PM_TOOL_TWO_API_TOKEN", other_env="AWS_SECRET_ACCESS_KEY"))
    with pytest.raises(CustomSystemError) as caught:
        load_custom_file(path)
    assert f"{path}:10:5: values.workspace.env: AWS_SECRET_ACCESS_KEY is not named with this system's prefix " \
           "PM_TOOL_TWO_" in str(caught.value)
    path.write_text(CUSTOM.format(token_env="PM_TOOL_TWO_API_TOKEN", other_env="PM_TOOL_TWO_WORKSPACE"))
    assert load_custom_file(path).name == "pm_tool_two"


def test_a_custom_systems_secret_is_registered_for_redaction(settings):
    resolved = resolve_system(get_system("pm_tool"), settings, {"PM_TOOL_API_TOKEN": "FAKE-pm-live-token-1212"})
    assert resolved.values["api_token"] == "FAKE-pm-live-token-1212"
    assert redact("token FAKE-pm-live-token-1212") == "token ***"


# -- 6. sandbox data never goes to a live service ----------------------------------------------------------
def _warehouse_with_extracts(path: Path, modes: list[tuple[str, str]] | None) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA ops")
    column = ", source_mode VARCHAR" if modes is not None else ""
    con.execute(f"CREATE TABLE ops.extract_log (run_id VARCHAR, system VARCHAR, stream VARCHAR{column})")
    for system, mode in modes or []:
        con.execute("INSERT INTO ops.extract_log VALUES ('r1', ?, 'customers', ?)", [system, mode])
    con.close()


def test_a_live_write_over_sandbox_extracts_is_refused(settings, tmp_path):
    database = tmp_path / "wh.duckdb"
    _warehouse_with_extracts(database, [("stripe", "sandbox"), ("stripe", "sandbox"), ("hubspot", "live")])
    live = Settings(warehouse=str(database))
    env = {"HUBSPOT_TOKEN": "pat-FAKE-live-1313"}
    with pytest.raises(SandboxDataInLiveError) as caught:
        resolve_system(get_system("hubspot"), live, env, purpose="write")
    assert str(caught.value) == (
        f"Refusing to write to the real HubSpot: the warehouse {database} holds data extracted from the sandbox "
        "(stripe (2 extracts)), and a sync would push those fake records into the real service. Use a fresh warehouse "
        "for live data (set IP_WAREHOUSE to a new file, or IP_DATA_DIR to a new folder) and extract from the real "
        "services into it, or, if the target is itself a test account and this is intended, set "
        "IP_ALLOW_SANDBOX_DATA_IN_LIVE=true.")
    assert resolve_system(get_system("hubspot"), live, env).mode == "live"  # reading is fine
    assert resolve_system(get_system("hubspot"), live, {}, purpose="write").mode == "sandbox"
    allowed = {**env, "IP_ALLOW_SANDBOX_DATA_IN_LIVE": "true"}
    assert resolve_system(get_system("hubspot"), live, allowed, purpose="write").mode == "live"


def test_a_warehouse_of_live_extracts_or_without_the_mode_column_allows_live_writes(settings, tmp_path):
    env = {"HUBSPOT_TOKEN": "pat-FAKE-live-1414"}
    for name, modes in (("live.duckdb", [("stripe", "live")]), ("old.duckdb", None)):
        _warehouse_with_extracts(tmp_path / name, modes)
        resolved = resolve_system(get_system("hubspot"), Settings(warehouse=str(tmp_path / name)), env,
                                  purpose="write")
        assert resolved.mode == "live"
    assert resolve_system(get_system("hubspot"), Settings(warehouse=str(tmp_path / "none.duckdb")), env,
                          purpose="write").mode == "live"
    assert not (tmp_path / "none.duckdb").exists()


def test_a_real_sandbox_extract_records_its_mode_and_then_refuses_a_live_write(settings):
    """Not a hand-made log: the extract itself records 'sandbox', and that alone makes a live write refuse."""
    from .conftest import materialize_stream

    materialize_stream(settings, "stripe", "events")  # unpartitioned: Stripe's change feed
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        assert con.execute("SELECT DISTINCT source_mode FROM ops.extract_log").fetchall() == [("sandbox",)]
    with pytest.raises(SandboxDataInLiveError):
        resolve_system(get_system("hubspot"), settings, {"HUBSPOT_TOKEN": "pat-FAKE-live-1515"}, purpose="write")
