"""The Mailgun provider: batch sending through ``POST /v3/{domain}/messages``.

A variant's body goes to Mailgun once per request, not once per recipient. Messages that share
a :class:`~digest.models.BodyTemplate` (and the same sender, subject and header names) are sent
together, up to 1,000 recipients a request, each address at most once per request. In the
shared html and text every personal token becomes a recipient variable reference:
``%recipient.html_unsubscribe_url%`` in the HTML part (its value HTML-escaped, as the render
stage escapes it) and ``%recipient.text_unsubscribe_url%`` in the text part, so what each
recipient gets equals their ``message.html``/``message.text``. The template comes with its bodies
cut at their tokens, so no token is looked for here.
A message without a template, or alone in its request, goes with its own finished bodies.

Fields of a request (``multipart/form-data``, HTTP basic auth ``api:<key>``):

- ``from``, one ``to`` per recipient (with the display name of the message's To header),
  ``subject``, ``html``, ``text``;
- ``recipient-variables``, always: a JSON object keyed by each bare address. Only with it does
  Mailgun send each ``to`` recipient a separate copy; without it every recipient would see all
  the others in To;
- ``h:<Name>`` for the message's own headers except those Mailgun writes itself (From, To,
  Subject, Date, Message-ID, MIME-Version, Content-*). A header whose value differs between the
  request's recipients (List-Unsubscribe) goes as ``%recipient.h:<Name>%`` with each recipient's
  value in their variables; shared ones (List-Unsubscribe-Post, List-Id, Reply-To) as they are;
- ``v:delivery`` (the message's ``key``, per recipient in the same way) and ``v:edition``:
  Mailgun hands these back as ``user-variables`` in events and webhooks, so an event maps to its
  ledger row. They also travel in the delivered copy's ``X-Mailgun-Variables`` header;
- ``o:tracking``, ``o:tracking-clicks``, ``o:tracking-opens`` all ``no``: links stay as written.

Mailgun writes its own Message-ID (the ``id`` it answers with); ``OutgoingMessage.message_id``
is not sent. ``provider_id`` is that id plus ``#<n>``, the message's place (from 0) in the
request's ``to`` list, so every message's id is distinct.

Answers, per request:

- 200 ``{"id": ..., "message": "Queued. Thank you."}``: every message of the request
  ``SUBMITTED``;
- 400 ``{"message": ...}``: ``PERMANENT`` for the request's messages, quoting Mailgun. When
  Mailgun refuses a ``to`` address in a request of several recipients, the request is split in
  halves and sent again until the refused address is alone, so the others still go out;
- 413 (too large): split in halves and sent again, down to single messages (then
  ``PERMANENT``);
- 401/403 (credentials refused) and 404 (no such domain; the URL or region is wrong): raise
  :class:`~digest.errors.PermanentDeliveryError` when no earlier request of the batch was
  written; later in a batch, the messages not yet sent come back ``TRANSIENT``;
- 408, 429, 5xx and connection errors are retried by :class:`~digest.delivery.httpapi.ApiClient`
  (``Retry-After`` honoured). When the tries run out, that request's messages and every message
  not yet sent come back ``TRANSIENT`` with the last ``retry_after`` hint; the batch stops there
  rather than hammering an API that is down or rate-limiting;
- anything else: ``TRANSIENT``, quoting the answer.

``on_result`` is told each request's results right after its answer, before the next request;
when a batch mixes variants that order follows the requests, while the returned list keeps the
batch's order.

What this relies on (Mailgun's public documentation):

- https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/ :
  ``POST /v3/{domain_name}/messages``, basic auth, ``multipart/form-data``, fields ``from``,
  ``to`` (``"Bob <bob@host.com>"``), ``subject``, ``html``, ``text``, ``recipient-variables``
  ("key is a plain recipient address"), ``h:X-My-Header``, ``v:my-var``, ``o:tracking*``;
- https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending :
  ``%recipient.<key>%`` references (also in the subject, a header), at most 1,000 recipients a
  batch, a separate copy per ``to`` recipient only when recipient variables are given;
- https://documentation.mailgun.com/en/latest/api-sending.html : ``o:``/``h:``/``v:`` options
  limited to 16 kB in total (so personal values go in recipient variables), 25 MB per message;
- https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses : 400 carries a
  JSON ``message``, 403 for refused credentials, 429 and 500 to be retried;
- https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/send-attachments
  (Attaching Metadata): ``v:`` variables come back in events, and are visible to recipients;
- the ``%recipient.h:<Name>%`` and ``%recipient.v:<name>%`` forms for per-recipient headers and
  variables are those django-anymail's Mailgun backend uses for its ``merge_headers`` and
  ``merge_metadata`` (https://anymail.readthedocs.io/en/stable/esps/mailgun/); Mailgun's own
  pages show substitution in the subject and bodies but do not spell it out for ``h:``/``v:``.
- EU domains use https://api.eu.mailgun.net (``delivery.mailgun.base_url``).
"""

from __future__ import annotations

import html
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from urllib.parse import quote

import requests

from digest.config import MailgunSettings, RetrySettings
from digest.delivery.base import OnResult, ProviderBase, permanent, submitted, transient
from digest.delivery.httpapi import ApiClient, RequestFailed
from digest.errors import PermanentDeliveryError
from digest.models import BodyTemplate, OutgoingMessage, SendResult

MAX_RECIPIENTS = 1000  # per request: Mailgun's batch sending limit
# Headers Mailgun writes itself from the request's fields (or on its own): never sent as h:.
_OWN_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "return-path"}
)
# Mailgun's 400 when it refuses a recipient: "to parameter is not a valid address. please ...".
_TO_REFUSED = re.compile(r"\bto\b[^.]*\bnot a valid address", re.IGNORECASE)
_NOT_NAME = re.compile(r"[^a-z0-9]+")
FormFields = list[tuple[str, tuple[None, str]]]


def _sent_as_header(name: str) -> bool:
    lower = name.lower()
    return lower not in _OWN_HEADERS and not lower.startswith("content-")


@dataclass(frozen=True)
class _Group:
    """What the requests of one group share: the bodies with references in place of tokens."""

    html: str
    text: str
    # (token, HTML variable, text variable) for every token replaced in the bodies
    refs: tuple[tuple[str, str, str], ...] = ()
    batched: bool = False


_SINGLE = _Group("", "", batched=False)


def _fill(parts: tuple[str, ...], refs: dict[str, str]) -> str:
    """``parts`` as a :class:`BodyTemplate` carries them, each token (odd index) that has a
    reference replaced by it; any other token stays as it is."""
    return "".join(refs.get(p, p) if i % 2 else p for i, p in enumerate(parts))


def _group_of(template: BodyTemplate, tokens: Sequence[str]) -> _Group:
    """The shared bodies with each token replaced by a recipient variable reference."""
    refs: list[tuple[str, str, str]] = []
    used: set[str] = set()
    for token in tokens:
        base = _NOT_NAME.sub("_", token.lower()).strip("_") or "token"
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}_{n}"
        used.add(slug)
        refs.append((token, f"html_{slug}", f"text_{slug}"))
    if not refs:
        return _Group(template.html, template.text, (), batched=True)
    html_ref = {token: f"%recipient.{h}%" for token, h, _ in refs}
    text_ref = {token: f"%recipient.{t}%" for token, _, t in refs}
    return _Group(
        _fill(template.html_parts, html_ref),
        _fill(template.text_parts, text_ref),
        tuple(refs),
        batched=True,
    )


def _to_field(message: OutgoingMessage) -> str:
    """The ``to`` value: the To header (display name and address) when it names exactly this
    recipient, else the bare address. Recipient variables are keyed by the bare address."""
    header = message.headers.get("To", "")
    if header and "\r" not in header and "\n" not in header:
        pairs = getaddresses([header])
        if len(pairs) == 1 and pairs[0][1].lower() == message.recipient.lower():
            return header
    return message.recipient


@dataclass
class _Batch:
    """One ``send`` call's state: results by position, and whether to go on."""

    messages: Sequence[OutgoingMessage]
    on_result: OnResult | None
    results: list[SendResult | None] = field(default_factory=list)
    written: bool = False  # some request of this batch reached the API
    stopped: RequestFailed | None = None  # the failure that ended the batch early

    def report(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(result)


class MailgunProvider(ProviderBase):
    """Sends through Mailgun's messages API for ``settings.domain``.

    ``api_key`` overrides ``settings.api_key``; ``retry.request_attempts`` bounds the tries of
    one request. ``sleep`` and ``rng`` are injectable for tests.
    """

    name = "mailgun"

    def __init__(
        self,
        settings: MailgunSettings,
        retry: RetrySettings | None = None,
        *,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        retry = retry or RetrySettings()
        self.settings = settings
        self._api_key = settings.api_key.get_secret_value() if api_key is None else api_key
        # Waits inside one request stay short; a longer Retry-After is handed back as the
        # results' retry_after for the deliver stage to honour.
        self.client = ApiClient.for_provider(
            "Mailgun",
            settings,
            retry,
            auth=("api", self._api_key),
            sleep=sleep,
            rng=rng,
        )
        self.path = f"v3/{quote(settings.domain, safe='')}/messages"

    @property
    def url(self) -> str:
        return self.client.url(self.path)

    def close(self) -> None:
        self.client.close()

    # Sending ------------------------------------------------------------------------------
    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        if not self.settings.domain or "/" in self.settings.domain:
            raise PermanentDeliveryError(
                f"Mailgun: sending domain {self.settings.domain!r} is not usable; "
                "set delivery.mailgun.domain"
            )
        if not self._api_key:
            raise PermanentDeliveryError(
                "Mailgun: no API key; set DIGEST__DELIVERY__MAILGUN__API_KEY"
            )
        batch = _Batch(messages, on_result, [None] * len(messages))
        for group, chunk in self._plan(messages):
            self._submit(batch, group, chunk)
        results = [r for r in batch.results if r is not None]
        assert len(results) == len(messages), "every message gets a result"
        return results

    def _plan(self, messages: Sequence[OutgoingMessage]) -> list[tuple[_Group, list[int]]]:
        """Requests to make: groups in order of first appearance, each in chunks of at most
        MAX_RECIPIENTS with every address (compared without case) once per chunk."""
        groups: dict[object, tuple[_Group, list[int]]] = {}
        for index, m in enumerate(messages):
            if m.template is None:
                groups[("single", index)] = (_SINGLE, [index])
                continue
            shape = (
                m.template.id,
                m.edition_id,
                m.sender,
                m.subject,
                tuple(sorted(m.tokens)),
                tuple(sorted(m.headers)),
                m.headers.get("From", ""),
            )
            if shape not in groups:
                group = _group_of(m.template, sorted(m.tokens))
                groups[shape] = (group, [])
            groups[shape][1].append(index)
        plan: list[tuple[_Group, list[int]]] = []
        for group, indices in groups.values():
            chunks: list[list[int]] = []
            seen: list[set[str]] = []
            start = 0  # chunks before it are full
            for index in indices:
                address = messages[index].recipient.lower()
                for c in range(start, len(chunks)):
                    if len(chunks[c]) < MAX_RECIPIENTS and address not in seen[c]:
                        chunks[c].append(index)
                        seen[c].add(address)
                        break
                else:
                    chunks.append([index])
                    seen.append({address})
                while start < len(chunks) and len(chunks[start]) >= MAX_RECIPIENTS:
                    start += 1
            plan.extend((group, chunk) for chunk in chunks)
        return plan

    def _submit(self, batch: _Batch, group: _Group, chunk: list[int]) -> None:
        """One request for ``chunk`` (more when it has to be split); reports every message."""
        messages = batch.messages
        if batch.stopped is not None:
            stop = batch.stopped
            for i in chunk:
                reason = f"not sent: {stop.reason}"
                batch.report(i, transient(messages[i].key, reason, retry_after=stop.retry_after))
            return
        fields = self._fields(messages, group, chunk)
        earlier = batch.written
        try:
            response = self.client.post(self.path, files=fields)
        except PermanentDeliveryError as e:
            if not earlier:
                raise  # nothing of the batch was sent: the caller may retry it whole
            batch.stopped = RequestFailed(e.message, None)
            self._submit(batch, group, chunk)
            return
        except RequestFailed as failed:
            batch.written = True
            batch.stopped = failed
            for i in chunk:
                key = messages[i].key
                batch.report(i, transient(key, failed.reason, retry_after=failed.retry_after))
            return
        batch.written = True
        self._answer(batch, group, chunk, response, earlier=earlier)

    def _answer(
        self,
        batch: _Batch,
        group: _Group,
        chunk: list[int],
        response: requests.Response,
        *,
        earlier: bool,
    ) -> None:
        messages = batch.messages
        status = response.status_code
        detail = _detail(response)
        reason = f"Mailgun {self.url}: HTTP {status}: {detail}"
        if status == 200:
            mailgun_id = _queued_id(response)
            if mailgun_id is None:
                for i in chunk:
                    batch.report(i, transient(messages[i].key, f"{reason}: no message id"))
                return
            for n, i in enumerate(chunk):
                batch.report(i, submitted(messages[i].key, f"{mailgun_id}#{n}"))
            return
        split = len(chunk) > 1 and (
            status == 413 or (status == 400 and _TO_REFUSED.search(detail) is not None)
        )
        if split:
            half = len(chunk) // 2
            self._submit(batch, group, chunk[:half])
            self._submit(batch, group, chunk[half:])
            return
        if status in (400, 413):
            for i in chunk:
                batch.report(i, permanent(messages[i].key, reason))
            return
        if status == 404:
            # No such domain here: the domain, the URL or the region is wrong.
            error = f"{reason}; check delivery.mailgun.domain and base_url (EU: api.eu.mailgun.net)"
            if not earlier:
                raise PermanentDeliveryError(error)
            batch.stopped = RequestFailed(error, None)
            self._submit(batch, group, chunk)
            return
        for i in chunk:
            batch.report(i, transient(messages[i].key, reason))

    def _fields(
        self, messages: Sequence[OutgoingMessage], group: _Group, chunk: list[int]
    ) -> FormFields:
        """The form of one request for the messages at ``chunk`` (one group, distinct addresses)."""
        first = messages[chunk[0]]
        batched = group.batched and len(chunk) > 1
        body_html, body_text = (group.html, group.text) if batched else (first.html, first.text)
        variables: dict[str, dict[str, str]] = {messages[i].recipient: {} for i in chunk}
        fields: FormFields = [("from", (None, first.headers.get("From") or first.sender))]
        fields += [("to", (None, _to_field(messages[i]))) for i in chunk]
        fields.append(("subject", (None, first.subject)))
        if body_html:
            fields.append(("html", (None, body_html)))
        if body_text:
            fields.append(("text", (None, body_text)))
        if batched:
            for i in chunk:
                m = messages[i]
                own = variables[m.recipient]
                for token, html_var, text_var in group.refs:
                    value = m.tokens.get(token, "")
                    own[html_var] = html.escape(value, quote=True)
                    own[text_var] = value
        # Headers and variables: as they are when every recipient shares the value, else
        # through each recipient's variables.
        options: dict[str, list[str]] = {}
        for name in first.headers:
            if _sent_as_header(name):
                options[f"h:{name}"] = [messages[i].headers.get(name, "") for i in chunk]
        options["v:delivery"] = [messages[i].key for i in chunk]
        options["v:edition"] = [messages[i].edition_id for i in chunk]
        for option, values in options.items():
            if all(v == values[0] for v in values):
                fields.append((option, (None, values[0])))
                continue
            fields.append((option, (None, f"%recipient.{option}%")))
            for i, value in zip(chunk, values, strict=True):
                variables[messages[i].recipient][option] = value
        fields += [
            ("o:tracking", (None, "no")),
            ("o:tracking-clicks", (None, "no")),
            ("o:tracking-opens", (None, "no")),
        ]
        # Always: without recipient variables every recipient would see all the others in To.
        fields.append(("recipient-variables", (None, json.dumps(variables, ensure_ascii=False))))
        return fields


def _detail(response: requests.Response) -> str:
    """Mailgun's ``message`` from a JSON answer, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    return response.text[:300].strip()


def _queued_id(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return str(body["id"])
    return None
