"""Signed, expiring tokens for unsubscribe and preference links.

A token carries only the subscriber id, signed with the publication's key and a salt per
purpose, so an unsubscribe token can never be replayed as a preferences token (or the other way
round). The timestamp inside lets the web app refuse old links (``max_age_seconds``).

Tokens are made per recipient, so making one is kept cheap: itsdangerous derives the signing
key again (a SHA-1 of salt and key) and builds a fresh HMAC on every ``dumps``; ``TokenMaker``
derives the key once per (key, purpose), keeps the keyed HMAC state, and writes exactly the
bytes ``URLSafeTimedSerializer.dumps`` would (tests/audience check that, byte for byte).
"""

from __future__ import annotations

import base64
import hmac
import time
import zlib
from functools import lru_cache
from typing import Literal, get_args

from itsdangerous import BadData, URLSafeTimedSerializer
from itsdangerous.encoding import int_to_bytes

from digest.config import Settings
from digest.errors import PermanentError

Purpose = Literal["unsubscribe", "preferences", "confirm"]
PURPOSES: frozenset[str] = frozenset(get_args(Purpose))
# Versioned, so a change of token format can retire every old token at once.
SALTS: dict[str, str] = {p: f"newsletter-digest.{p}.v1" for p in PURPOSES}


class InvalidToken(PermanentError):
    """A token is forged, tampered with, expired, for another purpose or another key."""


def serializer(key: str | list[str], purpose: Purpose) -> URLSafeTimedSerializer:
    """The serializer for ``purpose``. ``key`` is ``Settings.signing_key``, or a list of keys
    oldest first (``Settings.verifying_keys``): the last signs, every one verifies, so links
    signed before a key rotation keep working until they expire."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; use one of {sorted(PURPOSES)}")
    keys = [key] if isinstance(key, str) else list(key)
    if not keys or not all(keys):
        raise ValueError("an empty signing key would make every token forgeable")
    return URLSafeTimedSerializer(keys, salt=SALTS[purpose])


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class TokenMaker:
    """Makes the tokens of one (key, purpose), as ``serializer(key, purpose).dumps`` does."""

    __slots__ = ("_clock", "_mac", "_serializer")

    def __init__(self, key: str, purpose: Purpose) -> None:
        self._serializer = serializer(key, purpose)
        signer = self._serializer.make_signer()
        # The signer's own derivation and digest, so a change of itsdangerous defaults can
        # never make these tokens differ from the ones read_token checks.
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        # (second, its encoded timestamp): one attribute, so threads never see half an update.
        self._clock: tuple[int, bytes] = (-1, b"")

    def __call__(self, subscriber_id: int) -> str:
        ident = int(subscriber_id)
        payload = str(ident).encode()
        if len(payload) > 9 and len(zlib.compress(payload)) < len(payload) - 1:
            # itsdangerous zlib-compresses a payload when that makes it shorter (as it does,
            # from about ten characters on, for repetitive digits); leave those to it.
            return self._serializer.dumps(ident)
        now = int(time.time())
        second, stamp = self._clock
        if now != second:
            stamp = b"." + _b64(int_to_bytes(now))
            self._clock = (now, stamp)
        value = _b64(payload) + stamp
        mac = self._mac.copy()
        mac.update(value)
        return (value + b"." + _b64(mac.digest())).decode("ascii")


@lru_cache(maxsize=16)
def token_maker(key: str, purpose: Purpose) -> TokenMaker:
    """The shared TokenMaker for (key, purpose)."""
    return TokenMaker(key, purpose)


def make_token(key: str, subscriber_id: int, purpose: Purpose) -> str:
    """A URL-safe token for ``subscriber_id``, valid for ``purpose`` only."""
    return token_maker(key, purpose)(subscriber_id)


def read_token(key: str | list[str], token: str, purpose: Purpose, max_age_seconds: int) -> int:
    """The subscriber id in ``token``; raise InvalidToken when it cannot be trusted. ``key``
    may be a list of keys, oldest first (see :func:`serializer`)."""
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


def read_link(settings: Settings, token: str, purpose: Purpose) -> int:
    """The subscriber id in a link's token, checked against every key still accepted and the
    link's lifetime (``web.link_max_age_days``; ``web.confirm_max_age_days`` for sign-ups)."""
    days = (
        settings.web.confirm_max_age_days
        if purpose == "confirm"
        else (settings.web.link_max_age_days)
    )
    return read_token(settings.verifying_keys, token, purpose, days * 86_400)


def confirm_url(settings: Settings, token: str) -> str:
    return f"{settings.links_base}/confirm/{token}"


def make_confirm_token(settings: Settings, subscriber_id: int, version: int) -> str:
    """A sign-up's confirmation token: the subscriber id and ``version``, the number of status
    changes the subscriber had when it was made, so a link from before a later change (the
    person confirmed, then left or complained) no longer confirms anything."""
    return str(serializer(settings.verifying_keys, "confirm").dumps([int(subscriber_id), version]))


def read_confirm_token(settings: Settings, token: str) -> tuple[int, int]:
    """``(subscriber id, version)`` from a confirmation token; InvalidToken when it cannot be
    trusted or is older than ``web.confirm_max_age_days``."""
    try:
        value = serializer(settings.verifying_keys, "confirm").loads(
            token, max_age=settings.web.confirm_max_age_days * 86_400
        )
    except BadData as e:
        raise InvalidToken(f"confirm token refused: {type(e).__name__}") from None
    if not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value):
        raise InvalidToken("confirm token refused: unexpected payload")
    return value[0], value[1]
