"""A fake of SendGrid's v3 Mail Send endpoint for :class:`tests.apiserver.ApiServer`.

It checks each request as SendGrid documents it (the Mail Send reference, its errors page and
its limitations page): the path, ``Authorization: Bearer <key>`` (else 401), a JSON body, 1 to
1,000 personalizations each with a ``to`` and no address twice in a request, a ``to.name``
without ``;`` or ``,``, ``from.email``, a subject (top level or in every personalization),
content values that are not empty with ``text/plain`` first and then ``text/html``, string
substitutions of at most 10,000 bytes and custom arguments of at most 10,000 bytes per
personalization, and no reserved header. A violation gets a 400 with the documented
``{"errors": [{"message", "field", "help"}]}`` body; a body over ``max_bytes`` gets a 413.

An accepted request gets a 202 with an empty body and an ``X-Message-Id``, and the fake expands
every personalization as SendGrid would (the substitutions applied to the content and the
subject, top-level headers overridden by the personalization's), recording what each recipient
gets in :attr:`FakeSendGrid.delivered`, so tests can compare it with the message itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.apiserver import Answer, Request

API_KEY = "SG.test-key.0123456789"
# The reserved headers of the Mail Send reference (compared in lower case).
RESERVED = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class _Invalid(Exception):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def errors(status: int, message: str, field: str | None = None) -> Answer:
    """SendGrid's error answer: ``{"errors": [{"message", "field", "help"}]}``."""
    return status, {}, {"errors": [{"message": message, "field": field, "help": None}]}


@dataclass
class Delivered:
    """What one recipient gets from an accepted request."""

    key: str  # custom_args["delivery"]
    message_id: str  # X-Message-Id.<personalization index>
    to: dict[str, str]
    sender: dict[str, str]
    reply_to: dict[str, str] | None
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    personal_headers: dict[str, str]
    custom_args: dict[str, str]
    substitutions: dict[str, str]
    tracking: dict[str, Any]


@dataclass
class FakeSendGrid:
    """``respond`` for an ApiServer. Change ``api_key`` mid-test to revoke the key."""

    api_key: str = API_KEY
    max_bytes: int = 30_000_000
    delivered: list[Delivered] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 202

    def respond(self, request: Request) -> Answer:
        if request.method != "POST" or request.path != "/v3/mail/send":
            return errors(404, "not found")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return errors(401, "authorization required")
        if len(request.body) > self.max_bytes:
            return errors(413, "content too large")
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return errors(400, "Content-Type should be application/json.")
        try:
            body = json.loads(request.body)
        except ValueError:
            return errors(400, "Bad Request")
        try:
            self._check(body)
        except _Invalid as e:
            return errors(400, e.message, e.field)
        message_id = f"fake{len(self.accepted) + 1:04d}-{len(request.body)}"
        self.accepted.append(body)
        self.delivered += self._expand_all(body, message_id)
        return 202, {"X-Message-Id": message_id}, b""

    # Validation ---------------------------------------------------------------------------
    @staticmethod
    def _headers(headers: Any, where: str) -> None:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise _Invalid("The headers parameter must be an object of strings.", where)
        reserved = sorted(k for k in headers if k.lower() in RESERVED)
        if reserved:
            raise _Invalid(
                f"The following headers are reserved and may not be used: {', '.join(reserved)}",
                where,
            )

    def _check(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Invalid("Bad Request", None)
        ps = body.get("personalizations")
        if not isinstance(ps, list) or not ps:
            raise _Invalid("You must have at least one personalization.", "personalizations")
        if len(ps) > 1000:
            raise _Invalid(
                "The personalization block is limited to 1000 personalizations per API "
                f"request. You have provided {len(ps)} personalizations. Please consider "
                "splitting this into multiple requests and resending your request.",
                "personalizations",
            )
        sender = body.get("from")
        if not isinstance(sender, dict) or not _EMAIL.match(str(sender.get("email", ""))):
            raise _Invalid(
                "The from object must be provided for every email send. It is an object that "
                "requires an email parameter, but may also contain a name parameter.",
                "from.email",
            )
        seen: set[str] = set()
        for n, p in enumerate(ps):
            where = f"personalizations.{n}"
            to = p.get("to") if isinstance(p, dict) else None
            if not isinstance(to, list) or not to:
                raise _Invalid(
                    "The to parameter is required for all personalization objects.", f"{where}.to"
                )
            for m, recipient in enumerate(to):
                email = str(recipient.get("email", "")) if isinstance(recipient, dict) else ""
                if not _EMAIL.match(email):
                    raise _Invalid("Does not contain a valid address.", f"{where}.to.{m}.email")
                if email.lower() in seen:
                    raise _Invalid(
                        "Each unique email address in the personalizations array should only "
                        f"be included once. You have included {email} more than once.",
                        f"{where}.to",
                    )
                seen.add(email.lower())
                if any(c in str(recipient.get("name", "")) for c in ";,"):
                    raise _Invalid(
                        "The to.name cannot include either the ; or , characters.",
                        f"{where}.to.{m}.name",
                    )
            subs = p.get("substitutions", {})
            if not isinstance(subs, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in subs.items()
            ):
                raise _Invalid(
                    "The substitutions parameter must be an object of strings.",
                    f"{where}.substitutions",
                )
            if sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) > 10_000:
                raise _Invalid(
                    "The total collective size of your substitutions may not exceed 10,000 "
                    "bytes per personalization object.",
                    f"{where}.substitutions",
                )
            args = p.get("custom_args", {})
            if len(json.dumps(args).encode()) > 10_000:
                raise _Invalid(
                    "The total size of custom arguments may not exceed 10,000 bytes.",
                    f"{where}.custom_args",
                )
            if "headers" in p:
                self._headers(p["headers"], f"{where}.headers")
        if "headers" in body:
            self._headers(body["headers"], "headers")
        if not body.get("subject") and not all(p.get("subject") for p in ps):
            raise _Invalid(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
            )
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise _Invalid(
                "Unless a valid template_id is provided, the content parameter is required.",
                "content",
            )
        types = []
        for n, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or not isinstance(part.get("value"), str)
                or not (part["value"])
            ):
                raise _Invalid(
                    "The content value must be a string at least one character in length.",
                    f"content.{n}.value",
                )
            types.append(part.get("type"))
        if len(set(types)) != len(types):
            raise _Invalid(
                "If present, text/plain and text/html may only be provided once.", "content"
            )
        if ("text/plain" in types and types[0] != "text/plain") or (
            "text/html" in types and types.index("text/html") != int("text/plain" in types)
        ):
            raise _Invalid(
                "If present, text/plain must be first, followed by text/html, followed by any "
                "other content.",
                "content",
            )

    # Expansion ----------------------------------------------------------------------------
    @staticmethod
    def _split(text: str, pattern: re.Pattern[str] | None) -> list[str]:
        """``text`` cut at the tags (odd indexes), as a one-pass substitution sees it."""
        return pattern.split(text) if pattern is not None else [text]

    @staticmethod
    def _join(pieces: list[str], subs: dict[str, str]) -> str:
        return "".join(subs.get(p, p) if i % 2 else p for i, p in enumerate(pieces))

    def _expand_all(self, body: dict[str, Any], message_id: str) -> list[Delivered]:
        ps = body["personalizations"]
        tags = {k for p in ps for k in p.get("substitutions", {})}
        alternatives = "|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True))
        pattern = re.compile(f"({alternatives})") if tags else None
        content = {c["type"]: self._split(c["value"], pattern) for c in body["content"]}
        out = []
        for n, p in enumerate(ps):
            subs = p.get("substitutions", {})
            own = p.get("headers", {})
            subject = self._split(p.get("subject") or body["subject"], pattern)
            parts = {kind: self._join(pieces, subs) for kind, pieces in content.items()}
            out.append(
                Delivered(
                    key=p.get("custom_args", {}).get("delivery", ""),
                    message_id=f"{message_id}.{n}",
                    to=p["to"][0],
                    sender=body["from"],
                    reply_to=body.get("reply_to"),
                    subject=self._join(subject, subs),
                    text=parts.get("text/plain"),
                    html=parts.get("text/html"),
                    headers={**body.get("headers", {}), **own},
                    personal_headers=dict(own),
                    custom_args=dict(p.get("custom_args", {})),
                    substitutions=dict(subs),
                    tracking=body.get("tracking_settings", {}),
                )
            )
        return out
