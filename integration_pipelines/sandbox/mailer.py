"""Twin of a Postmark-style transactional-email API: `POST /email` with `X-Postmark-Server-Token`, answers
`{To, SubmittedAt, MessageID, ErrorCode: 0, Message: "OK"}`, refusals as HTTP 422 `{ErrorCode, Message}`, an
inactive-recipient list (ErrorCode 406), and `GET /messages/outbound?count=&offset=`.

Every accepted message is recorded (`dump("outbound_messages")`), so tests can count receipts per payment.
Sandbox-only: a message whose `Metadata.idempotency_key` was already accepted is not sent again; the first
answer (same MessageID) is replayed. Real Postmark has no such dedupe (see connectors/mailer.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..connectors.mailer import SYSTEM
from .base import Emulator

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
MARKER = "idempotency_key"


def _addresses(value: str) -> list[str]:
    out = []
    for part in value.split(","):
        part = part.strip()
        match = re.search(r"<([^>]*)>\s*$", part)
        out.append((match.group(1) if match else part).strip())
    return [a for a in out if a]


class MailerEmulator(Emulator):
    name = "mailer"
    prefixes = ("/email", "/messages/")
    streams = ("outbound_messages",)

    def __init__(self, world, sandbox) -> None:  # type: ignore[no-untyped-def]
        super().__init__(world, sandbox)
        self.token = SYSTEM.values["server_token"].sandbox
        self.messages: list[dict[str, Any]] = []
        self.by_marker: dict[str, dict[str, Any]] = {}
        self.inactive: set[str] = set()  # hard-bounced / spam-complaint recipients (Postmark suppressions)

    # -- protocol ------------------------------------------------------------------------------
    def error_response(self, status: int, message: str, code: int = 0) -> Response:
        return JSONResponse({"ErrorCode": code, "Message": message}, status_code=status)

    def rate_limit_response(self, retry_after: float) -> Response:
        response = self.error_response(429, "Rate limit exceeded. Please slow down your requests.", 429)
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def _authorize(self, request: Request) -> Response | None:
        token = request.headers.get("x-postmark-server-token")
        if not token:
            return self.error_response(
                401, "No Account or Server API tokens were supplied in the HTTP headers. Please add a header "
                "for either X-Postmark-Server-Token or X-Postmark-Account-Token.", 10)
        if token != self.token:
            return self.error_response(
                401, "The Server Token you provided in the X-Postmark-Server-Token request header was invalid. "
                "Please verify that you are using a valid token.", 10)
        return None

    def routes(self) -> list[Route]:
        return [Route("/email", self._send, methods=["POST"]),
                Route("/messages/outbound", self._outbound, methods=["GET"])]

    def _invalid(self, body: Any) -> Response | None:
        if not isinstance(body, dict):
            return self.error_response(422, "Invalid JSON input.", 402)
        if not body.get("From"):
            return self.error_response(422, "Invalid 'From' address: ''.", 300)
        to = _addresses(str(body.get("To") or ""))
        if not to:
            return self.error_response(422, "Zero recipients specified", 300)
        if len(to) > 50:
            return self.error_response(422, "Maximum of 50 recipients allowed.", 300)
        for address in to:
            if not _EMAIL.match(address):
                return self.error_response(
                    422, f"Error parsing 'To': Illegal email address '{address}'. It must contain the '@' symbol.",
                    300)
        if not body.get("HtmlBody") and not body.get("TextBody"):
            return self.error_response(422, "Provide either email TextBody or HtmlBody or both.", 300)
        metadata = body.get("Metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 10 or any(
                len(str(k)) > 20 or not isinstance(v, str) or len(v) > 80 for k, v in metadata.items()):
            return self.error_response(
                422, "Metadata: at most 10 fields, names up to 20 characters, string values up to 80.", 300)
        stream = body.get("MessageStream") or "outbound"
        if stream != "outbound":
            return self.error_response(422, f"The message stream '{stream}' was not found on this server.", 1235)
        inactive = [a for a in to if a.lower() in self.inactive]
        if inactive:
            return self.error_response(
                422, "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
                f"addresses: {', '.join(inactive)}. Inactive recipients are ones that have generated a hard "
                "bounce, a spam complaint, or a manual suppression.", 406)
        return None

    async def _send(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return self.error_response(422, "Invalid JSON input.", 402)
        invalid = self._invalid(body)
        if invalid:
            return invalid
        marker = (body.get("Metadata") or {}).get(MARKER)
        with self.sandbox.lock:
            if marker and marker in self.by_marker:
                return JSONResponse(self.by_marker[marker]["_answer"])
            now = datetime.now(UTC).isoformat(timespec="seconds")
            message_id = str(uuid.uuid4())
            answer = {"To": body["To"], "SubmittedAt": now, "MessageID": message_id, "ErrorCode": 0,
                      "Message": "OK"}
            message = {
                "MessageID": message_id, "From": body["From"], "To": body["To"],
                "Recipients": _addresses(body["To"]), "Subject": body.get("Subject") or "",
                "HtmlBody": body.get("HtmlBody"), "TextBody": body.get("TextBody"),
                "MessageStream": body.get("MessageStream") or "outbound", "Tag": body.get("Tag"),
                "Metadata": dict(body.get("Metadata") or {}), "ReceivedAt": now, "Status": "Sent",
                "_answer": answer,
            }
            self.messages.append(message)
            if marker:
                self.by_marker[marker] = message
        return JSONResponse(answer)

    async def _outbound(self, request: Request) -> Response:
        denied = self._authorize(request)
        if denied:
            return denied
        try:
            count = int(request.query_params["count"])
            offset = int(request.query_params["offset"])
        except (KeyError, ValueError):
            return self.error_response(422, "The 'count' and 'offset' parameters are required integers.", 1700)
        if not 1 <= count <= 500 or offset < 0 or count + offset > 10_000:
            return self.error_response(422, "count must be 1..500 and count + offset at most 10000.", 1700)
        rows = [self._summary(m) for m in reversed(self.messages)]
        return JSONResponse({"TotalCount": len(rows), "Messages": rows[offset:offset + count]})

    @staticmethod
    def _summary(message: dict[str, Any]) -> dict[str, Any]:
        return {"MessageID": message["MessageID"], "From": message["From"],
                "To": [{"Email": a, "Name": None} for a in message["Recipients"]], "Cc": [], "Bcc": [],
                "Recipients": message["Recipients"], "Subject": message["Subject"], "Tag": message["Tag"],
                "Metadata": message["Metadata"], "MessageStream": message["MessageStream"],
                "ReceivedAt": message["ReceivedAt"], "Status": message["Status"], "Attachments": [],
                "TrackOpens": False, "TrackLinks": "None"}

    def dump(self, stream: str) -> list[dict[str, Any]]:
        if stream != "outbound_messages":
            raise KeyError(stream)
        with self.sandbox.lock:
            return [{k: v for k, v in m.items() if k != "_answer"} for m in self.messages]


EMULATOR = MailerEmulator
