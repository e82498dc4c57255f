"""ApiClient over real HTTP on 127.0.0.1: which answers are retried, how long it waits, and
what it gives up with.

Waits between tries are recorded, never slept. One server serves the whole module (stopping
one takes a moment); each test gets a fresh answer function, script and request log.
"""

from __future__ import annotations

import base64
import random
import socket
from collections.abc import Iterator

import pytest

from digest.config import PostmarkSettings, RetrySettings
from digest.delivery.httpapi import (
    REQUEST_MAX_WAIT,
    RETRIED,
    USER_AGENT,
    ApiClient,
    RequestFailed,
    all_transient,
)
from digest.errors import PermanentDeliveryError
from digest.models import SendStatus
from tests.apiserver import Answer, ApiServer, Request

from . import make_message

OK: Answer = (200, {}, {"ok": True})


def ok(request: Request) -> Answer:
    return OK


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    with ApiServer(ok) as api:
        # The server writes headers and body separately; without TCP_NODELAY (inherited by
        # accepted connections) each answer on a kept-alive connection waits for a delayed ACK.
        api._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield api


@pytest.fixture
def api(server: ApiServer) -> ApiServer:
    server.respond = ok
    server.script.clear()
    server.requests.clear()
    return server


class Recorder:
    """Stands in for ``time.sleep``."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def waits() -> Recorder:
    return Recorder()


@pytest.fixture
def client(api: ApiServer, waits: Recorder) -> Iterator[ApiClient]:
    c = ApiClient(
        "testapi",
        api.url,
        timeout=5,
        attempts=3,
        base_delay=1.0,
        max_delay=60.0,
        sleep=waits,
        rng=random.Random(1),
    )
    yield c
    c.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# Success and retries -----------------------------------------------------------------------


def test_a_200_is_returned_after_one_request(api: ApiServer, client: ApiClient) -> None:
    response = client.post("/email/batch", json=[{"To": "a@example.org"}])
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert client.requests == 1
    assert len(api.requests) == 1
    assert api.requests[0].path == "/email/batch"
    assert api.requests[0].json() == [{"To": "a@example.org"}]


def test_429_with_retry_after_then_200(api: ApiServer, client: ApiClient, waits: Recorder) -> None:
    api.script.append((429, {"Retry-After": "2"}, {"Message": "slow down"}))
    response = client.post("email")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert [r.answer for r in api.requests] == [429, 200]
    assert client.requests == 2
    assert len(waits.waits) == 1
    assert waits.waits[0] >= 2.0
    assert waits.waits[0] <= 60.0


def test_429_with_an_http_date_in_the_past_still_retries(
    api: ApiServer, client: ApiClient, waits: Recorder
) -> None:
    api.script.append((429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "later"))
    assert client.post("email").status_code == 200
    assert len(waits.waits) == 1
    assert 0.0 <= waits.waits[0] <= 1.0  # the first backoff: up to base_delay


def test_retry_after_beyond_max_delay_gives_up_at_once(
    api: ApiServer, client: ApiClient, waits: Recorder
) -> None:
    api.script.append((429, {"Retry-After": "3600"}, {"Message": "daily quota"}))
    with pytest.raises(RequestFailed) as caught:
        client.post("email")
    assert caught.value.retry_after == 3600
    assert "429" in caught.value.reason
    assert "daily quota" in caught.value.reason
    assert "testapi" in caught.value.reason
    assert len(api.requests) == 1
    assert client.requests == 1
    assert waits.waits == []
    assert api.script == []  # nothing else was asked


def test_reason_counts_the_tries_actually_made(api: ApiServer, client: ApiClient) -> None:
    """Giving up at once after one try must not claim all ``attempts`` tries were made."""
    api.script.append((429, {"Retry-After": "3600"}, "quota"))
    with pytest.raises(RequestFailed) as caught:
        client.post("email")
    assert client.requests == 1
    assert f"after {client.attempts} tries" not in caught.value.reason


def test_retry_after_at_max_delay_is_waited(
    api: ApiServer, client: ApiClient, waits: Recorder
) -> None:
    api.script.append((503, {"Retry-After": "60"}, "maintenance"))
    assert client.post("email").status_code == 200
    assert waits.waits == [60.0]


def test_503_three_times_fails_after_exactly_attempts_requests(
    api: ApiServer, client: ApiClient, waits: Recorder
) -> None:
    api.respond = lambda request: (503, {}, "unavailable")
    with pytest.raises(RequestFailed) as caught:
        client.post("email")
    assert len(api.requests) == 3
    assert client.requests == 3
    assert [r.answer for r in api.requests] == [503, 503, 503]
    # A wait between tries, none after the last.
    assert len(waits.waits) == 2
    assert 0.0 <= waits.waits[0] <= 1.0
    assert 0.0 <= waits.waits[1] <= 2.0
    assert caught.value.retry_after is None
    assert "503" in caught.value.reason
    assert "unavailable" in caught.value.reason
    assert "after 3 tries" in caught.value.reason


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_attempts_bounds_the_requests(api: ApiServer, waits: Recorder, attempts: int) -> None:
    api.respond = lambda request: (502, {}, "bad gateway")
    c = ApiClient("testapi", api.url, timeout=5, attempts=attempts, sleep=waits)
    with pytest.raises(RequestFailed):
        c.post("email")
    c.close()
    assert len(api.requests) == attempts
    assert len(waits.waits) == attempts - 1


def test_the_last_hint_goes_back_with_the_failure(api: ApiServer, client: ApiClient) -> None:
    api.script.extend(
        [(503, {"Retry-After": "5"}, "x"), (503, {}, "y"), (503, {"Retry-After": "7"}, "z")]
    )
    with pytest.raises(RequestFailed) as caught:
        client.post("email")
    assert caught.value.retry_after == 7
    assert "z" in caught.value.reason


def test_retry_after_is_a_floor_for_the_wait(
    api: ApiServer, client: ApiClient, waits: Recorder
) -> None:
    api.script.extend([(503, {"Retry-After": "30"}, "x"), (429, {"Retry-After": "45"}, "y")])
    assert client.post("email").status_code == 200
    assert len(waits.waits) == 2
    assert waits.waits[0] >= 30.0
    assert waits.waits[1] >= 45.0
    assert all(w <= 60.0 for w in waits.waits)


@pytest.mark.parametrize("status", sorted(RETRIED))
def test_every_retried_status_is_retried(api: ApiServer, client: ApiClient, status: int) -> None:
    api.script.append((status, {}, "try again"))
    assert client.post("email").status_code == 200
    assert [r.answer for r in api.requests] == [status, 200]


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, "\u00b2"), (503, "1\u00b3")], ids=["429-sup2", "503-sup3"]
)
def test_an_unreadable_retry_after_is_treated_as_none(
    api: ApiServer, client: ApiClient, waits: Recorder, status: int, retry_after: str
) -> None:
    """A Retry-After the client cannot read (here Latin-1 superscript digits) is no hint:
    the request is retried as without one, not aborted with an unrelated error."""
    api.script.append((status, {"Retry-After": retry_after}, "x"))
    assert client.post("email").status_code == 200
    assert len(waits.waits) == 1


# Answers that are not retried -------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_raise_permanent_without_retry(
    api: ApiServer, client: ApiClient, waits: Recorder, status: int
) -> None:
    api.respond = lambda request: (status, {}, {"Message": "bad token"})
    with pytest.raises(PermanentDeliveryError) as caught:
        client.post("email")
    assert len(api.requests) == 1
    assert waits.waits == []
    message = str(caught.value)
    assert "credentials refused" in message
    assert f"HTTP {status}" in message
    assert "bad token" in message
    assert "testapi" in message


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_client_errors_are_returned_as_is(
    api: ApiServer, client: ApiClient, waits: Recorder, status: int
) -> None:
    api.respond = lambda request: (status, {}, {"ErrorCode": 300, "Message": "invalid"})
    response = client.post("email")
    assert response.status_code == status
    assert response.json() == {"ErrorCode": 300, "Message": "invalid"}
    assert len(api.requests) == 1
    assert waits.waits == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(
    api: ApiServer, client: ApiClient, waits: Recorder, status: int
) -> None:
    api.script.append((status, {"Location": f"{api.url}/elsewhere"}, ""))
    response = client.post("email", json={"x": 1})
    assert response.status_code == status
    assert response.headers["Location"] == f"{api.url}/elsewhere"
    assert [r.path for r in api.requests] == ["/email"]
    assert waits.waits == []


# Connection failures ---------------------------------------------------------------------


def test_connection_refused_fails_after_every_try(waits: Recorder) -> None:
    port = closed_port()
    c = ApiClient("testapi", f"http://127.0.0.1:{port}", timeout=2, attempts=3, sleep=waits)
    with pytest.raises(RequestFailed) as caught:
        c.post("email")
    c.close()
    assert c.requests == 3
    assert len(waits.waits) == 2
    assert caught.value.retry_after is None
    assert "ConnectionError" in caught.value.reason
    assert f"127.0.0.1:{port}" in caught.value.reason


def test_a_server_that_never_answers_times_out_and_is_retried(waits: Recorder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections are queued by the kernel, never answered
        port = listener.getsockname()[1]
        c = ApiClient("testapi", f"http://127.0.0.1:{port}", timeout=0.05, attempts=2, sleep=waits)
        with pytest.raises(RequestFailed) as caught:
            c.post("email")
        c.close()
    assert c.requests == 2
    assert len(waits.waits) == 1
    assert "Timeout" in caught.value.reason


# Session details -------------------------------------------------------------------------


def test_headers_auth_and_url_joining(api: ApiServer, waits: Recorder) -> None:
    c = ApiClient(
        "testapi",
        api.url + "/v3/",
        timeout=5,
        headers={"X-Api-Token": "secret-token", "Accept": "application/json"},
        auth=("api", "key-123"),
        sleep=waits,
    )
    assert c.url("/messages") == c.url("messages") == f"{api.url}/v3/messages"
    c.post("/messages", data={"to": "a@example.org"})
    c.close()
    seen = api.requests[0]
    assert seen.path == "/v3/messages"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert seen.headers["X-Api-Token"] == "secret-token"
    assert seen.headers["Accept"] == "application/json"
    expected = base64.b64encode(b"api:key-123").decode()
    assert seen.headers["Authorization"] == f"Basic {expected}"
    assert seen.form() == [("to", "a@example.org")]


def test_environment_proxies_are_ignored(
    api: ApiServer, waits: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy on a closed port: using it would fail the request.
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    c = ApiClient("testapi", api.url, timeout=5, attempts=1, sleep=waits)
    assert c.post("email").status_code == 200
    c.close()


# for_provider ----------------------------------------------------------------------------


def test_for_provider_takes_url_and_timeout_from_settings(api: ApiServer, waits: Recorder) -> None:
    settings = PostmarkSettings(base_url=api.url + "/", timeout=7.5)
    c = ApiClient.for_provider(
        "postmark",
        settings,
        RetrySettings(request_attempts=4, max_delay=20),
        headers={"X-Postmark-Server-Token": "t"},
        sleep=waits,
        rng=random.Random(3),
    )
    assert c.provider == "postmark"
    assert c.base_url == api.url
    assert c.timeout == 7.5
    assert c.attempts == 4
    assert c.base_delay == 1.0
    assert c.max_delay == 20.0
    api.respond = lambda request: (500, {}, "boom")
    with pytest.raises(RequestFailed) as caught:
        c.post("/email/batch")
    c.close()
    assert len(api.requests) == 4
    assert len(waits.waits) == 3
    assert all(w <= 20.0 for w in waits.waits)
    assert api.requests[0].headers["X-Postmark-Server-Token"] == "t"
    assert "postmark" in caught.value.reason


def test_for_provider_defaults(api: ApiServer) -> None:
    c = ApiClient.for_provider("postmark", PostmarkSettings(base_url=api.url), None)
    assert c.attempts == RetrySettings().request_attempts == 3
    assert c.max_delay == REQUEST_MAX_WAIT == 60.0  # the run's one-hour cap is not one request's
    assert c.timeout == PostmarkSettings().timeout
    c.close()


def test_for_provider_default_url_is_the_providers() -> None:
    c = ApiClient.for_provider("postmark", PostmarkSettings(), RetrySettings())
    assert c.base_url == "https://api.postmarkapp.com"
    assert c.url("email/batch") == "https://api.postmarkapp.com/email/batch"
    c.close()


def test_for_provider_with_a_short_max_delay_gives_up_on_longer_hints(
    api: ApiServer, waits: Recorder
) -> None:
    c = ApiClient.for_provider(
        "postmark",
        PostmarkSettings(base_url=api.url),
        RetrySettings(request_attempts=5, max_delay=10),
        sleep=waits,
    )
    api.script.append((429, {"Retry-After": "11"}, "quota"))
    with pytest.raises(RequestFailed) as caught:
        c.post("email")
    c.close()
    assert caught.value.retry_after == 11
    assert len(api.requests) == 1
    assert waits.waits == []


# all_transient -----------------------------------------------------------------------------


def test_all_transient_gives_one_result_per_message() -> None:
    batch = [make_message(f"r{i}@example.org", n=i) for i in range(1, 5)]
    results = all_transient(batch, "HTTP 503", retry_after=12.0)
    assert [r.key for r in results] == [m.key for m in batch]
    assert all(r.status is SendStatus.TRANSIENT for r in results)
    assert all(r.reason == "HTTP 503" for r in results)
    assert all(r.retry_after == 12.0 for r in results)
    assert not any(r.bounce or r.provider_id for r in results)


def test_all_transient_without_a_hint_and_empty() -> None:
    results = all_transient([make_message()], "timeout")
    assert len(results) == 1
    assert results[0].retry_after is None
    assert all_transient([], "anything") == []
