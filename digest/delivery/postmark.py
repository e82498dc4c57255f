"""The Postmark provider: submits messages through Postmark's batch email API.

What it relies on, from Postmark's documentation:

- ``POST /email/batch`` takes a JSON array of messages, at most 500 per request and at most
  50 MB of payload per request, attachments included; it needs ``Accept: application/json``,
  ``Content-Type: application/json`` and the server token in ``X-Postmark-Server-Token``
  (https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails).
- A message has ``From`` and ``To`` (both accept ``Name <address>``), ``Subject``,
  ``HtmlBody`` and/or ``TextBody``, ``ReplyTo``, ``Headers`` as ``[{"Name", "Value"}]``,
  ``MessageStream``, ``Metadata`` (name/value pairs returned in webhooks), ``TrackOpens`` and
  ``TrackLinks`` (``None``, ``HtmlAndText``, ``HtmlOnly``, ``TextOnly``)
  (https://postmarkapp.com/developer/api/email-api,
  https://postmarkapp.com/support/article/1125-custom-metadata-faq).
- The batch answer is HTTP 200 with one ``{ErrorCode, Message, MessageID, SubmittedAt, To}``
  per message, in the order sent, even when some of them failed validation.
- A request refused as a whole answers 422 with ``{ErrorCode, Message}``; 401 is a missing or
  wrong token; 413 a payload over the size limit; 429, 500 and 503 may pass
  (https://postmarkapp.com/developer/api/overview).
- API error codes (same page, ``#error-codes``): 0 ok; 10 bad or missing token; 100
  maintenance; 300 invalid email request (any validation failure of the message: addresses,
  empty body, too many recipients); 400/401 sender signature missing or unconfirmed; 402
  invalid JSON; 403 incompatible JSON; 405 not allowed to send (out of credits); 406 inactive
  recipient (a hard bounce, a spam complaint or a manual suppression at Postmark); 409 JSON
  required; 410 too many batch messages; 411 forbidden attachment type; 412 account pending
  approval; 413 account may not send; 429 rate limit exceeded.

How answers become results (one per message, in order; ``on_result`` after each request):

- ErrorCode 0: ``SUBMITTED`` with Postmark's ``MessageID`` as ``provider_id`` (bounce and
  delivery webhooks carry it, and ``Metadata.delivery`` carries the message's key).
- 406: ``PERMANENT`` with ``bounce=True``: Postmark has marked the address inactive. No other
  code is documented as being about the recipient's address alone (300 also covers the
  sender's address and the body), so every other refusal leaves the subscriber alone.
- Account-level codes that clear without changing the message (100, 405, 412, 413, 429):
  ``TRANSIENT``. Any other code: ``PERMANENT``. Reasons quote the code and Postmark's Message.
- A whole request answered 422: its messages get the code's outcome (transient for the
  account-level codes, else permanent; never a bounce unless the request held just that one
  message). 413: the request is split in half and each half sent again, down to one message,
  which then fails permanently. After the retries of :class:`~digest.delivery.httpapi.ApiClient`
  run out (429, 5xx, timeouts, refused connections) the request's messages are ``TRANSIENT``
  with the last ``Retry-After`` hint and the rest of the batch is not attempted (likewise
  for a 5xx that ApiClient does not retry). A 2xx whose body is not one entry per message
  leaves that request's messages ``TRANSIENT`` (outcome unknown: at least once). Any other
  4xx: ``PERMANENT`` for that request's messages.
- 401/403 (credentials refused) or an endpoint that does not exist (3xx, 404, 405): raised as
  :class:`~digest.errors.PermanentDeliveryError` when nothing of the batch has a result yet;
  after that, the remaining messages come back ``TRANSIENT``.

A message whose JSON alone exceeds the request size limit fails permanently without a request.
The message's own ``Message-ID`` is not passed on: Postmark's API documents no way to set it,
and Postmark's ``MessageID`` is what its webhooks use. Open and link tracking are off by
default (a digest's links already carry UTM parameters). A message's ``TrackOpens: false``
does not override open tracking switched on for the Postmark server (django-anymail's Postmark
notes, after Postmark's per-email open tracking guide): keep it off there as well.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import requests

from digest.config import PostmarkSettings, RetrySettings
from digest.delivery.base import OnResult, ProviderBase, permanent, report, submitted, transient
from digest.delivery.httpapi import ApiClient, RequestFailed, all_transient
from digest.errors import PermanentDeliveryError
from digest.models import OutgoingMessage, SendResult

BATCH_PATH = "/email/batch"
MAX_MESSAGES = 500  # messages per batch request
MAX_BYTES = 50_000_000  # JSON body per batch request ("50 MB"; read as decimal to stay safe)

OK = 0
INACTIVE_RECIPIENT = 406
# Codes about the account or the service, not the message: the same message may pass later.
ACCOUNT_LEVEL = frozenset(
    {
        100,  # maintenance
        405,  # not allowed to send (out of credits)
        412,  # account pending approval
        413,  # account may not send
        429,  # rate limit exceeded
    }
)
TrackLinks = Literal["None", "HtmlAndText", "HtmlOnly", "TextOnly"]

# Headers Postmark writes itself from the message's fields (or that the JSON API replaces):
# passing them in ``Headers`` as well would duplicate or contradict them.
_BUILT_BY_POSTMARK = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "reply-to",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True, slots=True)
class _Item:
    """A message and its JSON, serialised once (the size decides how requests are cut)."""

    message: OutgoingMessage
    body: bytes


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _body(items: Sequence[_Item]) -> bytes:
    return b"[" + b",".join(i.body for i in items) + b"]"


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class PostmarkProvider(ProviderBase):
    """Submits messages to Postmark's batch endpoint on ``settings.message_stream``.

    ``token`` overrides ``settings.token``; ``sleep`` and ``rng`` drive the request retries
    (injectable for tests). ``track_opens``/``track_links`` are sent with every message.
    """

    name = "postmark"

    def __init__(
        self,
        settings: PostmarkSettings,
        retry: RetrySettings | None = None,
        *,
        token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        track_opens: bool = False,
        track_links: TrackLinks = "None",
    ) -> None:
        self.settings = settings
        retry = retry or RetrySettings()
        self._token = settings.token.get_secret_value() if token is None else token
        self.track_opens = track_opens
        self.track_links: TrackLinks = track_links
        self.max_messages = MAX_MESSAGES
        self.max_bytes = MAX_BYTES
        self.client = ApiClient.for_provider(
            "Postmark",
            settings,
            retry,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "X-Postmark-Server-Token": self._token,
            },
            sleep=sleep,
            rng=rng,
        )

    def close(self) -> None:
        self.client.close()

    # Mapping --------------------------------------------------------------------------------
    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        """The batch entry for ``message`` (see the module docstring for what is left out)."""
        headers = message.headers
        data: dict[str, Any] = {
            "From": _header(headers, "From") or message.sender,
            "To": _header(headers, "To") or message.recipient,
            "Subject": _header(headers, "Subject") or message.subject,
        }
        if message.html:
            data["HtmlBody"] = message.html
        if message.text:
            data["TextBody"] = message.text
        reply_to = _header(headers, "Reply-To")
        if reply_to:
            data["ReplyTo"] = reply_to
        extra = [
            {"Name": name, "Value": value}
            for name, value in headers.items()
            if name.lower() not in _BUILT_BY_POSTMARK
        ]
        if extra:
            data["Headers"] = extra
        data["TrackOpens"] = self.track_opens
        data["TrackLinks"] = self.track_links
        data["Metadata"] = {"delivery": message.key}
        data["MessageStream"] = self.settings.message_stream
        return data

    def _item(self, message: OutgoingMessage) -> _Item:
        body = json.dumps(self.payload(message), ensure_ascii=False, separators=(",", ":"))
        return _Item(message, body.encode("utf-8"))

    def _requests(self, messages: Sequence[OutgoingMessage]) -> Iterator[list[_Item]]:
        """The batch cut into requests within both limits, in order, serialised as they are
        needed (so at most about one request's JSON is held at a time). A message too large for
        any request comes as a request of its own, recognisable by exceeding ``max_bytes``."""
        current: list[_Item] = []
        size = 2  # the brackets
        for message in messages:
            item = self._item(message)
            if len(item.body) + 2 > self.max_bytes:
                if current:
                    yield current
                yield [item]
                current, size = [], 2
                continue
            extra = len(item.body) + (1 if current else 0)
            if current and (len(current) >= self.max_messages or size + extra > self.max_bytes):
                yield current
                current, size, extra = [], 2, len(item.body)
            current.append(item)
            size += extra
        if current:
            yield current

    # Sending --------------------------------------------------------------------------------
    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        if not self._token:
            raise PermanentDeliveryError(
                f"Postmark {self.client.url(BATCH_PATH)}: no server token; set "
                "DIGEST__DELIVERY__POSTMARK__TOKEN"
            )
        # Results always cover a prefix of ``messages``: requests go out in order, and the
        # halves of a request refused as too large go out before anything after it.
        results: list[SendResult] = []
        planned = self._requests(messages)
        halves: deque[list[_Item]] = deque()
        while (items := halves.popleft() if halves else next(planned, None)) is not None:
            if len(items) == 1 and len(items[0].body) + 2 > self.max_bytes:
                reason = (
                    f"Postmark: message is {len(items[0].body):,} bytes as JSON, over the "
                    f"{self.max_bytes:,}-byte limit of a batch request"
                )
                report(results, permanent(items[0].message.key, reason), on_result)
                continue
            try:
                response = self.client.post(BATCH_PATH, data=_body(items))
                outcome = self._outcome(items, response)
            except PermanentDeliveryError as e:
                if not results:
                    raise  # nothing of the batch has a result yet: the caller may retry it all
                for item in items:
                    report(results, transient(item.message.key, e.message), on_result)
                self._give_up(messages, results, f"not attempted: {e.message}", on_result)
                return results
            except RequestFailed as e:
                for item in items:
                    result = transient(item.message.key, e.reason, retry_after=e.retry_after)
                    report(results, result, on_result)
                self._give_up(messages, results, f"not attempted: {e.reason}", on_result)
                return results
            if outcome is None:  # 413: try each half on its own
                half = len(items) // 2
                halves.extendleft([items[half:], items[:half]])
                continue
            for result in outcome:
                report(results, result, on_result)
        return results

    @staticmethod
    def _give_up(
        messages: Sequence[OutgoingMessage],
        results: list[SendResult],
        reason: str,
        on_result: OnResult | None,
    ) -> None:
        """Every message without a result yet comes back transient."""
        for message in messages[len(results) :]:
            report(results, transient(message.key, reason), on_result)

    def _outcome(
        self, items: Sequence[_Item], response: requests.Response
    ) -> list[SendResult] | None:
        """One result per item from Postmark's answer; None: too large, split and try again.

        Raises PermanentDeliveryError when the endpoint itself is wrong, RequestFailed when
        the answer is a server error that ApiClient does not retry.
        """
        status = response.status_code
        where = f"Postmark {self.client.url(BATCH_PATH)}"
        if 200 <= status < 300:
            return self._per_message(items, response, where)
        if status == 413:
            if len(items) > 1:
                return None
            reason = f"{where}: HTTP 413: message too large: {response.text[:300]}"
            return [permanent(items[0].message.key, reason)]
        if 300 <= status < 400 or status in (404, 405):
            raise PermanentDeliveryError(
                f"{where}: HTTP {status}: not Postmark's batch endpoint; check "
                "delivery.postmark.base_url"
            )
        if status >= 500:
            raise RequestFailed(f"{where}: HTTP {status}: {response.text[:300]}", None)
        code, text = self._error(response)
        if code is None:
            reason = f"{where}: HTTP {status}: {response.text[:300]}"
            return [permanent(i.message.key, reason) for i in items]
        reason = f"{where}: request refused (HTTP {status}), ErrorCode {code}: {text}"
        if code in ACCOUNT_LEVEL:
            return all_transient([i.message for i in items], reason)
        bounce = code == INACTIVE_RECIPIENT and len(items) == 1
        return [permanent(i.message.key, reason, bounce=bounce) for i in items]

    @staticmethod
    def _error(response: requests.Response) -> tuple[int | None, str]:
        """``(ErrorCode, Message)`` of an error answer; ``(None, "")`` if it has none."""
        try:
            body = response.json()
        except ValueError:
            return None, ""
        if not isinstance(body, dict):
            return None, ""
        return _code(body.get("ErrorCode")), str(body.get("Message", ""))[:300]

    def _per_message(
        self, items: Sequence[_Item], response: requests.Response, where: str
    ) -> list[SendResult]:
        """Map the batch answer, one entry per message in the order sent."""
        try:
            answers = response.json()
        except ValueError:
            answers = None
        if not isinstance(answers, list) or len(answers) != len(items):
            # Postmark may have taken some or all of them: at least once, try again later.
            got = f"{len(answers)} entries" if isinstance(answers, list) else "no JSON array"
            reason = (
                f"{where}: HTTP {response.status_code} with {got} for {len(items)} messages; "
                "outcome unknown"
            )
            return all_transient([i.message for i in items], reason)
        return [
            self._one(item.message, answer, where)
            for item, answer in zip(items, answers, strict=True)
        ]

    @staticmethod
    def _one(message: OutgoingMessage, answer: object, where: str) -> SendResult:
        key = message.key
        if not isinstance(answer, dict):
            return transient(key, f"{where}: unreadable entry {answer!r:.100}; outcome unknown")
        code = _code(answer.get("ErrorCode"))
        text = str(answer.get("Message", ""))[:300]
        if code == OK:
            provider_id = str(answer.get("MessageID") or "") or message.message_id
            return submitted(key, provider_id)
        if code is None:
            return transient(key, f"{where}: entry without ErrorCode ({text}); outcome unknown")
        reason = f"Postmark ErrorCode {code} for {message.recipient}: {text}"
        if code == INACTIVE_RECIPIENT:
            return permanent(key, reason, bounce=True)
        if code in ACCOUNT_LEVEL:
            return transient(key, reason)
        return permanent(key, reason)
