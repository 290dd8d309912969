"""The mailer system (Postmark's email API): its sandbox twin answers and refuses as Postmark does, and the
sent messages extract into the warehouse."""

from __future__ import annotations

import httpx

from .conftest import materialize_stream, warehouse_rows

TOKEN = {"X-Postmark-Server-Token": "FAKE-sandbox-postmark-server-token-0000"}
GOOD = {"From": "x@example.com", "To": "Ann <ann@example.com>", "Subject": "s", "TextBody": "t",
        "MessageStream": "outbound", "Metadata": {"idempotency_key": "k1"}}


def test_send_answers_like_postmark_and_refuses_what_postmark_refuses(sandbox, sandbox_server):
    with httpx.Client(base_url=sandbox_server.url) as client:
        missing = client.post("/email", json=GOOD)
        assert missing.status_code == 401 and missing.json()["ErrorCode"] == 10
        wrong = client.post("/email", json=GOOD, headers={"X-Postmark-Server-Token": "nope"})
        assert wrong.status_code == 401 and wrong.json()["ErrorCode"] == 10
        for bad, code in (({"To": "nobody"}, 300), ({"To": ""}, 300), ({"TextBody": None}, 300),
                          ({"MessageStream": "broadcast"}, 1235), ({"Metadata": {"x" * 21: "v"}}, 300)):
            refused = client.post("/email", headers=TOKEN, json={**GOOD, **bad})
            assert refused.status_code == 422 and refused.json()["ErrorCode"] == code, bad
        sent = client.post("/email", headers=TOKEN, json=GOOD)
        assert sent.status_code == 200
        answer = sent.json()
        assert answer["ErrorCode"] == 0 and answer["Message"] == "OK" and answer["To"] == GOOD["To"]
        assert set(answer) == {"To", "SubmittedAt", "MessageID", "ErrorCode", "Message"}
        # sandbox-only: the same Metadata.idempotency_key is not sent twice; the first answer is replayed
        assert client.post("/email", headers=TOKEN, json=GOOD).json()["MessageID"] == answer["MessageID"]
        sandbox.emulator("mailer").inactive.add("bob@example.com")
        inactive = client.post("/email", headers=TOKEN, json={**GOOD, "To": "bob@example.com", "Metadata": {}})
        assert inactive.status_code == 422 and inactive.json()["ErrorCode"] == 406
    messages = sandbox.emulator("mailer").dump("outbound_messages")
    assert [(m["MessageID"], m["Recipients"]) for m in messages] == [(answer["MessageID"], ["ann@example.com"])]


def test_sent_messages_extract_page_by_page(settings, sandbox, sandbox_server, monkeypatch):
    with httpx.Client(base_url=sandbox_server.url, headers=TOKEN) as client:
        for n in range(7):
            assert client.post("/email", json={**GOOD, "Metadata": {"idempotency_key": f"k{n}"}}).status_code == 200
        bad_page = client.get("/messages/outbound", params={"count": 501, "offset": 0})
        assert bad_page.status_code == 422
    monkeypatch.setenv("MAILER_PAGE_SIZE", "3")
    materialize_stream(settings, "mailer", "outbound_messages")
    ids = sorted(r[0] for r in warehouse_rows(settings, "SELECT _pk FROM raw_mailer.outbound_messages"))
    assert ids == sorted(m["MessageID"] for m in sandbox.emulator("mailer").dump("outbound_messages"))
    assert [r["query"] for r in sandbox.state.request_log("mailer") if r["query"].startswith("count=3")] == [
        "count=3&offset=0", "count=3&offset=3", "count=3&offset=6"]
