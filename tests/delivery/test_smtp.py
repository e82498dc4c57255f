"""SmtpProvider against a real aiosmtpd server on 127.0.0.1.

The handler scripts the server's answers by address: ``bounce@`` is refused for good,
``later@`` for now, ``drop@`` makes the server cut the connection, ``flaky@`` does that only
the first time, ``closing@`` gets a 421; ``blocked@`` as sender and ``spamtrap@`` as recipient
are refused at MAIL and DATA.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as Server
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from digest.config import SmtpSettings
from digest.delivery.smtp import SmtpProvider
from digest.errors import PermanentDeliveryError, TransientDeliveryError
from digest.models import SendStatus
from tests.tls import self_signed

from . import assert_one_per_message, make_message

HOST = "127.0.0.1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


class Handler:
    """Accepts and stores messages; refuses or hangs up on the scripted addresses."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.sessions: list[Session] = []
        self.peers: set[object] = set()  # (host, port) of each client connection
        self.servers: list[Server] = []
        self.dropped: set[str] = set()
        self.data_reply: str | None = None  # None: "queued as ABC<n>"
        self.accept_later = False  # True: "later@…" is accepted (the server recovered)
        self.pipelining = False  # True: offer PIPELINING (RFC 2920) in the EHLO reply

    async def handle_EHLO(
        self,
        server: Server,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # EHLO is repeated after STARTTLS (with a new Session), so count client addresses.
        self.peers.add(session.peer)
        self.sessions.append(session)
        if not any(s is server for s in self.servers):
            self.servers.append(server)
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads commands line by line, so pipelined ones are answered in order.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Server, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == "blocked@example.com":
            return "553 5.7.1 sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Server, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.split("@")[0]
        if local == "bounce":
            return "550 5.1.1 no such user"
        if local == "later" and not self.accept_later:
            return "451 4.3.0 try later"
        if local == "closing":
            return "421 4.3.2 service shutting down"
        if local == "drop" or (local == "flaky" and address not in self.dropped):
            self.dropped.add(address)
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # hang up without a reply, mid-transaction
            return "250 never seen"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Server, session: Session, envelope: Envelope) -> str:
        if "spamtrap@example.org" in envelope.rcpt_tos:
            return "554 5.6.0 content rejected"
        assert envelope.mail_from is not None and isinstance(envelope.content, bytes)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                list(envelope.mail_options),
            )
        )
        return self.data_reply or f"250 2.0.0 Ok: queued as ABC{len(self.received)}"


class _Controller(Controller):
    """Listens on an ephemeral port: the stock trigger connects to ``self.port``, so learn it."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Running:
    handler: Handler
    controller: _Controller

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": HOST,
            "port": self.controller.port,
            "security": "none",
            "timeout": 5.0,
        }
        return SmtpSettings(**(values | overrides))

    def hang_up_all(self) -> None:
        """Close every connection from the server side, as an idle timeout would."""

        async def close() -> None:
            for server in self.handler.servers:
                if server.transport is not None:
                    server.transport.close()

        asyncio.run_coroutine_threadsafe(close(), self.controller.loop).result(5)


@contextmanager
def smtp_server(*, pipelining: bool = False, **server_kwargs: Any) -> Iterator[Running]:
    handler = Handler()
    handler.pipelining = pipelining
    controller = _Controller(handler, hostname=HOST, port=0, **server_kwargs)
    controller.start()
    try:
        yield Running(handler, controller)
    finally:
        controller.stop()


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def server(request: pytest.FixtureRequest) -> Iterator[Running]:
    """Every test runs against a server without and with PIPELINING."""
    with smtp_server(pipelining=request.param) as running:
        yield running


def _statuses(results: list[Any]) -> list[str]:
    return [r.status.value for r in results]


def test_messages_arrive_intact_over_one_connection(server: Running) -> None:
    batch1 = [make_message(f"reader{i}@example.org", n=i) for i in range(10)]
    batch2 = [make_message(f"reader{i}@example.org", n=i) for i in range(10, 20)]
    with SmtpProvider(server.settings()) as provider:
        results = provider.send(batch1) + provider.send(batch2)
    messages = batch1 + batch2
    assert_one_per_message(messages, results)
    assert all(r.status is SendStatus.SUBMITTED for r in results)
    assert [r.provider_id for r in results] == [f"ABC{i}" for i in range(1, 21)]
    assert len(server.handler.peers) == 1
    assert provider.connections == 1
    assert len(server.handler.received) == 20
    for message, got in zip(messages, server.handler.received, strict=True):
        assert got.mail_from == message.sender and got.rcpt_tos == [message.recipient]
        parsed = BytesParser(policy=policy.default).parsebytes(got.content)
        assert parsed["Message-ID"] == message.message_id
        assert parsed["Subject"] == message.subject
        body = parsed.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert ".A line that starts with a dot." in text  # dot-stuffing undone by the server


def test_per_recipient_outcomes_in_one_batch(server: Running) -> None:
    messages = [
        make_message("ok1@example.org", n=1),
        make_message("bounce@example.org", n=2),
        make_message("later@example.org", n=3),
        make_message("ok2@example.org", n=4),
        make_message("ok3@example.org", n=5, sender="blocked@example.com"),
        make_message("spamtrap@example.org", n=6),
        make_message("ok4@example.org", n=7),
    ]
    with SmtpProvider(server.settings()) as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert _statuses(results) == [
        "submitted",
        "permanent",
        "transient",
        "submitted",
        "permanent",
        "permanent",
        "submitted",
    ]
    assert results[1].reason == "RCPT TO bounce@example.org: 550 5.1.1 no such user"
    assert results[2].reason == "RCPT TO later@example.org: 451 4.3.0 try later"
    assert results[4].reason == "MAIL FROM blocked@example.com: 553 5.7.1 sender not allowed"
    assert results[5].reason == "DATA spamtrap@example.org: 554 5.6.0 content rejected"
    # Failed transactions were reset: later messages carry only their own recipient.
    assert [r.rcpt_tos for r in server.handler.received] == [
        ["ok1@example.org"],
        ["ok2@example.org"],
        ["ok4@example.org"],
    ]
    assert len(server.handler.peers) == 1


def test_a_failure_ending_one_batch_does_not_spoil_the_next(server: Running) -> None:
    with SmtpProvider(server.settings()) as provider:
        first = provider.send(
            [make_message("ok1@example.org", n=1), make_message("bounce@example.org", n=2)]
        )
        second = provider.send([make_message("ok2@example.org", n=3)])
    assert _statuses(first) == ["submitted", "permanent"]
    assert _statuses(second) == ["submitted"]
    assert [r.rcpt_tos for r in server.handler.received] == [
        ["ok1@example.org"],
        ["ok2@example.org"],
    ]
    assert len(server.handler.peers) == 1


@pytest.mark.parametrize("utf8", [True, False])
def test_non_ascii_addresses_need_smtputf8(utf8: bool) -> None:
    with smtp_server(enable_SMTPUTF8=utf8) as running:
        with SmtpProvider(running.settings()) as provider:
            results = provider.send([make_message("lé@exämple.org"), make_message(n=2)])
        if utf8:
            assert _statuses(results) == ["submitted", "submitted"]
            assert running.handler.received[0].rcpt_tos == ["lé@exämple.org"]
        else:
            assert _statuses(results) == ["permanent", "submitted"]
            assert "SMTPUTF8" in results[0].reason


def test_8bit_bodies_and_bare_newlines_are_sent_cleanly(server: Running) -> None:
    raw = "From: digest@example.com\nSubject: café\n\ndéjà vu\n.hidden dot\n".encode()
    message = replace(make_message(), raw=raw)
    with SmtpProvider(server.settings()) as provider:
        (result,) = provider.send([message])
    assert result.status is SendStatus.SUBMITTED
    (got,) = server.handler.received
    assert got.content == raw.replace(b"\n", b"\r\n")  # and the dot came back unstuffed
    assert got.mail_options == ["BODY=8BITMIME"]


def test_message_id_when_the_server_gives_no_queue_id(server: Running) -> None:
    server.handler.data_reply = "250 OK"
    message = make_message()
    with SmtpProvider(server.settings()) as provider:
        (result,) = provider.send([message])
    assert result.provider_id == message.message_id


@pytest.mark.parametrize("culprit", ["drop@example.org", "closing@example.org"])
def test_connection_lost_midway_gives_transient_results(server: Running, culprit: str) -> None:
    messages = [
        make_message("ok1@example.org", n=1),
        make_message(culprit, n=2),
        make_message("ok2@example.org", n=3),
        make_message("ok3@example.org", n=4),
    ]
    with SmtpProvider(server.settings()) as provider:
        results = provider.send(messages)  # must not raise
    assert_one_per_message(messages, results)
    assert _statuses(results) == ["submitted", "transient", "transient", "transient"]
    assert "connection lost" in results[1].reason
    assert results[2].reason.startswith("not attempted")
    assert [r.rcpt_tos for r in server.handler.received] == [["ok1@example.org"]]
    # One reconnect for the retry of the culprit, then it gave up.
    assert provider.connections == 2


def test_one_drop_is_survived_by_reconnecting(server: Running) -> None:
    messages = [
        make_message("ok1@example.org", n=1),
        make_message("flaky@example.org", n=2),
        make_message("ok2@example.org", n=3),
    ]
    with SmtpProvider(server.settings()) as provider:
        results = provider.send(messages)
    assert _statuses(results) == ["submitted"] * 3
    assert len(server.handler.received) == 3
    assert len(server.handler.peers) == 2


def test_connection_closed_between_batches_is_replaced(server: Running) -> None:
    with SmtpProvider(server.settings()) as provider:
        provider.send([make_message(n=1)])
        server.hang_up_all()
        results = provider.send([make_message(n=2)])
    assert _statuses(results) == ["submitted"]
    assert len(server.handler.peers) == 2


def test_nothing_listening_raises_transient() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    settings = SmtpSettings(host=HOST, port=port, security="none", timeout=2.0)
    with pytest.raises(TransientDeliveryError, match=f"{HOST}:{port}") as caught:
        SmtpProvider(settings).send([make_message()])
    assert caught.value.retryable
    assert SmtpProvider(settings).send([]) == []  # an empty batch never connects


def _authenticator(
    server: Server, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"digest", b"s3cret")
    # handled=False: let the server answer "535" itself.
    return AuthResult(success=ok, handled=False)


def test_auth_login() -> None:
    with smtp_server(auth_require_tls=False, authenticator=_authenticator) as running:
        settings = running.settings(username="digest", password="s3cret")
        with SmtpProvider(settings) as provider:
            (result,) = provider.send([make_message()])
        assert result.status is SendStatus.SUBMITTED
        assert running.handler.sessions[0].authenticated

        with (
            SmtpProvider(settings, password="wrong") as provider,
            pytest.raises(PermanentDeliveryError) as caught,
        ):
            provider.send([make_message()])
        assert "535" in str(caught.value) and running.settings().host in str(caught.value)
        assert "wrong" not in str(caught.value)
        assert len(running.handler.received) == 1


# TLS ------------------------------------------------------------------------------------------
@dataclass
class Certs:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A self-signed certificate for 127.0.0.1, and a client context that trusts it."""
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_path, key_path = self_signed(folder, HOST)
    cert_pem = cert_path.read_bytes()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Certs(server, client)


ServerFactory = Callable[[Certs], dict[str, Any]]


@pytest.mark.parametrize(
    ("security", "server_kwargs"),
    [
        ("starttls", lambda c: {"tls_context": c.server, "require_starttls": True}),
        # aiosmtpd only counts STARTTLS as TLS when deciding whether to offer AUTH.
        ("tls", lambda c: {"ssl_context": c.server, "auth_require_tls": False}),
    ],
)
def test_tls_modes(certs: Certs, security: str, server_kwargs: ServerFactory) -> None:
    with smtp_server(**server_kwargs(certs), authenticator=_authenticator) as running:
        settings = running.settings(security=security, username="digest", password="s3cret")
        with SmtpProvider(settings, ssl_context=certs.client) as provider:
            results = provider.send([make_message(n=1), make_message(n=2)])
        assert _statuses(results) == ["submitted"] * 2
        assert len(running.handler.peers) == 1

        # The default context does not trust a self-signed certificate: a config problem.
        with pytest.raises(PermanentDeliveryError, match="certificate"):
            SmtpProvider(settings).send([make_message()])


def test_starttls_is_never_silently_skipped(server: Running) -> None:
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        SmtpProvider(server.settings(security="starttls")).send([make_message()])
    assert server.handler.received == []


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_a_550_and_a_451_among_fifty(pipelining: bool) -> None:
    """Each refusal is its own recipient's: the 48 others go through, once each, on one
    connection, with the server's queue ids; the 550 5.1.1 is a hard bounce, the 451 is not."""
    with smtp_server(pipelining=pipelining) as running:
        messages = [make_message(f"reader{i}@example.org", n=i) for i in range(50)]
        messages[17] = make_message("bounce@example.org", n=17)
        messages[33] = make_message("later@example.org", n=33)
        noted: list[str] = []
        with SmtpProvider(running.settings()) as provider:
            results = provider.send(messages, lambda r: noted.append(r.key))
        assert_one_per_message(messages, results)
        assert noted == [m.key for m in messages]  # each answer reported as it came
        statuses = _statuses(results)
        assert statuses.count("submitted") == 48
        assert (statuses[17], results[17].bounce) == ("permanent", True)
        assert (statuses[33], results[33].bounce) == ("transient", False)
        received = [r.rcpt_tos[0] for r in running.handler.received]
        assert sorted(received) == sorted(
            m.recipient for i, m in enumerate(messages) if i not in (17, 33)
        )
        assert len(running.handler.peers) == 1
        # The bodies arrive as built (dot lines and all): SMTP transparency holds both ways.
        first = running.handler.received[0].content
        assert b"\n.A line that starts with a dot." in first.replace(b"\r\n", b"\n")
        # MAIL, RCPT and DATA went in one write each time the server offered it, never else.
        assert provider.pipelined == (50 if pipelining else 0)


class _Writer:
    """An ``on_result`` that writes in the background: each result is only "sent" when given,
    and written by ``wait``; its ``fail_at``-th wait fails (a journal gone)."""

    def __init__(self, server: Running, fail_at: int = 0) -> None:
        self.server, self.fail_at = server, fail_at
        self.given: list[str] = []
        self.written: list[str] = []
        self.waits = 0
        self.received_at_wait: list[int] = []  # messages the server had at each wait

    def __call__(self, result: Any) -> None:
        self.given.append(result.key)

    def wait(self) -> None:
        self.waits += 1
        self.received_at_wait.append(len(self.server.handler.received))
        if self.waits == self.fail_at:
            raise RuntimeError("journal down")
        self.written = list(self.given)


def test_each_body_waits_for_the_answers_before_it_to_be_written(server: Running) -> None:
    """The provider may start a message's exchange while the last answer is being written,
    but sends its body only once that answer is written (``ready``): never two in flight."""
    batch = [make_message(f"reader{i}@example.org", n=i) for i in range(5)]
    writer = _Writer(server)
    with SmtpProvider(server.settings()) as provider:
        assert provider.waits_for_results
        results = provider.send(batch, writer)
    assert _statuses(results) == ["submitted"] * 5
    assert writer.waits == 5  # once before each body
    assert writer.received_at_wait == [0, 1, 2, 3, 4]  # each before its own message went in
    assert writer.given == [m.key for m in batch]


def test_a_failed_write_stops_the_next_body_and_drops_the_session(server: Running) -> None:
    """The answer of message 2 cannot be written: message 3's body never goes (the session is
    closed mid-DATA, so the server drops it), and the error is the writer's, not a lost
    connection (which would try message 3 again)."""
    batch = [make_message(f"reader{i}@example.org", n=i) for i in range(5)]
    writer = _Writer(server, fail_at=3)
    with SmtpProvider(server.settings()) as provider:
        with pytest.raises(RuntimeError, match="journal down"):
            provider.send(batch, writer)
        assert len(server.handler.received) == 2
        assert writer.given == [m.key for m in batch[:2]]
        # The next batch starts on a new session, the failed one left behind.
        again = provider.send(batch[2:3])
        assert _statuses(again) == ["submitted"] and provider.connections == 2
    assert [r.rcpt_tos for r in server.handler.received] == [
        [m.recipient] for m in batch[:2] + batch[2:3]
    ]


class _LineServer:
    """A minimal SMTP server on a raw socket, one session, offering PIPELINING. At each end of
    data it looks (for up to ``patience`` seconds) whether the next message's ``MAIL`` is
    already on its way before it answers the body: what ``ahead`` records, by message."""

    def __init__(self, patience: float = 2.0) -> None:
        self.patience = patience
        self.ahead: list[bool] = []
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        buffer = bytearray()

        def readline() -> bytes:
            while b"\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return b""
                buffer.extend(chunk)
            end = buffer.index(b"\n") + 1
            line = bytes(buffer[:end])
            del buffer[:end]
            return line

        with conn:
            conn.sendall(b"220 lines ESMTP\r\n")
            in_data = False
            while line := readline():
                if in_data:
                    if line != b".\r\n":
                        continue
                    in_data = False
                    # The next MAIL is either read already or on its way on the socket.
                    waiting = bool(buffer) or bool(select.select([conn], [], [], self.patience)[0])
                    self.ahead.append(waiting)
                    conn.sendall(f"250 2.0.0 Ok: queued as Q{len(self.ahead)}\r\n".encode())
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-lines\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    in_data = True
                    conn.sendall(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:  # MAIL, RCPT, RSET, NOOP
                    conn.sendall(b"250 OK\r\n")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_the_next_envelope_goes_with_the_body_before_it() -> None:
    """With PIPELINING, each body is followed in the same write by the next message's MAIL,
    RCPT and DATA (RFC 2920 lets message content open a group): the server has the next
    envelope before it answers a body, so a message costs one round trip, not two. The
    last body of a batch has nothing after it."""
    server = _LineServer()
    batch = [make_message(f"reader{i}@example.org", n=i) for i in range(4)]
    settings = SmtpSettings(host=HOST, port=server.port, security="none", timeout=5.0)
    try:
        with SmtpProvider(settings) as provider:
            results = provider.send(batch)
            assert provider.pipelined == 4
    finally:
        server.close()
    assert _statuses(results) == ["submitted"] * 4
    assert [r.provider_id for r in results] == ["Q1", "Q2", "Q3", "Q4"]
    assert server.ahead == [True, True, True, False]


def test_the_envelope_waits_for_the_body_before_it_when_told_to() -> None:
    """``envelope_ahead = false`` (a server that mishandles commands right after the end of
    data): each envelope goes only after the reply to the body before it."""
    server = _LineServer(patience=0.3)
    batch = [make_message(f"reader{i}@example.org", n=i) for i in range(3)]
    settings = SmtpSettings(
        host=HOST, port=server.port, security="none", timeout=5.0, envelope_ahead=False
    )
    try:
        with SmtpProvider(settings) as provider:
            results = provider.send(batch)
    finally:
        server.close()
    assert _statuses(results) == ["submitted"] * 3
    assert server.ahead == [False, False, False]


def test_an_answer_that_cannot_be_noted_drops_a_session_with_replies_unread() -> None:
    """The note of message 1's answer fails after message 2's envelope went out with its
    body: the batch stops, and the session (holding unread replies) is not reused, so the
    next batch's answers are its own."""
    batch = [make_message(f"reader{i}@example.org", n=i) for i in range(3)]

    def note(result: Any) -> None:
        raise OSError("journal full")

    with smtp_server(pipelining=True) as running:
        with SmtpProvider(running.settings()) as provider:
            with pytest.raises(OSError, match="journal full"):
                provider.send(batch, note)
            again = provider.send(batch[1:])
            assert _statuses(again) == ["submitted", "submitted"]
            assert provider.connections == 2
        received = [r.rcpt_tos for r in running.handler.received]
    assert received == [[batch[0].recipient], [batch[1].recipient], [batch[2].recipient]]
