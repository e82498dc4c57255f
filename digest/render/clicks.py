"""Click links: an article link in an edition as a signed redirect through the web app.

``/c/<token>``: the token signs the target (the article's URL, UTM parameters included), the
edition, the article and its section, with the publication's key and a salt of its own, so a
click token is never an unsubscribe or preference token and no one can make the app redirect
anywhere the edition did not link (no open redirect). Nothing personal is inside: every
recipient of a variant gets the same links. The token does not expire: an old edition's links
keep working. Pure: signing is arithmetic, no I/O.

With per-subscriber analytics on (``per_subscriber``), each link of a copy ends in the reader's
part, ``/<subscriber id>.<signature>``: the variant carries the personal token
``%%READER%%`` right after each click token, and each recipient's value signs the edition and
the subscriber id (``reader_part``: one HMAC per recipient, shared by all the copy's links), so
a link cannot be altered to name another subscriber, nor a reader part moved to another
edition. Without it the token is not in the variant and no link carries anything personal.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadData, URLSafeSerializer

from digest.config import Settings
from digest.render.links import is_web_url

# Versioned, so a change of token format can retire every old click link at once.
SALT = "newsletter-digest.click.v1"
READER_SALT = b"newsletter-digest.click-reader.v1"
# 128 bits of HMAC-SHA256, base64url without padding.
_SIGNATURE_CHARS = 22
PATH = "/c/"
# Longer than any token an edition carries (article URLs are capped well below); a longer one
# is refused before any work is spent on it.
MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class ClickTarget:
    """What a click token signs."""

    url: str
    edition_id: str
    article_id: str
    section: str


def _serializer(keys: str | list[str]) -> URLSafeSerializer:
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys or not all(keys):
        raise ValueError("an empty signing key would make every click link forgeable")
    return URLSafeSerializer(keys, salt=SALT)


def click_token(key: str, target: ClickTarget) -> str:
    """The signed token of ``target``."""
    payload = [target.url, target.edition_id, target.article_id, target.section]
    return str(_serializer(key).dumps(payload))


def click_url(settings: Settings, target: ClickTarget) -> str:
    """``<links base>/c/<token>``: the link an edition carries instead of ``target.url``."""
    return f"{settings.links_base}{PATH}{click_token(settings.signing_key, target)}"


def read_click_token(keys: str | list[str], token: str) -> ClickTarget | None:
    """The target ``token`` signs, or None when it is forged, altered, signed with a key no
    longer accepted, or names anything but an http(s) URL."""
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        value = _serializer(keys).loads(token)
    except BadData:
        return None
    if not (isinstance(value, list) and len(value) == 4 and all(type(v) is str for v in value)):
        return None
    url, edition_id, article_id, section = value
    if not is_web_url(url) or url.startswith("//"):
        return None
    return ClickTarget(url, edition_id, article_id, section)


def tracking(settings: Settings, digest: str) -> bool:
    """Whether the edition links of ``digest`` go through click redirects."""
    found = settings.digests.get(digest)
    return bool(found and found.click_tracking)


def per_subscriber(settings: Settings, digest: str) -> bool:
    """Whether the click links of ``digest`` carry each subscriber's reader part: click
    tracking on, and ``per_subscriber_clicks`` (or, unset, ``analytics.per_subscriber``) on."""
    return settings.per_subscriber_clicks(digest)


@lru_cache(maxsize=8)
def _reader_mac(key: str) -> hmac.HMAC:
    """The keyed HMAC state for reader parts (copied per use: the key is derived once)."""
    if not key:
        raise ValueError("an empty signing key would make every reader part forgeable")
    derived = hmac.new(key.encode("utf-8"), READER_SALT, "sha256").digest()
    return hmac.new(derived, digestmod="sha256")


def _reader_signature(key: str, edition_id: str, subscriber_id: int) -> str:
    mac = _reader_mac(key).copy()
    mac.update(f"{edition_id}\0{subscriber_id}".encode())
    return base64.urlsafe_b64encode(mac.digest()).decode("ascii")[:_SIGNATURE_CHARS]


def reader_part(key: str, edition_id: str, subscriber_id: int) -> str:
    """``/<subscriber id>.<signature>``: what follows a click token in one subscriber's copy of
    ``edition_id`` (the value of the ``%%READER%%`` token)."""
    return f"/{subscriber_id}.{_reader_signature(key, edition_id, subscriber_id)}"


def read_reader(keys: str | list[str], edition_id: str, part: str) -> int | None:
    """The subscriber id a reader part (without its leading ``/``) names for ``edition_id``, or
    None when it is malformed or its signature does not hold under any of ``keys``."""
    sid, dot, signature = part.partition(".")
    if not dot or not sid.isdigit() or len(sid) > 18 or len(signature) != _SIGNATURE_CHARS:
        return None
    subscriber_id = int(sid)
    if str(subscriber_id) != sid:  # one spelling per id
        return None
    for key in [keys] if isinstance(keys, str) else keys:
        if key and hmac.compare_digest(
            _reader_signature(key, edition_id, subscriber_id), signature
        ):
            return subscriber_id
    return None
