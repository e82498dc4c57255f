"""Signed, expiring tokens for unsubscribe and preference links.

A token carries only the subscriber id, signed with the publication's key and a salt per
purpose, so an unsubscribe token can never be replayed as a preferences token (or the other way
round). The timestamp inside lets the web app refuse old links (``max_age_seconds``).
"""

from __future__ import annotations

from typing import Literal, get_args

from itsdangerous import BadData, URLSafeTimedSerializer

from digest.config import Settings
from digest.errors import PermanentError

Purpose = Literal["unsubscribe", "preferences"]
PURPOSES: frozenset[str] = frozenset(get_args(Purpose))
# Versioned, so a change of token format can retire every old token at once.
SALTS: dict[str, str] = {p: f"newsletter-digest.{p}.v1" for p in PURPOSES}


class InvalidToken(PermanentError):
    """A token is forged, tampered with, expired, for another purpose or another key."""


def serializer(key: str, purpose: Purpose) -> URLSafeTimedSerializer:
    """The serializer for ``purpose``; ``key`` is ``Settings.signing_key``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; use one of {sorted(PURPOSES)}")
    if not key:
        raise ValueError("an empty signing key would make every token forgeable")
    return URLSafeTimedSerializer(key, salt=SALTS[purpose])


def make_token(key: str, subscriber_id: int, purpose: Purpose) -> str:
    """A URL-safe token for ``subscriber_id``, valid for ``purpose`` only."""
    return serializer(key, purpose).dumps(int(subscriber_id))


def read_token(key: str, token: str, purpose: Purpose, max_age_seconds: int) -> int:
    """The subscriber id in ``token``; raise InvalidToken when it cannot be trusted."""
    try:
        value = serializer(key, purpose).loads(token, max_age=max_age_seconds)
    except BadData as e:  # BadSignature, SignatureExpired, BadPayload, BadTimeSignature
        raise InvalidToken(f"{purpose} token refused: {type(e).__name__}") from None
    # bool is an int to Python but never a subscriber id.
    if type(value) is not int:
        raise InvalidToken(f"{purpose} token refused: unexpected payload")
    return value


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.links_base}/u/{token}"


def preferences_url(settings: Settings, token: str) -> str:
    return f"{settings.links_base}/p/{token}"
