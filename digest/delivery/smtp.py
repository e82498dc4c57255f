"""The SMTP provider: submits messages to a mail server over one reused connection.

One connection is opened on the first ``send`` and kept until :meth:`SmtpProvider.close`, so a
batch of hundreds costs one TCP and TLS handshake, not hundreds. Each message is a separate
SMTP transaction (``MAIL``/``RCPT``/``DATA``), driven with smtplib's low-level calls so every
step's reply code is known and mapped to a result:

- 2xx at every step: ``SUBMITTED``, with the server's queue id (from ``queued as X`` or
  ``id=X`` in the reply to DATA) or else the Message-ID as ``provider_id``;
- 4xx: ``TRANSIENT``; 5xx: ``PERMANENT``; the reason names the step and quotes the server. A
  5xx to ``RCPT TO`` that blames the address is a hard bounce (``bounce=True``): enhanced status
  ``5.1.x`` (no such user or domain, bad syntax, moved) or ``5.2.1`` (mailbox disabled), or
  without an enhanced status 551, 553, or 550 whose text says the mailbox is unknown. Policy
  refusals (``5.7.x``), a full mailbox (``5.2.2``) and refusals at ``MAIL`` or ``DATA`` do not
  suppress the subscriber;
- connection lost (EOF, reset, timeout, or a ``421`` closing reply): reconnect once and retry
  that message; if it fails again, it and every message after it come back ``TRANSIENT``.

Failing to connect or log in before the batch starts raises (see ``digest.delivery.base``).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import time
from collections.abc import Sequence

from digest.config import SmtpSettings
from digest.delivery.base import (
    OnResult,
    ProviderBase,
    permanent,
    ready,
    report,
    submitted,
    transient,
)
from digest.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from digest.models import OutgoingMessage, SendResult, SendStatus

# Postfix: "250 2.0.0 Ok: queued as 4Xy1Z2"; Exim: "250 OK id=1rAbCd-000123-4E".
_QUEUE_ID = re.compile(r"(?:queued as|\bid=)\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.IGNORECASE)
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
# An address as it goes between angle brackets: no brackets, spaces or line breaks in it.
_ADDRESS = re.compile(r"[^\s<>]+@[^\s<>@]+")
_FRESH = 5.0  # seconds after its last command a session is used without a NOOP check
_CLOSING = 421  # "service not available, closing transmission channel"
# RFC 3463 enhanced status at the start of the reply text: "5.1.1 <x@y>: user unknown".
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def wire_data(raw: bytes) -> bytes:
    """``raw`` as the DATA phase carries it: CRLF line ends (a bare CR or LF is refused by
    strict servers, as a smuggling defence), dot-stuffed (RFC 5321 §4.5.2), ended by ``.``.

    Messages the render stage builds are already CRLF and rarely have a line starting with a
    dot, so the usual cost is a few counts over the bytes, not a regex pass.
    """
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:
        raw = _LINE_ENDS.sub(b"\r\n", raw)
    if raw.startswith(b".") or b"\n." in raw:
        raw = raw.replace(b"\n.", b"\n..")
        if raw.startswith(b"."):
            raw = b"." + raw
    if raw and not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


_BAD_MAILBOX = re.compile(
    r"(user|mailbox|recipient|address|account)\b.*\b(unknown|not found|does not exist|"
    r"doesn't exist|no such|invalid|unavailable|disabled|not exist)|no such (user|mailbox)",
    re.IGNORECASE,
)


def hard_bounce(code: int, reply: str) -> bool:
    """Whether a 5xx refusal of ``RCPT TO`` says the address itself is bad (see the module doc)."""
    if not 500 <= code < 600:
        return False
    enhanced = _ENHANCED.match(reply)
    if enhanced:
        subject, detail = enhanced.group(2), enhanced.group(3)
        return subject == "1" or (subject, detail) == ("2", "1")
    # No enhanced status: a bare 550 is as often a policy refusal ("relaying denied", a block
    # list) as a bad address, so the reply must say it is about the mailbox.
    # 551 (not local) and 553 (mailbox name not allowed) are about the address by definition.
    return code in (551, 553) or (code == 550 and bool(_BAD_MAILBOX.search(reply)))


class _ConnectionLost(Exception):
    """The session is unusable; the current message's outcome is unknown."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _reply(code: int, reply: bytes | str) -> str:
    return f"{code} {_text(reply)}".strip()


class SmtpProvider(ProviderBase):
    """Submits messages to ``settings.host:settings.port``.

    ``password`` overrides ``settings.password`` (e.g. when a caller fetched it from a vault);
    ``ssl_context`` overrides the default verifying context (e.g. to trust a private CA). TLS
    is never downgraded: with ``starttls`` a server that does not offer it is an error.
    """

    name = "smtp"
    raw_only = True
    waits_for_results = True  # the last answer's journal row travels with the next envelope

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self._password = settings.password.get_secret_value() if password is None else password
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._dirty = False  # the session's last transaction failed: RSET before the next
        self._last_used = 0.0  # time.monotonic() of the session's last completed command
        # Counts successful connections (first one and reconnects), and transactions sent
        # pipelined; useful in logs and tests.
        self.connections = 0
        self.pipelined = 0

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # Connection ---------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate a session; raise a DeliveryError naming host:port."""
        s = self.settings
        smtp: smtplib.SMTP | None = None
        step = "connect"
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            step = "EHLO"
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                step = "STARTTLS"
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.username:
                step = f"AUTH as {s.username!r}"
                smtp.login(s.username, self._password)
        except smtplib.SMTPResponseException as e:
            # Covers a refused greeting, EHLO, STARTTLS and AUTH (535: bad credentials).
            self._discard(smtp)
            error = PermanentDeliveryError if 500 <= e.smtp_code < 600 else TransientDeliveryError
            raise error(
                f"SMTP {self.where}: {step} refused: {_reply(e.smtp_code, e.smtp_error)}"
            ) from e
        except smtplib.SMTPNotSupportedError as e:
            # Configuration and server disagree (no STARTTLS, no AUTH): waiting will not help.
            self._discard(smtp)
            raise PermanentDeliveryError(
                f"SMTP {self.where}: {step} not supported by the server: {e}; check "
                "delivery.smtp.security and delivery.smtp.username"
            ) from e
        except ssl.SSLCertVerificationError as e:
            self._discard(smtp)
            raise PermanentDeliveryError(
                f"SMTP {self.where}: {step}: certificate not trusted: {e.verify_message}"
            ) from e
        except OSError as e:
            # Refused, unreachable, DNS, timeouts, dropped mid-handshake: may pass.
            self._discard(smtp)
            raise TransientDeliveryError(f"SMTP {self.where}: {step} failed: {e}") from e
        self.connections += 1
        return smtp

    def _session(self) -> smtplib.SMTP:
        """The open session, checked with NOOP so a connection the server idled out is replaced
        before the batch starts (and a failure to reconnect can still raise cleanly). A session
        used in the last few seconds is not checked: servers idle connections out after minutes,
        and a NOOP per small batch (a rate limit slices batches) would cost a round trip each."""
        if self._smtp is not None:
            if time.monotonic() - self._last_used < _FRESH:
                return self._smtp
            try:
                code, _ = self._smtp.noop()
                if code == 250:
                    self._last_used = time.monotonic()
                    return self._smtp
            except OSError:
                pass
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    @staticmethod
    def _discard(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def _drop(self) -> None:
        """Forget a broken session without talking to the server."""
        self._discard(self._smtp)
        self._smtp = None
        self._dirty = False

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except OSError:
            pass  # the server may already be gone; the socket is closed either way
        finally:
            self._drop()

    # Sending ------------------------------------------------------------------------------
    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        smtp = self._session()  # raises: nothing of this batch was attempted yet
        try:
            return self._send(smtp, messages, on_result)
        except BaseException:
            # Stopped mid-batch (the journal failed, an interrupt): replies may be unread (to
            # an envelope sent ahead, say), so the session is out of step: never reused.
            self._drop()
            raise

    def _send(
        self, smtp: smtplib.SMTP, messages: Sequence[OutgoingMessage], on_result: OnResult | None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        ahead = False  # this message's envelope went out with the body before it
        for index, message in enumerate(messages):
            following = messages[index + 1] if index + 1 < len(messages) else None
            try:
                result, sent_ahead = self._transaction(
                    smtp,
                    message,
                    on_result,
                    reset=self._dirty,
                    ahead=ahead,
                    following=following,
                )
            except _ConnectionLost as lost:
                self._drop()
                sent_ahead = False  # an envelope sent ahead went with the session
                try:
                    smtp = self._session()
                    result, _ = self._transaction(smtp, message, on_result, reset=False)
                except (_ConnectionLost, DeliveryError) as again:
                    self._drop()
                    reason = f"SMTP {self.where}: connection lost ({lost}); retry failed: {again}"
                    report(results, transient(message.key, reason), on_result)
                    for m in messages[index + 1 :]:
                        report(results, transient(m.key, f"not attempted: {reason}"), on_result)
                    return results
            # A failed transaction may leave server state behind (even for the next batch on
            # this reused session): RSET before the next MAIL (see _transaction).
            self._dirty = result.status is not SendStatus.SUBMITTED
            ahead = sent_ahead
            self._last_used = time.monotonic()
            report(results, result, on_result)
        return results

    def _envelope(self, smtp: smtplib.SMTP, message: OutgoingMessage) -> SendResult | list[bytes]:
        """``MAIL FROM`` (with its options), ``RCPT TO`` and ``DATA`` for ``message``, each a
        line as it goes on the wire, or the permanent result when it cannot be sent to this
        server at all (nothing is sent then)."""
        options: list[str] = []
        ascii_only = message.sender.isascii() and message.recipient.isascii()
        if not ascii_only:
            if not smtp.has_extn("smtputf8"):
                return permanent(
                    message.key,
                    f"SMTP {self.where}: address is not ASCII and the server does not "
                    "offer SMTPUTF8",
                )
            options.append("SMTPUTF8")
        if not message.raw.isascii() and smtp.has_extn("8bitmime"):
            # Declare 8-bit bodies so the server does not have to guess (or bounce).
            options.append("BODY=8BITMIME")
        for address in (message.sender, message.recipient):
            if not _ADDRESS.fullmatch(address):
                return permanent(message.key, f"SMTP: unusable address {address!r}")
        mail = f"MAIL FROM:<{message.sender}>" + "".join(" " + o for o in options)
        encoding = "ascii" if ascii_only else "utf-8"
        return [
            f"{command}\r\n".encode(encoding)
            for command in (mail, f"RCPT TO:<{message.recipient}>", "DATA")
        ]

    @staticmethod
    def _pipelining(smtp: smtplib.SMTP) -> bool:
        return bool(smtp.does_esmtp and smtp.has_extn("pipelining"))

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        message: OutgoingMessage,
        on_result: OnResult | None,
        *,
        reset: bool,
        ahead: bool = False,
        following: OutgoingMessage | None = None,
    ) -> tuple[SendResult, bool]:
        """One MAIL/RCPT/DATA exchange, and whether ``following``'s envelope went out with
        its body; raises _ConnectionLost when the session breaks.

        When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write and
        their replies are read after: one round trip instead of three. And the next message's
        envelope goes in the same write as this body (the message content may open a
        pipelined group), so its replies are on their way back with this body's: one round
        trip a message instead of two. ``ahead``: this message's envelope went that way, with
        the body before it. The body, the point of no return, goes only once the answers
        before it are written down (:func:`ready`); they may still be on their way while the
        envelope is.
        """
        try:
            commands: list[bytes] = []  # none to send when the envelope went ahead
            # No RSET before an envelope sent ahead: it followed a whole DATA, which ends the
            # transaction whatever its reply.
            if not ahead:
                if reset:
                    smtp.rset()
                envelope = self._envelope(smtp, message)
                if isinstance(envelope, SendResult):
                    return envelope, False
                commands = envelope
            payload = None if message.wire_ready else wire_data(message.raw)
            if ahead or self._pipelining(smtp):
                if not ahead:
                    smtp.send(b"".join(commands))
                    self.pipelined += 1
                replies = [smtp.getreply() for _ in range(3)]
            else:
                replies = []
                for command, ok in zip(commands, ((250,), (250, 251), (354,)), strict=True):
                    smtp.send(command)
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in ok:
                        break
            steps = ("MAIL FROM", "RCPT TO", "DATA")
            accepted = (250,), (250, 251), (354,)
            failed = next(
                (i for i, (code, _) in enumerate(replies) if code not in accepted[i]), None
            )
            sent_ahead = False
            if failed is None:
                self._ready(on_result)
                if payload is None:
                    # Already CRLF and dot-safe: only the end marker to add (one write, so the
                    # marker never waits behind the body for an acknowledgement).
                    end = b".\r\n" if message.raw.endswith(b"\r\n") else b"\r\n.\r\n"
                    payload = message.raw + end
                if (
                    following is not None
                    and self.settings.envelope_ahead
                    and self._pipelining(smtp)
                ):
                    next_envelope = self._envelope(smtp, following)
                    if not isinstance(next_envelope, SendResult):
                        # In the same write: a small write after a big one could wait for
                        # the big one's acknowledgement.
                        payload += b"".join(next_envelope)
                        self.pipelined += 1
                        sent_ahead = True
                smtp.send(payload)
                code, reply = smtp.getreply()
                if code != 250:
                    return self._refused(message, "DATA", code, reply), sent_ahead
            else:
                if len(replies) == 3 and replies[2][0] == 354:
                    # DATA was accepted though MAIL or RCPT was not: end it, empty.
                    smtp.send(b".\r\n")
                    smtp.getreply()
                code, reply = replies[failed]
                return self._refused(message, steps[failed], code, reply), False
        except OSError as e:
            # SMTPServerDisconnected, resets and timeouts; after any of them the session's state
            # is unknown, so it must not be reused.
            raise _ConnectionLost(str(e) or type(e).__name__) from e
        match = _QUEUE_ID.search(_text(reply))
        return submitted(message.key, match.group(1) if match else message.message_id), sent_ahead

    def _ready(self, on_result: OnResult | None) -> None:
        """Wait for the answers before this message to be written down; if that fails, close
        the session mid-DATA (the server then drops the message: RFC 5321 4.1.1.4) and raise
        what failed, never as a lost connection (which would try the message again)."""
        try:
            ready(on_result)
        except BaseException as e:
            self._drop()
            if isinstance(e, OSError):
                raise RuntimeError(f"writing an answer down failed: {e}") from e
            raise

    def _refused(
        self, message: OutgoingMessage, step: str, code: int, reply: bytes | str
    ) -> SendResult:
        if code == _CLOSING:
            # The server is hanging up; treat it as a lost connection, not as this message's fault.
            raise _ConnectionLost(_reply(code, reply))
        who = message.sender if step == "MAIL FROM" else message.recipient
        reason = f"{step} {who}: {_reply(code, reply)}"
        if 500 <= code < 600:
            bounce = step == "RCPT TO" and hard_bounce(code, _text(reply))
            return permanent(message.key, reason, bounce=bounce)
        # 4xx, and anything unexpected (smtplib reports an unreadable reply as -1): may pass.
        return transient(message.key, reason)
