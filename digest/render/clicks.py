"""Click links: an article link in an edition as a signed redirect through the web app.

``/c/<token>``: the token signs the target (the article's URL, UTM parameters included), the
edition, the article and its section, with the publication's key and a salt of its own, so a
click token is never an unsubscribe or preference token and no one can make the app redirect
anywhere the edition did not link (no open redirect). Nothing personal is inside: every
recipient of a variant gets the same links. The token does not expire: an old edition's links
keep working. Pure: signing is arithmetic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from digest.config import Settings
from digest.render.links import is_web_url

# Versioned, so a change of token format can retire every old click link at once.
SALT = "newsletter-digest.click.v1"
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
