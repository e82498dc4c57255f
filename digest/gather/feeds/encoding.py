"""feedparser's conversion of a feed body to UTF-8, without its peak for a body that is UTF-8.

feedparser decodes the whole body into a str (four bytes a character as soon as one emoji is in
it), substitutes its XML declaration (a second such str) and encodes the result again: for a
2.5 MB feed that is some 30 MB at once, the biggest moment of the whole parse, and both the
guard and the fast path convert every XML body. For a body that is UTF-8 the round trip changes
nothing but the declaration, so that case is done on the bytes.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import feedparser

# The first line of a body, at most this long, is what feedparser's encoding sniffing reads.
_PROBE_BYTES = 64 * 1024
_VALIDATE_CHUNK = 256 * 1024
_XML_DECLARATION = re.compile(rb"^<\?xml[^>]*?>")
_UTF8_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>"
# Byte order marks and the encodings' "<?xm": feedparser's sniffing strips or reads these.
_SNIFFED_STARTS = (
    codecs.BOM_UTF8,
    codecs.BOM_UTF16_BE,
    codecs.BOM_UTF16_LE,
    feedparser.encodings.EBCDIC_MARKER,
)


def _convert_to_utf8(headers: dict[str, str], body: bytes, result: dict[str, Any]) -> bytes:
    """``feedparser.encodings.convert_to_utf8(headers, body, result)``: the same bytes and the
    same ``result``.

    Which encoding feedparser tries first depends on the headers and on the body's start only
    (its BOM, and an ``encoding=`` on its first line: the pattern feedparser looks for it with
    does not cross a newline), so feedparser's function is run on the first line alone. When
    that tries UTF-8 first and without complaint, the whole body decodes as UTF-8 if it is
    valid UTF-8 (checked a chunk at a time), and then feedparser's answer is the body itself
    with its XML declaration replaced. Anything else (a BOM, another encoding, invalid UTF-8, a
    first line longer than :data:`_PROBE_BYTES`) goes to feedparser's own function.
    """
    convert = feedparser.encodings.convert_to_utf8
    end = body.find(b"\n", 0, _PROBE_BYTES)
    if end == -1 or body.startswith(_SNIFFED_STARTS) or b"\x00" in body[:4]:
        return convert(headers, body, result)
    probe: dict[str, Any] = {}
    convert(headers, body[: end + 1], probe)
    encoding = probe.get("encoding") or ""
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        utf8 = False
    if probe.get("bozo") or not utf8:
        return convert(headers, body, result)
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(body)
    try:
        for start in range(0, len(body), _VALIDATE_CHUNK):
            decoder.decode(view[start : start + _VALIDATE_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return convert(headers, body, result)
    result.update(probe)
    declaration = _XML_DECLARATION.match(body)
    if declaration is None:
        return _UTF8_DECLARATION + b"\n" + body
    return _UTF8_DECLARATION + body[declaration.end() :]
