"""A fake of Mailgun's messages API for :class:`tests.apiserver.ApiServer`.

It checks a request as Mailgun documents ``POST /v3/<domain>/messages``: the path, HTTP basic
auth ``api:<key>`` (else 401 ``Forbidden``), a ``multipart/form-data`` body with ``from``,
``to``, ``subject`` and ``text`` or ``html``, at most 1,000 recipients, ``o:``/``h:``/``v:``
options within 16 kB, ASCII header names, and a size cap (413). Where Mailgun is lenient the fake
is strict, so a provider's mistakes show: ``recipient-variables`` is required and must be a JSON
object whose keys are exactly the bare ``to`` addresses (without it every recipient would see
all the others), an address may appear once per request, and every ``%recipient.x%`` reference
must resolve. Violations get 400 ``{"message": ...}``, as Mailgun answers.

An accepted request is answered 200 ``{"id": "<...@domain>", "message": "Queued. Thank you."}``
and expanded as Mailgun would: one :class:`Copy` per recipient with ``%recipient.x%`` replaced
in the subject, html, text, ``h:`` headers and ``v:`` variables, so tests can compare what each
recipient gets with the message the provider was given.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.apiserver import Answer, Request

MAX_RECIPIENTS = 1000
MAX_OPTIONS = 16 * 1024  # bytes of o:, h: and v: parameters together
_REFERENCE = re.compile(r"%recipient\.([^%\s]+)%")
_ADDRESS = re.compile(r"^[^@\s,<>\"]+@[^@\s,<>\"]+\.[^@\s,<>\"]+$")


@dataclass
class Copy:
    """What one recipient of an accepted request would get."""

    id: str
    address: str
    to: str  # the To header: the ``to`` value naming this recipient
    sender: str
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]  # from h: fields, expanded
    variables: dict[str, str]  # from v: fields, expanded (events' user-variables)
    options: dict[str, str]  # o: fields


@dataclass
class Accepted:
    """One accepted request: its id, its form fields (repeats kept) and its copies."""

    id: str
    fields: list[tuple[str, str]]
    copies: list[Copy]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeMailgun:
    """``ApiServer(FakeMailgun(...).respond)``; ``max_bytes`` caps a request's body (413)."""

    domain: str = "mg.example.org"
    api_key: str = "key-test"
    max_bytes: int = 25 * 1024 * 1024
    accepted: list[Accepted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def copies(self) -> list[Copy]:
        return [c for a in self.accepted for c in a.copies]

    def respond(self, request: Request) -> Answer:
        try:
            return 200, {}, self._accept(request)
        except _Refused as e:
            if e.status == 401:
                return 401, {"Content-Type": "text/plain"}, "Forbidden"
            return e.status, {}, {"message": e.message}

    def _accept(self, request: Request) -> dict[str, str]:
        path = unquote(urlsplit(request.path).path)
        if path != f"/v3/{self.domain}/messages":
            raise _Refused(404, f"Domain not found: {path}")
        if request.method != "POST":
            raise _Refused(405, "Method not allowed")
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            raise _Refused(401, "Forbidden")
        if len(request.body) > self.max_bytes:
            raise _Refused(413, "Request Entity Too Large")
        if not request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            raise _Refused(400, "fake: the body must be multipart/form-data")
        fields = request.form()
        form: dict[str, list[str]] = {}
        for name, value in fields:
            form.setdefault(name, []).append(value)

        def one(name: str) -> str | None:
            values = form.get(name, [])
            if len(values) > 1:
                raise _Refused(400, f"fake: {name} given {len(values)} times")
            return values[0] if values else None

        sender = one("from")
        if not sender:
            raise _Refused(400, "from parameter is missing")
        if not form.get("to"):
            raise _Refused(400, "to parameter is missing")
        subject = one("subject")
        if subject is None:
            raise _Refused(400, "subject parameter is missing")
        html, text = one("html"), one("text")
        if not html and not text:
            raise _Refused(400, "Need at least one of 'text' or 'html' parameters specified")
        options = sum(
            len(k.encode()) + len(v.encode()) for k, v in fields if k[:2] in ("o:", "h:", "v:")
        )
        if options > MAX_OPTIONS:
            raise _Refused(
                400,
                "Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total",
            )
        for name, _ in fields:
            if name.startswith("h:") and not name.isascii():
                raise _Refused(400, f"Header name must be pure ASCII: {name[2:]}")

        recipients: list[tuple[str, str]] = []  # (to value, bare address)
        for value in form["to"]:
            for _, address in getaddresses([value]):
                if not _ADDRESS.match(address):
                    raise _Refused(
                        400, "to parameter is not a valid address. please check documentation"
                    )
                recipients.append((value, address))
        if len(recipients) > MAX_RECIPIENTS:
            raise _Refused(400, f"Too many recipients; max is {MAX_RECIPIENTS}")
        addresses = [a for _, a in recipients]
        if len({a.lower() for a in addresses}) != len(addresses):
            raise _Refused(400, "fake: an address appears twice in one request")

        raw_variables = one("recipient-variables")
        if raw_variables is None:
            raise _Refused(
                400, "fake: recipient-variables missing: recipients would see each other"
            )
        try:
            variables = json.loads(raw_variables)
        except ValueError as e:
            raise _Refused(400, f"recipient-variables is not valid JSON: {e}") from None
        if not isinstance(variables, dict) or not all(
            isinstance(v, dict) for v in variables.values()
        ):
            raise _Refused(400, "recipient-variables must map each address to an object")
        if set(variables) != set(addresses):
            raise _Refused(
                400,
                "fake: recipient-variables keys are not the to addresses: "
                f"missing {sorted(set(addresses) - set(variables))}, "
                f"unknown {sorted(set(variables) - set(addresses))}",
            )

        with self._lock:
            n = len(self.accepted) + 1
        message_id = f"<20260101000000.{n}.{len(addresses)}@{self.domain}>"
        copies = []
        for to, address in recipients:
            own: dict[str, Any] = variables[address]

            def expand(value: str, own: dict[str, Any] = own, address: str = address) -> str:
                def sub(m: re.Match[str]) -> str:
                    if m.group(1) not in own:
                        raise _Refused(400, f"fake: {m.group(0)} unresolved for {address}")
                    return str(own[m.group(1)])

                return _REFERENCE.sub(sub, value)

            copies.append(
                Copy(
                    id=message_id,
                    address=address,
                    to=to,
                    sender=sender,
                    subject=expand(subject),
                    html=None if html is None else expand(html),
                    text=None if text is None else expand(text),
                    headers={k[2:]: expand(v) for k, v in fields if k.startswith("h:")},
                    variables={k[2:]: expand(v) for k, v in fields if k.startswith("v:")},
                    options={k[2:]: v for k, v in fields if k.startswith("o:")},
                )
            )
        with self._lock:
            self.accepted.append(Accepted(message_id, fields, copies))
        return {"id": message_id, "message": "Queued. Thank you."}
