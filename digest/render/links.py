"""Links in the email: UTM parameters on article URLs, the CMS's width parameter on images."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit, urlunsplit

SAFE_SCHEMES = frozenset({"http", "https"})


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.netloc)


def add_utm(url: str, *, source: str, medium: str = "email", campaign: str, content: str) -> str:
    """``url`` with ``utm_*`` parameters appended.

    The existing query string is kept byte for byte (re-encoding it could change what the
    publisher's server sees), the fragment is kept, and a ``utm_*`` key the URL already carries
    wins over ours: the publisher may have tagged the link on purpose. Calling it twice changes
    nothing the second time. Non-web URLs (mailto:, relative) come back unchanged.
    """
    if not is_web_url(url):
        return url
    parts = urlsplit(url)
    present = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    wanted = (
        ("utm_source", source),
        ("utm_medium", medium),
        ("utm_campaign", campaign),
        ("utm_content", content),
    )
    extra = [(k, v) for k, v in wanted if v and k not in present]
    if not extra:
        return url
    query = parts.query.rstrip("&")
    query = f"{query}&{urlencode(extra)}" if query else urlencode(extra)
    return urlunsplit(parts._replace(query=query))


def with_width(url: str, param: str, width: int) -> str:
    """``url`` with the query parameter ``param`` set to ``width`` (the CMS resizes on it).

    An existing value is replaced where it stands (repeats of it are dropped); every other
    parameter is kept byte for byte, in order, and so is the fragment. Idempotent. An empty
    ``param`` or a URL that is not http(s) comes back unchanged, so the result is http(s)
    exactly when the input was.
    """
    if not param or not is_web_url(url):
        return url
    parts = urlsplit(url)
    ours = f"{quote(param, safe='')}={int(width)}"
    pieces: list[str] = []
    placed = False
    for piece in parts.query.split("&") if parts.query else []:
        if unquote_plus(piece.partition("=")[0]) == param:
            if not placed:
                pieces.append(ours)
                placed = True
        elif piece:
            pieces.append(piece)
    if not placed:
        pieces.append(ours)
    return urlunsplit(parts._replace(query="&".join(pieces)))
