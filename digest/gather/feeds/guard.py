"""Hostile XML refused before feedparser sees it.

An internal DTD subset or ENTITY declarations (the billion-laughs family) are looked for in
every view of the prolog that a parser could read, because feedparser's fallback parser expands
internal entities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from digest.gather.feeds.encoding import _convert_to_utf8

_WINDOW = 64 * 1024
_ROOT_START = re.compile(rb"<[A-Za-z_:]")
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
# A DOCTYPE whose declaration reaches a "[" outside quoted literals has an internal subset.
_DOCTYPE_SUBSET = re.compile(rb"""<!DOCTYPE(?:[^>\["']|"[^"]*"|'[^']*')*\[""", re.IGNORECASE)
_EBCDIC_XML = b"\x4c\x6f\xa7\x94"  # "<?xm" in EBCDIC (cp037), which feedparser also decodes


def _hostile(view: bytes) -> bool:
    return bool(_ENTITY_DECL.search(view) or _DOCTYPE_SUBSET.search(view))


def _prolog_views(body: bytes, headers: Mapping[str, str]) -> Iterable[bytes]:
    """ASCII-compatible views of the part of ``body`` where DTD declarations can be.

    Decoding-agnostic first: removing NUL bytes turns UTF-16 and UTF-32 markup (with or
    without a BOM) into ASCII for the characters we look for. Then exactly what feedparser will
    parse (its own conversion to UTF-8, honouring the content type and XML declaration), so
    that an exotic declared encoding (UTF-7, EBCDIC) cannot hide a declaration.
    """
    window = body[:_WINDOW]
    stripped = window.replace(b"\x00", b"")
    yield stripped
    if not _ROOT_START.search(stripped):
        # The prolog is longer than the window (or there is no element at all): look at it all.
        yield body.replace(b"\x00", b"")
    if window[:4] == _EBCDIC_XML:
        yield window.decode("cp037", "replace").encode("utf-8")
    try:
        converted = _convert_to_utf8(dict(headers), body, {})
    except Exception:  # an encoding feedparser cannot decode cannot hide a DTD
        return
    root = _ROOT_START.search(converted)
    end = max(root.end() if root else len(converted), _WINDOW)
    yield converted[:end]
