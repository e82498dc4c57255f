"""The SendGrid provider: the v3 Mail Send API, with a variant's body sent once per request.

What SendGrid documents, and this module relies on:

- ``POST /v3/mail/send`` with ``Authorization: Bearer <API key>`` and a JSON body: a list of
  ``personalizations`` (each: ``to`` [{email, name}], optional ``subject``, ``headers``,
  ``substitutions``, ``custom_args``), ``from`` {email, name}, ``reply_to``, ``subject``,
  ``content`` [{type, value}], ``headers``, ``tracking_settings``. At most 1,000
  personalizations (and 1,000 recipients) per request; each email address at most once per
  request; the substitutions of one personalization may not exceed 10,000 bytes in all, nor may
  its custom arguments; ``text/plain`` content must come first, then ``text/html``, and no
  content value may be empty; ``to.name`` may not contain ``;`` or ``,``; the whole email must
  be under 30 MB. Headers may not override ``x-sg-id``, ``x-sg-eid``, ``received``,
  ``dkim-signature``, ``Content-Type``, ``Content-Transfer-Encoding``, ``To``, ``From``,
  ``Subject``, ``Reply-To``, ``CC``, ``BCC``; non-ASCII header values must be encoded.
  Substitutions apply to the subject, reply-to and content.
  (https://www.twilio.com/docs/sendgrid/api-reference/mail-send, its OpenAPI description in
  github.com/twilio/sendgrid-oai ``spec/json/tsg_mail_v3.json``, and
  https://docs.sendgrid.com/api-reference/mail-send/limitations)
- Answers: ``202`` with an empty body and an ``X-Message-Id`` header when the request is
  queued (https://sendgrid.com/docs/glossary/x-message-id/); ``400`` with
  ``{"errors": [{"message", "field", "help"}]}`` when it is refused as a whole
  (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors); ``401``/``403`` for
  refused credentials or an unverified sender; ``413`` when the payload is too large;
  ``429`` with ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (a
  Unix time) when rate limited
  (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits);
  ``5xx`` on SendGrid's side. A personalization's ``custom_args`` are "carried along with the
  email and its activity data", i.e. the event webhook's events.

How a batch becomes requests:

- Messages whose bodies are their variant's :class:`~digest.models.BodyTemplate` with the
  personal tokens filled in (checked for each message: the template, its tokens escaped for
  the HTML part, must give exactly ``message.html`` and ``message.text``) are grouped by
  ``template.id`` (and From and Reply-To), then cut into requests of at most 1,000
  personalizations with no address twice. The shared content goes once per request, each
  token (the template comes cut at its tokens) replaced by a substitution tag such as
  ``-greeting_html_1f0c9a2e-`` (one tag for the HTML part, another for the text part, since
  only the HTML values are escaped); the tag's suffix is chosen per request so that it occurs
  nowhere in the bodies, subjects, headers or values, so SendGrid can replace nothing but the
  tags. Each personalization's
  ``substitutions`` carry that recipient's values.
- A message without a template, whose bodies do not match it, or whose substitutions would
  pass 10,000 bytes, goes alone in a request with its own bodies and no substitutions.
- Per personalization: ``to`` (the recipient, with the To header's display name, ``;`` and
  ``,`` replaced by spaces), the headers that differ between the request's messages (always
  ``List-Unsubscribe``), a per-personalization ``subject`` only when subjects differ, and
  ``custom_args`` ``{"delivery": message.key}`` so event webhooks map back to the ledger.
  Top level: ``from`` and ``reply_to`` parsed from the headers, the shared headers (e.g.
  ``List-Id``, ``List-Unsubscribe-Post``), and ``tracking_settings`` turning click, open and
  subscription tracking and Google Analytics off (links already carry UTM; no pixel). Headers
  SendGrid writes itself (the reserved list above, plus Date, Message-ID, MIME-Version and
  Return-Path) are not sent.

Answers become results, one request at a time, reported before the next request:

- 202: every message of the request ``SUBMITTED``; ``provider_id`` is ``X-Message-Id`` plus
  the personalization's index (``"<id>.<n>"``), distinct per message. That is this module's
  own naming: SendGrid's events carry ``sg_message_id`` (which starts with the X-Message-Id)
  and ``delivery``, the ledger key, to match on.
- 400: ``PERMANENT`` (not a bounce), SendGrid's error messages in the reason. SendGrid refuses
  a request as a whole, so when every error names a personalization (``personalizations.3…``)
  only those messages fail and the others go again in a new request.
- 413 (or a request body over 30 MB before sending): the request is split in halves, down to
  single messages; a single message still too large is ``PERMANENT``.
- 429, 5xx, timeouts and connection errors are retried by :class:`ApiClient` (``Retry-After``
  is a floor; SendGrid's ``X-RateLimit-Reset`` stands in for it when absent); when the tries
  run out the request's messages are ``TRANSIENT`` with the last hint, and the rest of the batch
  too, without further requests (the API is failing).
- 401/403, or an answer that shows the configuration is wrong (404, a redirect…): raised as
  :class:`PermanentDeliveryError` when it is the batch's first request and nothing was written
  before; otherwise the request's messages and the rest of the batch are ``TRANSIENT``.

Request retries wait ``ApiClient``'s default base delay (about a second, doubling, jittered)
capped by ``retry.max_delay``; ``retry.request_attempts`` tries per request.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.header import Header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import Any

from requests import Response

from digest.config import RetrySettings, SendGridSettings
from digest.delivery.base import OnResult, ProviderBase, permanent, submitted, transient
from digest.delivery.httpapi import ApiClient, RequestFailed
from digest.errors import PermanentDeliveryError
from digest.models import BodyTemplate, OutgoingMessage, SendResult

SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
# "The total size of your email, including attachments, must be less than 30MB."
MAX_REQUEST_BYTES = 30_000_000
# SendGrid's reserved headers, and those it writes itself (compared in lower case).
RESERVED_HEADERS = frozenset(
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
        "date",
        "message-id",
        "mime-version",
        "return-path",
    }
)
# Headers sent per personalization even when every message of a request has the same value.
PERSONAL_HEADERS = frozenset({"list-unsubscribe"})
TRACKING_OFF: dict[str, dict[str, bool]] = {
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
    "ganalytics": {"enable": False},
}
_JSON = {"Content-Type": "application/json"}
_NAME_SEPARATORS = re.compile(r"[;,]")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_FIELD_INDEX = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
_NONCE_LENGTH = 8

Part = tuple[str, str]  # (token, "html" | "text")


def nonce(seed: str, attempt: int) -> str:
    """The ``attempt``-th candidate suffix for a request's substitution tags (hex digits)."""
    digest = hashlib.sha256(f"{seed}\0{attempt}".encode()).hexdigest()
    return digest[:_NONCE_LENGTH]


def substitution_tag(token: str, part: str, suffix: str) -> str:
    """``-greeting_html_1f0c9a2e-`` for ``%%GREETING%%`` in the HTML part."""
    return f"-{token.strip('%').lower()}_{part}_{suffix}-"


def _substitution_bytes(values: dict[Part, str]) -> int:
    """What a personalization's ``substitutions`` weigh, tags (keys) and values in UTF-8."""
    suffix = "0" * _NONCE_LENGTH
    return sum(
        len(substitution_tag(token, part, suffix).encode()) + len(value.encode())
        for (token, part), value in values.items()
    )


def _fill(parts: tuple[str, ...], values: dict[str, str]) -> str:
    """``parts`` as a :class:`BodyTemplate` carries them, each token (odd index) replaced."""
    return "".join(values[p] if i % 2 else p for i, p in enumerate(parts))


def _values(template: BodyTemplate, message: OutgoingMessage) -> dict[Part, str] | None:
    """This recipient's substitution values, or None when the template and tokens do not give
    exactly the message's own bodies (then it must go with its own content)."""
    tokens = message.tokens
    escaped: dict[str, str] = {}
    try:
        for token in template.html_parts[1::2]:
            escaped[token] = html.escape(tokens[token], quote=True)
        if _fill(template.html_parts, escaped) != message.html:
            return None
        if _fill(template.text_parts, tokens) != message.text:
            return None
    except KeyError:
        return None
    out: dict[Part, str] = {(t, "html"): escaped[t] for t in template.html_parts[1::2]}
    out.update({(t, "text"): tokens[t] for t in template.text_parts[1::2]})
    return out


@dataclass(slots=True)
class _Entry:
    """One message of the batch: ``index`` is its place there, ``values`` its substitutions
    (empty when it goes with its own content)."""

    index: int
    message: OutgoingMessage
    values: dict[Part, str]


@dataclass(slots=True)
class _Request:
    """What one POST carries: personalization ``n`` is ``entries[n]``. ``template`` is the
    shared variant, or None for a single message sent with its own bodies."""

    entries: list[_Entry]
    template: BodyTemplate | None

    def halves(self) -> list[_Request]:
        half = len(self.entries) // 2
        return [
            _Request(self.entries[:half], self.template),
            _Request(self.entries[half:], self.template),
        ]


def _chunks(entries: list[_Entry]) -> Iterator[list[_Entry]]:
    """``entries`` in order, at most 1,000 a request and no address twice in one."""
    pending = entries
    while pending:
        chunk: list[_Entry] = []
        seen: set[str] = set()
        rest: list[_Entry] = []
        for entry in pending:
            address = entry.message.recipient.lower()
            if len(chunk) < MAX_PERSONALIZATIONS and address not in seen:
                chunk.append(entry)
                seen.add(address)
            else:
                rest.append(entry)
        yield chunk
        pending = rest


def _address(header: str | None, fallback: str) -> dict[str, str]:
    name, email = parseaddr(header or "")
    out = {"email": email or fallback}
    if name:
        out["name"] = name
    return out


def _recipient(message: OutgoingMessage) -> dict[str, str]:
    """``to`` for the message: its address, with the To header's display name if any."""
    out = {"email": message.recipient}
    name, email = parseaddr(message.headers.get("To", ""))
    if name and email.lower() == message.recipient.lower():
        clean = " ".join(_NAME_SEPARATORS.sub(" ", name).split())
        if clean:
            out["name"] = clean
    return out


def _raw_header(raw: bytes, name: str) -> str | None:
    """The header ``name`` as the message's own bytes carry it (RFC 2047 encoded), unfolded."""
    value = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)[name]
    if not isinstance(value, str):
        return None
    return _UNFOLD.sub("", value).strip()


def _header_value(message: OutgoingMessage, name: str, value: str) -> str:
    """One line, ASCII: SendGrid wants non-ASCII header values encoded."""
    value = _LINE_BREAKS.sub(" ", value)
    if value.isascii():
        return value
    raw = _raw_header(message.raw, name)
    if raw is not None and raw.isascii():
        return raw
    return _UNFOLD.sub("", Header(value, "utf-8").encode(linesep="\n"))


def _errors(response: Response) -> str:
    """SendGrid's ``errors`` list as one line; the raw text when the body is not that."""
    try:
        errors = response.json()["errors"]
        parts = []
        for error in errors:
            where = error.get("field")
            message = str(error.get("message", "")).strip()
            parts.append(f"{where}: {message}" if where and where != "null" else message)
        text = "; ".join(p for p in parts if p)
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()
    return text[:1000] or "(no details)"


def _personalization_errors(response: Response, count: int) -> dict[int, str] | None:
    """When every error of a 400 names a personalization, the messages by index; else None."""
    try:
        errors = response.json()["errors"]
        out: dict[int, list[str]] = {}
        for error in errors:
            match = _FIELD_INDEX.match(str(error.get("field") or ""))
            if match is None or int(match.group(1)) >= count:
                return None
            out.setdefault(int(match.group(1)), []).append(
                f"{error['field']}: {str(error.get('message', '')).strip()}"
            )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return {index: "; ".join(texts) for index, texts in out.items()} or None


def _rate_limit_hint(response: Response, *args: Any, **kwargs: Any) -> None:
    """A 429 without Retry-After: derive it from ``X-RateLimit-Reset`` (a Unix time), so that
    ApiClient waits until the limit resets."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    if reset.isdigit():
        response.headers["Retry-After"] = str(max(0, int(reset) - int(time.time())))


class SendGridProvider(ProviderBase):
    """Submits messages through SendGrid's v3 Mail Send API (see the module docstring).

    ``api_key`` overrides ``settings.api_key``; ``sleep`` and ``rng`` are handed to the HTTP
    client's retries (tests inject them).
    """

    name = "sendgrid"

    def __init__(
        self,
        settings: SendGridSettings,
        retry: RetrySettings | None = None,
        *,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        retry = retry or RetrySettings()
        key = settings.api_key.get_secret_value() if api_key is None else api_key
        self._client = ApiClient.for_provider(
            "SendGrid",
            settings,
            retry,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            sleep=sleep,
            rng=rng,
        )
        self._client.session.hooks["response"].append(_rate_limit_hint)

    @property
    def requests_written(self) -> int:
        """HTTP requests written so far, retries included."""
        return self._client.requests

    def close(self) -> None:
        self._client.close()

    # Planning -----------------------------------------------------------------------------
    def _plan(self, messages: Sequence[OutgoingMessage]) -> list[_Request]:
        templates: dict[str, BodyTemplate] = {}
        groups: dict[tuple[str, str, str], list[_Entry]] = {}
        group_templates: dict[tuple[str, str, str], BodyTemplate] = {}
        planned: list[_Request] = []
        for index, message in enumerate(messages):
            values: dict[Part, str] | None = None
            template = message.template
            if template is not None:
                # One template per id: the first instance seen stands for the variant.
                template = templates.setdefault(template.id, template)
                values = _values(template, message)
                if values is not None and _substitution_bytes(values) > MAX_SUBSTITUTION_BYTES:
                    values = None
            if template is None or values is None:
                planned.append(_Request([_Entry(index, message, {})], None))
                continue
            group = (
                template.id,
                message.headers.get("From", message.sender),
                message.headers.get("Reply-To", ""),
            )
            groups.setdefault(group, []).append(_Entry(index, message, values))
            group_templates[group] = template
        for group, entries in groups.items():
            planned += [_Request(c, group_templates[group]) for c in _chunks(entries)]
        # Requests in the batch's order (by their first message), so results come out close to
        # the order of the messages.
        planned.sort(key=lambda r: r.entries[0].index)
        return planned

    @staticmethod
    def _suffix(request: _Request, template: BodyTemplate) -> str:
        """A tag suffix that occurs in nothing the request carries but the tags."""
        haystacks = [template.html, template.text]
        for entry in request.entries:
            message = entry.message
            haystacks.append(message.subject)
            haystacks += message.headers.values()
            haystacks += entry.values.values()
        for attempt in itertools.count():
            candidate = nonce(template.id, attempt)
            if not any(candidate in h for h in haystacks):
                return candidate
        raise AssertionError("unreachable")

    @staticmethod
    def _headers(entries: list[_Entry]) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(headers every message shares, each message's own), reserved ones left out."""
        each = [
            {
                name: _header_value(e.message, name, value)
                for name, value in e.message.headers.items()
                if name.lower() not in RESERVED_HEADERS and value.strip()
            }
            for e in entries
        ]
        first = each[0]
        shared = {
            name: value
            for name, value in first.items()
            if name.lower() not in PERSONAL_HEADERS
            and all(other.get(name) == value for other in each[1:])
        }
        own = [{k: v for k, v in h.items() if k not in shared} for h in each]
        return shared, own

    def _body(self, request: _Request) -> bytes:
        entries = request.entries
        first = entries[0].message
        template = request.template
        tags: dict[Part, str] = {}
        if template is None:
            html_body, text_body = first.html, first.text
        else:
            suffix = self._suffix(request, template)
            html_tags = {t: substitution_tag(t, "html", suffix) for t in template.html_parts[1::2]}
            text_tags = {t: substitution_tag(t, "text", suffix) for t in template.text_parts[1::2]}
            html_body = _fill(template.html_parts, html_tags)
            text_body = _fill(template.text_parts, text_tags)
            tags = {(t, "html"): tag for t, tag in html_tags.items()}
            tags.update({(t, "text"): tag for t, tag in text_tags.items()})
        content = []
        # SendGrid: text/plain first, then text/html; an empty value is refused.
        if text_body:
            content.append({"type": "text/plain", "value": text_body})
        if html_body:
            content.append({"type": "text/html", "value": html_body})

        shared_headers, own_headers = self._headers(entries)
        one_subject = all(e.message.subject == first.subject for e in entries)
        personalizations: list[dict[str, Any]] = []
        for entry, headers in zip(entries, own_headers, strict=True):
            p: dict[str, Any] = {"to": [_recipient(entry.message)]}
            if not one_subject:
                p["subject"] = entry.message.subject
            if headers:
                p["headers"] = headers
            if entry.values:
                p["substitutions"] = {tags[part]: value for part, value in entry.values.items()}
            p["custom_args"] = {"delivery": entry.message.key}
            personalizations.append(p)

        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": _address(first.headers.get("From"), first.sender),
        }
        reply_to = first.headers.get("Reply-To")
        if reply_to:
            body["reply_to"] = _address(reply_to, reply_to)
        if one_subject:
            body["subject"] = first.subject
        body["content"] = content
        if shared_headers:
            body["headers"] = shared_headers
        body["tracking_settings"] = TRACKING_OFF
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # Sending ------------------------------------------------------------------------------
    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        results: list[SendResult | None] = [None] * len(messages)

        def finish(entry: _Entry, result: SendResult) -> None:
            results[entry.index] = result
            if on_result is not None:
                on_result(result)

        def give_up(current: _Request, reason: str, retry_after: float | None) -> None:
            """``current`` failed as a whole and the API is not worth more requests now."""
            for entry in current.entries:
                finish(entry, transient(entry.message.key, reason, retry_after=retry_after))
            for request in queue:
                for entry in request.entries:
                    finish(
                        entry,
                        transient(
                            entry.message.key, f"not attempted: {reason}", retry_after=retry_after
                        ),
                    )
            queue.clear()

        url = self._client.url(SEND_PATH)
        start = self._client.requests
        queue = deque(self._plan(messages))
        while queue:
            request = queue.popleft()
            body = self._body(request)
            if len(body) >= MAX_REQUEST_BYTES and len(request.entries) > 1:
                queue.extendleft(reversed(request.halves()))
                continue
            try:
                response = self._client.post(SEND_PATH, data=body, headers=_JSON)
            except RequestFailed as e:
                give_up(request, e.reason, e.retry_after)
                break
            except PermanentDeliveryError as e:
                if self._client.requests - start == 1:
                    raise  # the batch's first request, nothing written before: nothing sent
                give_up(request, e.message, None)
                break
            status = response.status_code
            entries = request.entries
            if status == 202:
                message_id = response.headers.get("X-Message-Id", "").strip()
                for n, entry in enumerate(entries):
                    provider_id = f"{message_id}.{n}" if message_id else entry.message.message_id
                    finish(entry, submitted(entry.message.key, provider_id))
            elif status == 413:
                if len(entries) > 1:
                    queue.extendleft(reversed(request.halves()))
                    continue
                reason = f"SendGrid {url}: message too large (HTTP 413): {_errors(response)}"
                finish(entries[0], permanent(entries[0].message.key, reason))
            elif status == 400:
                self._refused(request, response, url, finish, queue)
            else:
                reason = f"SendGrid {url}: unexpected answer HTTP {status}: {_errors(response)}"
                if self._client.requests - start == 1:
                    raise PermanentDeliveryError(f"{reason}; check delivery.sendgrid.base_url")
                give_up(request, reason, None)
                break
        out = [r for r in results if r is not None]
        assert len(out) == len(messages), "a message was left without a result"
        return out

    @staticmethod
    def _refused(
        request: _Request,
        response: Response,
        url: str,
        finish: Callable[[_Entry, SendResult], None],
        queue: deque[_Request],
    ) -> None:
        """A 400: SendGrid took nothing of the request. When its errors name personalizations,
        only those messages fail; the others go again (first in the queue)."""
        entries = request.entries
        named = _personalization_errors(response, len(entries)) if len(entries) > 1 else None
        if named is None:
            reason = f"SendGrid {url}: refused (HTTP 400): {_errors(response)}"
            for entry in entries:
                finish(entry, permanent(entry.message.key, reason))
            return
        rest: list[_Entry] = []
        for n, entry in enumerate(entries):
            if n in named:
                reason = f"SendGrid {url}: refused (HTTP 400): {named[n]}"
                finish(entry, permanent(entry.message.key, reason))
            else:
                rest.append(entry)
        if rest:
            queue.appendleft(_Request(rest, request.template))
