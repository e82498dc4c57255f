"""Personalised messages at delivery speed: a variant's MIME message compiled once, filled per
recipient.

``build_message`` (``mime``) builds each message through the stdlib ``email`` package, which
costs milliseconds; a batch of a thousand recipients shares everything but a few short values.
``compile_message`` encodes the shared parts once (headers, the boundary, the quoted-printable
text and HTML around the personal tokens) and ``MessageTemplate.render`` joins those bytes with
the encoded personal values: the To header, the Message-ID, the List-Unsubscribe URL, and in
both bodies the unsubscribe and preferences URLs and the greeting.

How the bodies stay valid quoted-printable (RFC 2045) when pieces encoded apart are joined:
every piece starts at the beginning of a line and ends with a line break, a hard one where the
text has a line break and a soft one (``=`` CRLF) otherwise, so no line can grow past 76
characters, whatever the values are. The boundary starts with ``=_``, which quoted-printable
output can never contain (an ``=`` there is always followed by two hex digits or the line end),
so no body, shared or personal, can end the part early.

``build_message`` stays the reference: tests/render/test_fastmime.py parses both and compares
headers and bodies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from digest.config import Settings
from digest.models import BodyTemplate, Edition, OutgoingMessage, Subscriber
from digest.render.mime import (
    _NOT_ATEXT,
    MAX_LINE,
    POLICY,
    _address,
    _fold,
    _quoted,
    build_message,
    shared_headers,
)
from digest.render.personalise import (
    GREETING,
    PREFERENCES,
    READER,
    UNSUBSCRIBE,
    body_template,
    cut,
    greeting,
)
from digest.text import clean_header

CRLF = b"\r\n"
SOFT = b"=\r\n"
# Content characters on a line that ends with a soft break (76 with the "=").
_SOFT_ROOM = MAX_LINE - 1

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Bytes quoted-printable must escape, once "=" itself is escaped: all but printable ASCII,
# space and tab (trailing space and tab are handled per line).
_UNPRINTABLE = re.compile(rb"[^\t\x20-\x7e]")
_ESCAPE = [f"={b:02X}".encode() for b in range(256)]

# RFC 5322 atext: a display name made of such words separated by single spaces goes out as is.
_PLAIN_NAME = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,60}(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,60})*"
)
# A dot-atom address with an LDH domain: the common case, which needs no parser. Anything else
# goes through email.headerregistry.Address, which validates it (or refuses it) as before.
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
# email.headerregistry.Address quotes a display name holding any of these.
_SPECIALS = frozenset('()<>@,:;."[]\\')
# At most 45 bytes per RFC 2047 encoded word: 60 base64 characters, 72 with the delimiters,
# so that "To: " and one word fit in 76 columns.
_EW_BYTES = 45


# Quoted-printable -------------------------------------------------------------------------
def _encode_line(data: bytes, *, hard: bool) -> list[bytes]:
    """One line of text (UTF-8, no line break) as quoted-printable lines, CRLF-terminated: the
    last one with a hard break when ``hard``, else with a soft one."""
    data = _UNPRINTABLE.sub(lambda m: _ESCAPE[m[0][0]], data.replace(b"=", b"=3D"))
    if hard and data[-1:] in (b" ", b"\t"):
        # Trailing white space would be stripped in transport: encode it.
        data = data[:-1] + _ESCAPE[data[-1]]
    out = []
    start, end = 0, len(data)
    while True:
        # A line starting with "." (SMTP) or "From " (mbox) is encoded so that nothing on the
        # way can rewrite it.
        head = b""
        if data.startswith((b".", b"From "), start):
            head = _ESCAPE[data[start]]
            start += 1
        room = _SOFT_ROOM - len(head)
        if end - start <= room + hard:
            out.append(head + data[start:] + (CRLF if hard else SOFT))
            return out
        cut = start + room
        # Never split an escape: "=" is only ever the first character of one.
        if data[cut - 1] == 0x3D:
            cut -= 1
        elif data[cut - 2] == 0x3D:
            cut -= 2
        out.append(head + data[start:cut] + SOFT)
        start = cut


def qp_encode(text: str) -> bytes:
    """``text`` as quoted-printable lines, each ending in CRLF: a hard break for every line
    break of ``text`` (CRLF, CR or LF), and a soft break after a last line without one.

    Any two outputs can be concatenated: the result decodes to the two texts joined.
    """
    lines = _LINE_BREAK.split(text)
    last = lines.pop()
    out: list[bytes] = []
    for line in lines:
        out += _encode_line(line.encode("utf-8"), hard=True) if line else [CRLF]
    if last:
        out += _encode_line(last.encode("utf-8"), hard=False)
    return b"".join(out)


def qp_value(value: str) -> bytes:
    """A personal value (URL, greeting) encoded as by ``qp_encode``, with shortcuts for the
    usual cases: printable ASCII without "=" (URLs), and one short line (greetings)."""
    if not value:
        return b""
    if value.isascii() and value.isprintable() and "=" not in value:
        if len(value) <= _SOFT_ROOM and not value.startswith((".", "From ")):
            return value.encode("ascii") + SOFT
        if " " not in value and not value.startswith("."):
            # No space, so no "From "; a line may not start with "." either (SMTP would need
            # to stuff it): such a cut goes the long way, which escapes it.
            data = value.encode("ascii")
            # The bytes that would start the second, third... line: none may be a dot.
            if b"." not in data[_SOFT_ROOM::_SOFT_ROOM]:
                return (
                    SOFT.join([data[i : i + _SOFT_ROOM] for i in range(0, len(data), _SOFT_ROOM)])
                    + SOFT
                )
    elif "\n" not in value and "\r" not in value:
        # binascii escapes "=", controls and 8-bit bytes, and trailing white space; one line
        # of at most 75 characters (no soft break inserted) is all this shortcut takes.
        data = binascii.b2a_qp(value.encode("utf-8"), istext=False)
        if len(data) <= _SOFT_ROOM and b"\n" not in data and not data.startswith((b".", b"From ")):
            return data + SOFT
    return qp_encode(value)


# Headers ----------------------------------------------------------------------------------
def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 base64 encoded words of at most 72 characters, cut between
    characters. Decoders that follow RFC 2047 join adjacent words without the folding space;
    CPython's parser keeps that space in a display name, so only a name short enough for one
    word (45 bytes of UTF-8: 15 CJK or about 22 accented Latin characters) reads back the same
    there too."""
    data = text.encode("utf-8")
    if len(data) <= _EW_BYTES:
        return ["=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="]
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _EW_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    words.append("".join(chunk))
    return ["=?utf-8?b?" + base64.b64encode(w.encode()).decode("ascii") + "?=" for w in words]


def _display_str(name: str, addr: str) -> str:
    """What ``str(Address(display_name=name, addr_spec=addr))`` gives."""
    if not name:
        return addr
    if not _SPECIALS.isdisjoint(name):
        name = _quoted(name)
    return f"{name} <{addr}>"


def _to_line(name: str, addr: str) -> bytes:
    """The folded ``To:`` header line (CRLF included) for a clean name and address."""
    if not name:
        items = [addr]
    elif name.isascii() and _PLAIN_NAME.fullmatch(name):
        line = f"To: {name} <{addr}>"
        if len(line) <= MAX_LINE:
            return line.encode("ascii") + CRLF
        items = [*name.split(" "), f"<{addr}>"]
    elif name.isascii() and len(_quoted(name)) + len(addr) + 7 <= MAX_LINE:
        items = [_quoted(name), f"<{addr}>"]
    else:
        items = [*_encoded_words(name), f"<{addr}>"]
    # Fold before an item that would pass MAX_LINE, but never right after "To:".
    out = "To:"
    width = 3
    for item in items:
        if width > 3 and width + 1 + len(item) > MAX_LINE:
            out += "\r\n"
            width = 0
        out += " " + item
        width += 1 + len(item)
    return (out + "\r\n").encode("ascii")


def _header_bytes(msg: EmailMessage) -> bytes:
    return b"".join(POLICY.fold_binary(k, v) for k, v in msg.raw_items())


def _clean(value: str) -> str:
    """``clean_header(value)``, skipping the regexes when there is nothing to clean."""
    if value.isascii() and value.isprintable() and "  " not in value and value == value.strip():
        return value
    return clean_header(value)


# Template ---------------------------------------------------------------------------------
# The personal values, by their index in the tuple ``render`` fills.
_TEXT_SLOT = {UNSUBSCRIBE: 0, PREFERENCES: 1, GREETING: 2, READER: 3}
_HTML_SLOT = {UNSUBSCRIBE: 4, PREFERENCES: 5, GREETING: 6, READER: 7}
_TO, _MESSAGE_ID, _LIST_UNSUBSCRIBE = 8, 9, 10


@dataclass(frozen=True, slots=True)
class _Pieces:
    """A sequence with holes: ``fill`` puts ``values[slot]`` at each hole's index."""

    pieces: tuple[str, ...] | tuple[bytes, ...]
    holes: tuple[tuple[int, int], ...]

    def fill(self, values: tuple[str, ...] | tuple[bytes, ...]) -> list[Any]:
        out = list(self.pieces)
        for index, slot in self.holes:
            out[index] = values[slot]
        return out


def _split(body: str, slots: dict[str, int]) -> tuple[list[str], list[tuple[int, int]]]:
    """``body`` split at its tokens (odd indexes) and the holes the tokens leave."""
    parts = cut(body)
    return parts, [(i, slots[parts[i]]) for i in range(1, len(parts), 2)]


def _wire(
    body: str, slots: dict[str, int], offset: int
) -> tuple[list[bytes], list[tuple[int, int]]]:
    """``body`` quoted-printable around its tokens, the holes shifted by ``offset``.

    The wire body ends with a line break as the stdlib writes it (the string stays as given).
    """
    parts, holes = _split(body, slots)
    if not parts[-1].endswith(("\n", "\r")):
        parts[-1] += "\n"
    encoded = [b"" if i % 2 else qp_encode(p) for i, p in enumerate(parts)]
    return encoded, [(i + offset, slot) for i, slot in holes]


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """One variant's message with the personal parts left open; see ``render``."""

    edition_id: str
    sender: str
    subject: str
    links_mailto: str
    headers: dict[str, str]
    text: _Pieces
    html: _Pieces
    raw: _Pieces
    id_prefix: str
    id_suffix: str
    body: BodyTemplate
    # For the rare address only the stdlib can write (non-ASCII, SMTPUTF8).
    edition: Edition
    settings: Settings
    now: datetime

    def render(
        self,
        *,
        subscriber: Subscriber,
        unsubscribe_url: str,
        preferences_url: str,
        key: str,
        bodies: bool = True,
        reader: str = "",
    ) -> OutgoingMessage:
        """The complete message for ``subscriber``: what ``build_message`` gives for the
        bodies ``personalise`` makes with these URLs (and ``reader``, the subscriber's part of
        each click link), in microseconds.

        ``bodies=False`` leaves ``html`` and ``text`` empty (``raw`` is complete either way),
        for providers that send ``raw`` only: two body-sized strings fewer per message."""
        # To: the same checks as build_message; a simple address needs no parser.
        addr = _clean(subscriber.email)
        name = _clean(subscriber.name)[:100].rstrip()
        if not (addr.isascii() and _SIMPLE_ADDRESS.fullmatch(addr)):
            addr = _address(name, addr, what=f"subscriber {subscriber.id}").addr_spec
        # Digits (and a minus sign) are atext: only the edition's part needed cleaning.
        msg_id = f"<{self.id_prefix}{int(subscriber.id)}{self.id_suffix}"
        https = "<" + _clean(unsubscribe_url) + ">"

        hello = greeting(subscriber.name)
        values = (
            unsubscribe_url,
            preferences_url,
            hello,
            reader,
            html.escape(unsubscribe_url, quote=True),
            html.escape(preferences_url, quote=True),
            html.escape(hello, quote=True),
            html.escape(reader, quote=True),
        )
        if not addr.isascii():
            text = "".join(self.text.fill(values))
            body_html = "".join(self.html.fill(values))
            built = build_message(
                body_html,
                text,
                edition=self.edition,
                settings=self.settings,
                subscriber=subscriber,
                unsubscribe_url=unsubscribe_url,
                now=self.now,
                key=key,
            )
            if not bodies:
                built = replace(built, html="", text="")
            return replace(built, template=self.body, tokens=self._tokens(values))
        text = "".join(self.text.fill(values)) if bodies else ""
        body_html = "".join(self.html.fill(values)) if bodies else ""
        unsub_enc, prefs_enc, hello_enc = qp_value(values[0]), qp_value(values[1]), qp_value(hello)
        reader_enc = qp_value(reader)
        # The HTML values are the text values unless escaping changed them.
        raw = b"".join(
            self.raw.fill(
                (
                    unsub_enc,
                    prefs_enc,
                    hello_enc,
                    reader_enc,
                    unsub_enc if values[4] == values[0] else qp_value(values[4]),
                    prefs_enc if values[5] == values[1] else qp_value(values[5]),
                    hello_enc if values[6] == hello else qp_value(values[6]),
                    reader_enc if values[7] == reader else qp_value(values[7]),
                    _to_line(name, addr),
                    b"Message-ID: " + msg_id.encode("ascii") + CRLF,
                    _list_unsubscribe(https, self.links_mailto),
                )
            )
        )
        headers = dict(self.headers)
        headers["To"] = _display_str(name, addr)
        headers["Message-ID"] = msg_id
        headers["List-Unsubscribe"] = (
            f"{https}, {self.links_mailto}" if self.links_mailto else https
        )
        return OutgoingMessage(
            key=key,
            edition_id=self.edition_id,
            message_id=msg_id,
            sender=self.sender,
            recipient=addr,
            subject=self.subject,
            raw=raw,
            html=body_html,
            text=text,
            headers=headers,
            template=self.body,
            tokens=self._tokens(values),
            # Every line is a header (a name, or folded with leading white space), a MIME
            # boundary, or quoted-printable from _encode_line, which escapes a leading "."; and
            # each piece ends in CRLF.
            wire_ready=True,
        )

    @staticmethod
    def _tokens(values: tuple[str, ...]) -> dict[str, str]:
        return {
            UNSUBSCRIBE: values[0],
            PREFERENCES: values[1],
            GREETING: values[2],
            READER: values[3],
        }


_LU_WIDTH = len("List-Unsubscribe: ")


def _list_unsubscribe(https: str, mailto: str) -> bytes:
    """The List-Unsubscribe line (CRLF included) as ``mime._fold`` folds [https, mailto]."""
    if not mailto:
        return ("List-Unsubscribe: " + _fold("List-Unsubscribe", [https], ",") + "\r\n").encode()
    first = https + ","
    if _LU_WIDTH + 1 + len(first) > MAX_LINE:
        out, width = "List-Unsubscribe: \r\n " + first, 1 + len(first)
    else:
        out, width = "List-Unsubscribe: " + first, _LU_WIDTH + len(first)
    sep = "\r\n " if width + 1 + len(mailto) > MAX_LINE else " "
    return (out + sep + mailto + "\r\n").encode()


def compile_message(
    html_body: str,
    text_body: str,
    *,
    edition: Edition,
    settings: Settings,
    now: datetime,
    boundary: str | None = None,
) -> MessageTemplate:
    """Encode what every recipient of this variant shares; ``html_body`` and ``text_body`` are
    the variant's, tokens still in. ``now`` is the Date header (naive means UTC)."""
    common = shared_headers(edition, settings, now)

    # The shared headers go through the same policy as build_message's, once.
    first = EmailMessage(policy=POLICY)
    first["From"] = common.sender
    shared = EmailMessage(policy=POLICY)
    if common.reply_to is not None:
        shared["Reply-To"] = common.reply_to
    if common.raw_subject:
        shared.set_raw("Subject", common.raw_subject)
    else:
        shared["Subject"] = common.subject
    shared["Date"] = format_datetime(common.date)

    boundary = boundary or "=_" + secrets.token_hex(16)
    if not boundary.startswith("=_") or not re.fullmatch(r"[=_A-Za-z0-9]{3,70}", boundary):
        raise ValueError(f"boundary {boundary!r}: must start with '=_' (see module docstring)")
    delimiter = b"--" + boundary.encode("ascii")
    part = (
        b'Content-Type: text/%s; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )

    # Message-ID: <{edition}.{subscriber}@{domain}>, cleaned as message_id() does.
    id_prefix = _NOT_ATEXT.sub("-", f"{edition.id}.").lstrip(".")

    headers = {**common.plain, "Date": str(shared["Date"])}
    text_parts, text_holes = _split(text_body, _TEXT_SLOT)
    html_parts, html_holes = _split(html_body, _HTML_SLOT)
    head: list[bytes] = [
        _header_bytes(first),
        b"",  # To
        _header_bytes(shared),
        b"",  # Message-ID
        f"List-Id: {common.list_id}\r\n".encode("ascii"),
        b"",  # List-Unsubscribe
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative;\r\n boundary="'
        + boundary.encode("ascii")
        + b'"\r\n\r\n'
        + delimiter
        + CRLF
        + part % b"plain",
    ]
    raw_holes = [(1, _TO), (3, _MESSAGE_ID), (5, _LIST_UNSUBSCRIBE)]
    text_wire, holes = _wire(text_body, _TEXT_SLOT, len(head))
    head += text_wire
    raw_holes += holes
    head.append(CRLF + delimiter + CRLF + part % b"html")
    html_wire, holes = _wire(html_body, _HTML_SLOT, len(head))
    head += html_wire
    raw_holes += holes
    head.append(CRLF + delimiter + b"--" + CRLF)
    return MessageTemplate(
        edition_id=edition.id,
        sender=settings.publication.from_email,
        subject=common.subject,
        links_mailto=common.mailto_part,
        headers=headers,
        text=_Pieces(tuple(text_parts), tuple(text_holes)),
        html=_Pieces(tuple(html_parts), tuple(html_holes)),
        raw=_Pieces(tuple(head), tuple(raw_holes)),
        id_prefix=id_prefix,
        id_suffix=f"@{common.domain}>",
        body=body_template(
            edition.id
            + ":"
            + hashlib.sha256(f"{html_body}\0{text_body}".encode()).hexdigest()[:16],
            html_body,
            text_body,
        ),
        edition=edition,
        settings=settings,
        now=common.date,
    )
