"""PostmarkProvider against a fake of Postmark's batch API, over real HTTP on 127.0.0.1.

The fake (``fake_postmark.FakePostmark``) checks requests as Postmark documents them and answers
per recipient; ``ApiServer.script`` stages outages (429, 503, 422 …) in front of it. Waits
between tries are recorded, never slept. One server serves the whole module (stopping one
takes up to half a second); each test gets a fresh fake, script and request log.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from pydantic import SecretStr

from digest.config import PostmarkSettings, RetrySettings
from digest.delivery.base import Provider
from digest.delivery.postmark import MAX_BYTES, PostmarkProvider
from digest.errors import PermanentDeliveryError
from digest.models import OutgoingMessage, SendResult, SendStatus
from tests.apiserver import Answer, ApiServer, Request

from . import assert_one_per_message, make_message
from .fake_postmark import FakePostmark

TOKEN = "server-token"


@dataclass
class Harness:
    provider: PostmarkProvider
    fake: FakePostmark
    api: ApiServer
    waits: list[float] = field(default_factory=list)
    reported: list[SendResult] = field(default_factory=list)
    # How many HTTP requests the server had seen when each result was reported.
    seen_at_report: list[int] = field(default_factory=list)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        def on_result(result: SendResult) -> None:
            self.reported.append(result)
            self.seen_at_report.append(len(self.api.requests))

        return self.provider.send(messages, on_result)

    def bodies(self) -> list[list[dict[str, Any]]]:
        return [r.json() for r in self.api.requests]


def settings(base_url: str, stream: str = "broadcast") -> PostmarkSettings:
    return PostmarkSettings(
        base_url=base_url, token=SecretStr(TOKEN), message_stream=stream, timeout=10
    )


class Dispatch:
    """The module server's ``respond``: forwards to whatever the current test installed."""

    def __init__(self) -> None:
        self.target: Callable[[Request], Answer] = FakePostmark().respond

    def __call__(self, request: Request) -> Answer:
        return self.target(request)


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with ApiServer(Dispatch()) as api:
        yield api


@contextmanager
def harness(
    api: ApiServer,
    *,
    script: Sequence[Answer] = (),
    outcomes: dict[str, int] | None = None,
    token: str | None = None,
    respond: Callable[[Request], Answer] | None = None,
) -> Iterator[Harness]:
    fake = FakePostmark(token=TOKEN, outcomes=dict(outcomes or {}))
    assert isinstance(api.respond, Dispatch)
    api.respond.target = respond or fake.respond
    api.requests.clear()
    api.script[:] = list(script)
    waits: list[float] = []
    provider = PostmarkProvider(
        settings(api.url),
        RetrySettings(request_attempts=3, max_delay=120.0),
        token=token,
        sleep=waits.append,
        rng=random.Random(7),
    )
    with provider:
        yield Harness(provider, fake, api, waits)


def messages(n: int, *, domain: str = "example.org") -> list[OutgoingMessage]:
    """``n`` messages to distinct readers (one MIME build, copied: the provider reads only the
    structured fields)."""
    base = make_message()
    return [
        replace(base, key=f"{base.edition_id}/{i}", recipient=f"reader{i}@{domain}")
        for i in range(1, n + 1)
    ]


def statuses(results: Sequence[SendResult]) -> list[SendStatus]:
    return [r.status for r in results]


# Plumbing --------------------------------------------------------------------------------------
def test_is_a_provider_and_an_empty_batch_makes_no_request(server: ApiServer) -> None:
    with harness(server) as h:
        assert isinstance(h.provider, Provider)
        assert h.provider.name == "postmark"
        assert h.send([]) == []
        assert h.api.requests == []


def test_close_twice_is_safe(server: ApiServer) -> None:
    with harness(server) as h:
        h.provider.close()
        h.provider.close()


# Success ---------------------------------------------------------------------------------------
def test_all_submitted_with_postmark_message_ids(server: ApiServer) -> None:
    batch = messages(3)
    with harness(server) as h:
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [SendStatus.SUBMITTED] * 3
        assert h.reported == results
        assert len(h.api.requests) == 1
        request = h.api.requests[0]
        assert request.path == "/email/batch"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Postmark-Server-Token"] == TOKEN
        assert h.fake.problems == []
        assert len(h.fake.accepted) == 3
        ids = [r.provider_id for r in results]
        assert len(set(ids)) == 3 and all(len(i) == 36 for i in ids)  # Postmark's UUIDs


def test_1200_messages_make_three_requests_reported_after_each(server: ApiServer) -> None:
    batch = messages(1200)
    with harness(server) as h:
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [SendStatus.SUBMITTED] * 1200
        assert h.fake.batches == [500, 500, 200]
        assert [len(b) for b in h.bodies()] == [500, 500, 200]
        # on_result: every result, in order, each before the next request was made.
        assert h.reported == results
        assert h.seen_at_report == [1] * 500 + [2] * 500 + [3] * 200
        assert len(h.fake.accepted) == 1200
        assert [m["Metadata"]["delivery"] for m in h.fake.accepted] == [m.key for m in batch]


def test_requests_are_cut_by_size(server: ApiServer) -> None:
    big = "<p>" + "x" * 20_000_000 + "</p>"  # ~20 MB each: two fit in 50 MB, three do not
    batch = [replace(m, html=big) for m in messages(3)]
    with harness(server) as h:
        results = h.send(batch)
        assert statuses(results) == [SendStatus.SUBMITTED] * 3
        assert h.fake.batches == [2, 1]
        assert all(len(r.body) <= MAX_BYTES for r in h.api.requests)
        assert h.seen_at_report == [1, 1, 2]


def test_a_message_over_the_request_limit_fails_alone_without_a_request(server: ApiServer) -> None:
    small = messages(2)
    huge = replace(make_message("huge@example.org", n=99), html="y" * (MAX_BYTES + 10))
    batch = [small[0], huge, small[1]]
    with harness(server) as h:
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [
            SendStatus.SUBMITTED,
            SendStatus.PERMANENT,
            SendStatus.SUBMITTED,
        ]
        assert not results[1].bounce and "Postmark" in results[1].reason
        assert "limit" in results[1].reason
        assert h.fake.batches == [1, 1]  # the huge one never went out
        sent_to = [m["To"] for body in h.bodies() for m in body]
        assert "huge@example.org" not in sent_to
        assert h.reported == results


# Mapping ---------------------------------------------------------------------------------------
def test_message_fields_and_headers(server: ApiServer) -> None:
    base = make_message("reader@example.org")
    message = replace(
        base,
        headers={
            "From": "The Weekly Dispatch <digest@example.com>",
            "To": "Ada Reader <reader@example.org>",
            "Subject": base.subject,
            "Date": "Mon, 23 Nov 2026 07:00:00 +0000",
            "Message-ID": base.message_id,
            "Reply-To": "editors@example.com",
            "MIME-Version": "1.0",
            "Content-Type": "multipart/alternative",
            "List-Id": '"The Weekly Dispatch" <weekly.example.com>',
            "List-Unsubscribe": "<https://example.com/u/abc>, <mailto:unsub@example.com>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    with harness(server) as h:
        [result] = h.send([message])
        assert result.status is SendStatus.SUBMITTED
        [sent] = h.bodies()[0]
    assert sent["From"] == "The Weekly Dispatch <digest@example.com>"
    assert sent["To"] == "Ada Reader <reader@example.org>"
    assert sent["Subject"] == base.subject
    assert sent["HtmlBody"] == base.html and sent["TextBody"] == base.text
    assert sent["ReplyTo"] == "editors@example.com"
    assert sent["MessageStream"] == "broadcast"
    assert sent["Metadata"] == {"delivery": message.key}
    assert sent["TrackOpens"] is False and sent["TrackLinks"] == "None"
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert headers == {
        "List-Id": '"The Weekly Dispatch" <weekly.example.com>',
        "List-Unsubscribe": "<https://example.com/u/abc>, <mailto:unsub@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_without_headers_the_envelope_fields_are_used(server: ApiServer) -> None:
    message = make_message("plain@example.org")  # headers={}
    with harness(server) as h:
        h.send([message])
        [sent] = h.bodies()[0]
    assert sent["From"] == message.sender and sent["To"] == "plain@example.org"
    assert "Headers" not in sent and "ReplyTo" not in sent
    assert h.fake.problems == []


def test_non_ascii_text_is_sent_as_utf8_json(server: ApiServer) -> None:
    message = replace(make_message(), subject="Café – Ünïcode ✓", text="naïve ☕")
    with harness(server) as h:
        h.send([message])
        body = h.api.requests[0].body
    assert "Café – Ünïcode ✓".encode() in body  # not \\u-escaped: sizes are measured as sent
    assert json.loads(body)[0]["TextBody"] == "naïve ☕"


# Per-message outcomes --------------------------------------------------------------------------
def test_mixed_error_codes_in_one_answer(server: ApiServer) -> None:
    batch = [
        make_message("ok@example.org", n=1),
        make_message("gone@example.org", n=2),
        make_message("bad@example.org", n=3),
        make_message("broke@example.org", n=4),
        make_message("ok2@example.org", n=5),
        make_message("busy@example.org", n=6),
    ]
    outcomes = {
        "gone@example.org": 406,
        "bad@example.org": 300,
        "broke@example.org": 405,
        "busy@example.org": 429,
    }
    with harness(server, outcomes=outcomes) as h:
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert len(h.api.requests) == 1
    ok, gone, bad, broke, ok2, busy = results
    assert ok.status is SendStatus.SUBMITTED and ok2.status is SendStatus.SUBMITTED
    assert gone.status is SendStatus.PERMANENT and gone.bounce
    assert "Postmark" in gone.reason and "406" in gone.reason and "inactive" in gone.reason
    assert bad.status is SendStatus.PERMANENT and not bad.bounce
    assert "300" in bad.reason and "Invalid 'To' address" in bad.reason
    assert broke.status is SendStatus.TRANSIENT and "405" in broke.reason
    assert busy.status is SendStatus.TRANSIENT and "429" in busy.reason
    assert h.reported == results
    assert [m["To"] for m in h.fake.accepted] == ["ok@example.org", "ok2@example.org"]


def test_a_message_postmark_finds_invalid_fails_alone(server: ApiServer) -> None:
    empty = replace(make_message("empty@example.org", n=2), html="", text="")
    batch = [make_message(n=1), empty, make_message(n=3)]
    with harness(server) as h:
        results = h.send(batch)
    assert statuses(results) == [SendStatus.SUBMITTED, SendStatus.PERMANENT, SendStatus.SUBMITTED]
    assert "ErrorCode 300" in results[1].reason and not results[1].bounce
    assert h.fake.problems == ["Provide either email TextBody or HtmlBody or both."]


def test_422_inactive_recipient_for_a_single_message_is_a_bounce(server: ApiServer) -> None:
    inactive: Answer = (422, {}, {"ErrorCode": 406, "Message": "Found inactive addresses."})
    with harness(server, script=[inactive]) as h:
        [result] = h.send([make_message("gone@example.org")])
    assert result.status is SendStatus.PERMANENT and result.bounce


# Whole-request failures ------------------------------------------------------------------------
def test_429_with_retry_after_then_success(server: ApiServer) -> None:
    limited: Answer = (
        429,
        {"Retry-After": "7"},
        {"ErrorCode": 429, "Message": "Rate limit exceeded."},
    )
    batch = messages(4)
    with harness(server, script=[limited]) as h:
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [SendStatus.SUBMITTED] * 4
        assert [r.answer for r in h.api.requests] == [429, 200]
        assert len(h.waits) == 1 and h.waits[0] >= 7
        assert len(h.fake.accepted) == 4  # nothing twice
        assert len(h.reported) == 4


def test_503_three_times_gives_transient_results_and_stops(server: ApiServer) -> None:
    down: Answer = (503, {}, {"ErrorCode": 0, "Message": "Service Unavailable"})
    batch = messages(5)
    with harness(server, script=[down] * 3) as h:
        h.provider.max_messages = 2  # three requests planned
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [SendStatus.TRANSIENT] * 5
        assert len(h.api.requests) == 3  # three tries of the first request, then it gave up
        assert len(h.waits) == 2
        assert "HTTP 503" in results[0].reason and "after 3 tries" in results[0].reason
        assert results[2].reason.startswith("not attempted")
        assert h.fake.accepted == []
        assert h.reported == results


def test_bad_token_raises_and_nothing_arrives(server: ApiServer) -> None:
    batch = messages(3)
    with harness(server, token="wrong-token") as h:
        with pytest.raises(PermanentDeliveryError, match="credentials refused"):
            h.send(batch)
        assert [r.answer for r in h.api.requests] == [401]
        assert h.fake.accepted == [] and h.reported == []
        assert h.api.requests[0].json() is not None


def test_credentials_refused_after_a_request_went_through(server: ApiServer) -> None:
    calls: list[int] = []
    fake_box: list[FakePostmark] = []

    def respond(request: Request) -> Answer:
        calls.append(1)
        if len(calls) == 1:
            return fake_box[0].respond(request)
        return 401, {}, {"ErrorCode": 10, "Message": "Request does not contain a valid token."}

    batch = messages(5)
    with harness(server, respond=respond) as h:
        fake_box.append(h.fake)
        h.provider.max_messages = 2
        results = h.send(batch)  # no raise: two messages were already submitted
        assert_one_per_message(batch, results)
        assert statuses(results) == [SendStatus.SUBMITTED] * 2 + [SendStatus.TRANSIENT] * 3
        assert "credentials refused" in results[2].reason
        assert results[4].reason.startswith("not attempted")
        assert len(h.api.requests) == 2
        assert h.reported == results


@pytest.mark.parametrize(
    ("code", "status"),
    [(410, SendStatus.PERMANENT), (402, SendStatus.PERMANENT), (405, SendStatus.TRANSIENT)],
)
def test_422_refuses_that_request_only(server: ApiServer, code: int, status: SendStatus) -> None:
    refused: Answer = (422, {}, {"ErrorCode": code, "Message": "Refused as a whole."})
    batch = messages(4)
    with harness(server, script=[refused]) as h:
        h.provider.max_messages = 2
        results = h.send(batch)
        assert_one_per_message(batch, results)
        assert statuses(results) == [status, status, SendStatus.SUBMITTED, SendStatus.SUBMITTED]
        assert not any(r.bounce for r in results)
        assert f"ErrorCode {code}" in results[0].reason and "422" in results[0].reason
        assert len(h.fake.accepted) == 2
        assert h.seen_at_report == [1, 1, 2, 2]


def test_413_splits_the_request_until_it_passes(server: ApiServer) -> None:
    too_large: Answer = (413, {}, "Payload Too Large")
    batch = messages(4)
    with harness(server, script=[too_large]) as h:
        results = h.send(batch)
        assert statuses(results) == [SendStatus.SUBMITTED] * 4
        assert [len(b) for b in h.bodies()] == [4, 2, 2]
        assert len(h.fake.accepted) == 4


def test_unreadable_answer_is_transient(server: ApiServer) -> None:
    short: Answer = (200, {}, [{"ErrorCode": 0, "Message": "OK", "MessageID": "x"}])
    batch = messages(2)
    with harness(server, script=[short]) as h:
        results = h.send(batch)
        assert statuses(results) == [SendStatus.TRANSIENT] * 2
        assert "outcome unknown" in results[0].reason


def test_wrong_endpoint_raises_before_anything_is_reported(server: ApiServer) -> None:
    with (
        harness(server, script=[(404, {}, "Not found")]) as h,
        pytest.raises(PermanentDeliveryError, match="base_url"),
    ):
        h.send(messages(2))
    assert h.reported == []


def test_connection_refused_gives_transient_results() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on leaving: nothing listens there
    waits: list[float] = []
    provider = PostmarkProvider(
        settings(f"http://127.0.0.1:{port}"),
        RetrySettings(request_attempts=3),
        sleep=waits.append,
        rng=random.Random(1),
    )
    batch = messages(3)
    reported: list[SendResult] = []
    with provider:
        results = provider.send(batch, reported.append)
    assert_one_per_message(batch, results)
    assert statuses(results) == [SendStatus.TRANSIENT] * 3
    assert "ConnectionError" in results[0].reason and "Postmark" in results[0].reason
    assert len(waits) == 2 and provider.client.requests == 3
    assert reported == results
