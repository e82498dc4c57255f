"""Signed tokens: round trip, and every kind of bad token refused."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest.audience.tokens import (
    SALTS,
    InvalidToken,
    make_token,
    preferences_url,
    read_token,
    unsubscribe_url,
)
from digest.errors import PermanentError
from tests.render import make_settings

KEY = "test-signing-key"
DAY = 86_400


def test_round_trip() -> None:
    for purpose in ("unsubscribe", "preferences"):
        token = make_token(KEY, 12345, purpose)
        assert read_token(KEY, token, purpose, max_age_seconds=DAY) == 12345


def test_tokens_are_url_safe() -> None:
    token = make_token(KEY, 2**40, "unsubscribe")
    assert all(c.isalnum() or c in "-_." for c in token)


def test_invalid_token_is_permanent() -> None:
    assert issubclass(InvalidToken, PermanentError)


def test_other_purpose_refused() -> None:
    token = make_token(KEY, 1, "preferences")
    with pytest.raises(InvalidToken):
        read_token(KEY, token, "unsubscribe", max_age_seconds=DAY)


def test_other_key_refused() -> None:
    token = make_token("another-key", 1, "unsubscribe")
    with pytest.raises(InvalidToken):
        read_token(KEY, token, "unsubscribe", max_age_seconds=DAY)


# Not -1: the last base64 character of the signature carries padding bits, so some changes to
# it decode to the same bytes (base64 malleability, not a forgery).
@pytest.mark.parametrize("position", [0, 3, -2, -5])
def test_tampered_refused(position: int) -> None:
    token = make_token(KEY, 1, "unsubscribe")
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises(InvalidToken):
        read_token(KEY, "".join(chars), "unsubscribe", max_age_seconds=DAY)


@pytest.mark.parametrize(
    "forged", ["", "abc", "MQ", "MQ.x.y", "MTIzNDU.AAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA"]
)
def test_forged_refused(forged: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(KEY, forged, "unsubscribe", max_age_seconds=DAY)


def test_swapped_payload_refused() -> None:
    token = make_token(KEY, 1, "unsubscribe")
    other = make_token(KEY, 2, "unsubscribe")
    payload_of_other = other.split(".")[0]
    with pytest.raises(InvalidToken):
        read_token(KEY, ".".join([payload_of_other, *token.split(".")[1:]]), "unsubscribe", DAY)


class _OldSigner(TimestampSigner):
    """Signs as if it were 30 days ago (no clock mocking needed)."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 30 * DAY


def test_expired_refused() -> None:
    old = URLSafeTimedSerializer(KEY, salt=SALTS["unsubscribe"], signer=_OldSigner).dumps(9)
    # Genuine and correctly signed: readable with a long enough max_age ...
    assert read_token(KEY, old, "unsubscribe", max_age_seconds=60 * DAY) == 9
    # ... and refused when older than max_age.
    with pytest.raises(InvalidToken, match="Expired"):
        read_token(KEY, old, "unsubscribe", max_age_seconds=7 * DAY)


def test_non_integer_payload_refused() -> None:
    serializer = URLSafeTimedSerializer(KEY, salt=SALTS["unsubscribe"])
    for payload in ("1", True, [1], None, 1.5):
        with pytest.raises(InvalidToken):
            read_token(KEY, serializer.dumps(payload), "unsubscribe", max_age_seconds=DAY)


def test_unknown_purpose_and_empty_key_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        make_token(KEY, 1, "delete")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_token("", 1, "unsubscribe")


def test_urls() -> None:
    settings = make_settings()
    assert unsubscribe_url(settings, "tok") == "https://m.example.org/u/tok"
    assert preferences_url(settings, "tok") == "https://m.example.org/p/tok"


@pytest.mark.parametrize("ident", [0, 1, 12345, 999_999_999, 10**9, 2**40, 1111111111111111111, -7])
def test_fast_tokens_are_itsdangerous_tokens(ident: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # make_token keeps the derived key and HMAC state per (key, purpose); its tokens must be
    # byte for byte what URLSafeTimedSerializer.dumps writes at the same second.
    monkeypatch.setattr(time, "time", lambda: 1_776_000_000.75)
    for purpose in ("unsubscribe", "preferences"):
        expected = URLSafeTimedSerializer(KEY, salt=SALTS[purpose]).dumps(ident)
        assert make_token(KEY, ident, purpose) == expected
        monkeypatch.setattr(time, "time", lambda: 1_776_000_001.0)
        assert make_token(KEY, ident, purpose) != expected  # the stamp follows the clock
        monkeypatch.setattr(time, "time", lambda: 1_776_000_000.75)


def test_key_rotation_old_links_keep_working_until_dropped() -> None:
    old, new = "old-signing-key", "new-signing-key"
    before = make_token(old, 7, "unsubscribe")
    after = make_token(new, 7, "unsubscribe")
    # Verifying with [old, new] (oldest first) accepts both; new links are signed with `new`.
    assert read_token([old, new], before, "unsubscribe", max_age_seconds=DAY) == 7
    assert read_token([old, new], after, "unsubscribe", max_age_seconds=DAY) == 7
    assert read_token(new, after, "unsubscribe", max_age_seconds=DAY) == 7
    # Once the old key is dropped, its links are refused.
    with pytest.raises(InvalidToken):
        read_token([new], before, "unsubscribe", max_age_seconds=DAY)
    # An empty key in the list would make every token forgeable: refused outright.
    with pytest.raises(ValueError, match="forgeable"):
        read_token([new, ""], after, "unsubscribe", max_age_seconds=DAY)


def test_read_link_uses_the_configured_keys_and_lifetimes() -> None:
    from digest.audience.tokens import read_link
    from digest.config import parse_settings
    from tests.render import settings_dict

    data = settings_dict()
    data["web"] = {"link_max_age_days": 60, "confirm_max_age_days": 2}
    env = {"DIGEST__SECRET_KEY": "current", "DIGEST__OLD_SECRET_KEYS": "retired1,retired2"}
    settings = parse_settings(data, environ=env)
    assert settings.verifying_keys == ["retired1", "retired2", "current"]
    for key in settings.verifying_keys:
        assert read_link(settings, make_token(key, 5, "preferences"), "preferences") == 5
    with pytest.raises(InvalidToken):
        read_link(settings, make_token("someone-else", 5, "preferences"), "preferences")
    # Links last 60 days; a confirmation link only 2.
    stamp = time.time() - 59 * DAY
    signer = URLSafeTimedSerializer("current", salt=SALTS["preferences"])
    signer_confirm = URLSafeTimedSerializer("current", salt=SALTS["confirm"])
    real_time = time.time
    try:
        time.time = lambda: stamp  # type: ignore[assignment]
        old_prefs, old_confirm = signer.dumps(5), signer_confirm.dumps(5)
    finally:
        time.time = real_time  # type: ignore[assignment]
    assert read_link(settings, old_prefs, "preferences") == 5
    with pytest.raises(InvalidToken):
        read_link(settings, old_confirm, "confirm")


def test_links_must_last_at_least_sixty_days() -> None:
    from digest.config import parse_settings
    from digest.errors import ConfigError
    from tests.render import settings_dict

    data = settings_dict()
    data["web"] = {"link_max_age_days": 30}
    with pytest.raises(ConfigError, match="link_max_age_days"):
        parse_settings(data, environ={})


@pytest.mark.parametrize(
    "ident",
    [2**61 + 12345, 4611686018427387903, 1111111111111111111, 10**18, 999999999, 1234567890],
)
def test_long_ids_match_itsdangerous_byte_for_byte(ident: int) -> None:
    """Links carry 62-bit random ids; the fast maker writes what itsdangerous writes (which
    compresses repetitive payloads: those are left to it)."""
    from unittest import mock

    from digest.audience.tokens import TokenMaker, serializer

    with mock.patch("time.time", return_value=1_790_000_000.5):
        ours = TokenMaker(KEY, "preferences")(ident)
        theirs = serializer(KEY, "preferences").dumps(ident)
    assert ours == theirs
    assert read_token(KEY, ours, "preferences", max_age_seconds=10**10) == ident
