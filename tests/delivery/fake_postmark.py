"""A fake of Postmark's batch email API for :class:`tests.apiserver.ApiServer`.

It checks requests the way Postmark documents them and answers in Postmark's shapes:

- only ``POST /email/batch`` exists (else 404);
- ``X-Postmark-Server-Token`` must equal ``token``, else 401 with ErrorCode 10;
- ``Accept`` and ``Content-Type`` must be ``application/json``, else 422 with ErrorCode 409;
- the body must be JSON (else 422, ErrorCode 402), an array of 1 to 500 objects (else 422 with
  ErrorCode 403, or 410 for more than 500), and at most 50 MB (else 413);
- each message needs From, To, Subject, HtmlBody or TextBody, and (stricter than Postmark,
  which would default it) MessageStream; Headers must be ``[{Name, Value}]``, Metadata an object
  of strings, TrackLinks one of the documented values. A message that fails gets ErrorCode 300
  in its entry of the 200 answer, as Postmark reports per-message validation in a batch.

Everything else is answered 200 with one entry per message, in order: ErrorCode 0 with a fresh
MessageID, unless ``outcomes`` scripts an ErrorCode for the recipient's address (406 for an
inactive address, say). Accepted messages are kept in ``accepted``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from tests.apiserver import Answer, Request

MAX_MESSAGES = 500
MAX_BYTES = 50_000_000
TRACK_LINKS = frozenset({"None", "HtmlAndText", "HtmlOnly", "TextOnly"})

MESSAGES = {
    300: "Invalid 'To' address: '{to}'.",
    405: "You have run out of credits.",
    406: (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
        "addresses: {to}. Inactive recipients are ones that have generated a hard bounce, a "
        "spam complaint, or a manual suppression."
    ),
    429: "Rate limit exceeded.",
}


def error(status: int, code: int, message: str) -> Answer:
    return status, {}, {"ErrorCode": code, "Message": message}


@dataclass
class FakePostmark:
    """``respond`` for an ApiServer; ``outcomes`` maps a recipient address to an ErrorCode."""

    token: str = "server-token"
    outcomes: dict[str, int] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # entries with ErrorCode != 0
    batches: list[int] = field(default_factory=list)  # size of each request answered 200
    problems: list[str] = field(default_factory=list)  # why each invalid message was refused

    def respond(self, request: Request) -> Answer:
        if request.method != "POST" or request.path != "/email/batch":
            return 404, {}, "Not found"
        if request.headers.get("X-Postmark-Server-Token") != self.token:
            return error(401, 10, "Request does not contain a valid Server token.")
        for name in ("Accept", "Content-Type"):
            value = (request.headers.get(name) or "").split(";")[0].strip().lower()
            if value != "application/json":
                return error(
                    422, 409, "Accept and Content-Type headers must be set to application/json."
                )
        if len(request.body) > MAX_BYTES:
            return 413, {}, "Payload Too Large"
        try:
            body = json.loads(request.body)
        except ValueError:
            return error(422, 402, "The JSON data you provided is syntactically incorrect.")
        if not isinstance(body, list) or not body or not all(isinstance(m, dict) for m in body):
            return error(422, 403, "The request body must be a JSON array of messages.")
        if len(body) > MAX_MESSAGES:
            return error(422, 410, "Your batched request contains more than 500 messages.")
        self.batches.append(len(body))
        return 200, {}, [self._entry(message) for message in body]

    def _entry(self, message: dict[str, Any]) -> dict[str, Any]:
        to = str(message.get("To", ""))
        problem = self._problem(message)
        if problem:
            self.problems.append(problem)
            return self._refuse(message, 300, problem)
        code = self.outcomes.get(parseaddr(to)[1], 0)
        if code:
            return self._refuse(message, code, MESSAGES.get(code, "Refused.").format(to=to))
        self.accepted.append(message)
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": str(uuid.uuid4()),
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "To": to,
        }

    def _refuse(self, message: dict[str, Any], code: int, text: str) -> dict[str, Any]:
        self.refused.append({"ErrorCode": code, **message})
        return {"ErrorCode": code, "Message": text}

    @staticmethod
    def _problem(message: dict[str, Any]) -> str:
        """Why Postmark would refuse this message ("" when it would not)."""
        for name in ("From", "To", "Subject", "MessageStream"):
            if not isinstance(message.get(name), str) or not message[name].strip():
                return f"Missing or empty {name}."
        if not message.get("HtmlBody") and not message.get("TextBody"):
            return "Provide either email TextBody or HtmlBody or both."
        if not parseaddr(message["To"])[1] or "@" not in parseaddr(message["To"])[1]:
            return f"Invalid 'To' address: '{message['To']}'."
        headers = message.get("Headers", [])
        if not isinstance(headers, list) or not all(
            isinstance(h, dict) and set(h) == {"Name", "Value"} for h in headers
        ):
            return "Headers must be a list of {Name, Value} objects."
        metadata = message.get("Metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return "Metadata must be an object of strings."
        if message.get("TrackLinks", "None") not in TRACK_LINKS:
            return f"Invalid TrackLinks value {message['TrackLinks']!r}."
        return ""
