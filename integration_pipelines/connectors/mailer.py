"""Mailer: a transactional-email platform with Postmark's API (`POST /email`, `X-Postmark-Server-Token`).

Facts the spec leans on (https://postmarkapp.com/developer/api/email-api):
- One message per `POST /email`: JSON `{From, To, Subject, HtmlBody, TextBody, MessageStream, Metadata}`; the
  answer is `{To, SubmittedAt, MessageID, ErrorCode: 0, Message: "OK"}`; a refused message is HTTP 422 with
  `{ErrorCode, Message}` (300 invalid request, 406 inactive recipient ...).
- Postmark has **no idempotency key**. Duplicate receipts are prevented by the sync ledger (insert mode, keyed
  by the payment: a payment whose receipt was accepted is never sent again). The one window left is a response
  lost after Postmark accepted the message: the client retries and the real service sends a second email. Each
  receipt therefore carries a `Metadata.idempotency_key` (the payment key): the sandbox twin dedupes on it, and
  against the real service it makes such a duplicate findable (outbound search filters on metadata).
- Sent messages are listed by `GET /messages/outbound?count=&offset=` (`count` at most 500).
"""

from __future__ import annotations

from .pagination import OffsetPaginator
from .spec import EnvValue, HeaderAuthSpec, Idempotency, RequestTemplate, Scopes, Stream, System, Writer

SYSTEM = System(
    name="mailer",
    title="Mailer (Postmark)",
    category="email",
    base_url="https://api.postmarkapp.com",
    docs_url="https://postmarkapp.com/developer/api/email-api",
    values={
        "server_token": EnvValue(
            env="MAILER_SERVER_TOKEN",
            sandbox="FAKE-sandbox-postmark-server-token-0000",
            description="a Server API token (Servers → your server → API Tokens)",
        ),
        "from_address": EnvValue(
            env="MAILER_FROM_ADDRESS",
            sandbox="receipts@sandbox.integration-pipelines.invalid",
            secret=False,
            description="the sender: a confirmed Sender Signature or an address on a verified domain",
        ),
    },
    auth=HeaderAuthSpec(header="X-Postmark-Server-Token", value="server_token"),
    headers={"Accept": "application/json"},
    requests_per_second=10.0,
    burst=10,
    error_message_paths=("Message",),
    scopes=Scopes(
        read=("Server API token (message search)",),
        write=("Server API token (send)",),
        note="Postmark's Server API token is per server and cannot be narrowed; the account token is never needed.",
    ),
    streams=(
        Stream(
            name="outbound_messages",
            description="Messages sent (outbound message search), newest first",
            request=RequestTemplate(path="/messages/outbound", params={"count": "{page_size}", "offset": "{offset}"}),
            records_path="Messages",
            envelope_path="Messages",
            primary_key="MessageID",
            paginator=OffsetPaginator(),
            page_size=500,
        ),
    ),
    writers=(
        Writer(
            name="send_email",
            description="Send one email (POST /email). No idempotency key at Postmark: the sync ledger sends each "
            "record once, and Metadata.idempotency_key marks the message.",
            path="/email",
            id_path="MessageID",
            idempotency=Idempotency(location="none"),
            # a second POST is a second email. No lookup: Postmark's outbound search can filter on
            # metadata_idempotency_key, but a just-sent message may not be searchable yet, and an empty answer
            # would then send a second receipt; an operator checks instead (docs/syncs.md)
            creates=True,
        ),
    ),
)
