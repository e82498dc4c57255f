"""The one check and normal form of an email address, and how each caller words a refusal."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.audience.addresses import InvalidAddress, normalise_email
from digest.audience.csv_import import InvalidSubscriber, new_subscriber, read_subscribers_csv
from digest.audience.service import AudienceError, _signup_address, signup
from digest.config import Settings
from digest.store import Store, email_key

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_normal_form_lowercases_the_domain_only() -> None:
    assert normalise_email("  Ada.Lovelace@Example.ORG \n") == "Ada.Lovelace@example.org"


def test_a_refusal_keeps_what_was_given_and_why() -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise_email("  not-an-address ")
    assert caught.value.address == "not-an-address"
    assert caught.value.reason
    assert str(caught.value) == f"'not-an-address': {caught.value.reason}"


def test_each_caller_words_the_refusal_as_before() -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise_email("nobody")
    reason = caught.value.reason
    with pytest.raises(
        InvalidSubscriber, match=f"^{re.escape(repr('nobody'))}: {re.escape(reason)}$"
    ):
        new_subscriber(" nobody ", known_sections=())
    with pytest.raises(AudienceError) as refused:
        _signup_address("nobody")
    assert refused.value.message == f"That email address is not valid: {reason}"


# Compatibility characters (fullwidth letters, ligatures): one person, one subscription ---------
LOOKALIKES = [
    ("ｂｏｂ@example.com", "bob@example.com"),
    ("ｂｏｂ@ｅｘａｍｐｌｅ.com", "bob@example.com"),
    ("bob＠example.com", "bob@example.com"),
    ("ﬁona@example.com", "fiona@example.com"),
]


@pytest.mark.parametrize(("given", "normal"), LOOKALIKES)
def test_compatibility_characters_are_normalised(given: str, normal: str) -> None:
    assert normalise_email(given) == normal
    assert email_key(given) == email_key(normal) == normal


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    yield s
    s.close()


@pytest.mark.parametrize(("given", "normal"), LOOKALIKES)
def test_an_import_sees_a_lookalike_as_the_same_subscriber(
    given: str, normal: str, store: Store
) -> None:
    result = read_subscribers_csv(f"email\n{normal}\n{given}\n", known_sections=())
    assert [p.email for p in result.people] == [normal]
    assert [p.line for p in result.problems] == [3] and "listed twice" in result.problems[0].message

    store.import_subscribers(result.people, now=NOW)
    again = read_subscribers_csv(f"email\n{given}\n", known_sections=())
    assert store.import_subscribers(again.people, now=NOW).added == 0
    assert [p.email for p in store.subscribers()] == [normal]


@pytest.mark.parametrize(("given", "normal"), LOOKALIKES)
def test_a_sign_up_with_a_lookalike_is_the_same_subscriber(
    given: str, normal: str, store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    choices = {"sections": ["qiosk"], "digests": ["weekly"]}
    first, second = (
        signup(store, settings, email=e, name="Bob", now=NOW, **choices) for e in (normal, given)
    )
    assert first.added and not second.added
    assert second.subscriber.id == first.subscriber.id
    assert [p.email for p in store.subscribers()] == [normal]


_TRICKY = [
    "Ann@Example.ORG",
    "ann@example.org",
    "ANN@example.org",
    "postmaster@example.org",
    "Postmaster@Example.org",
    "a.b-c+tag@example.org",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@@example.org",
    "a@example.org.",
    "a@example",
    "ann@ｅｘａｍｐｌｅ.org",
    "ａｎｎ@example.org",
    "ann@bücher.example",
    "ann@BÜCHER.example",
    "ann@xn--bcher-kva.example",
    "ünï@example.org",
    " ann@example.org ",
    "ann @example.org",
    '"quoted"@example.org',
    "x" * 64 + "@example.org",
    "x" * 65 + "@example.org",
    # A long domain seen valid first, then local parts that make the address too long.
    "a@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".org",
    "b" * 50 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".org",
    "c" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".org",
    "a@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + "." + "g" * 57 + ".org",
    "",
    "@example.org",
    "ann@",
]


def _answer(normalise: Callable[[str], str], raw: str) -> str:
    try:
        return normalise(raw)
    except InvalidAddress as e:
        return f"refused: {e.reason}"


def test_the_list_normaliser_answers_as_normalise_email() -> None:
    """The import's normaliser remembers domains; each address still gets the answer
    ``normalise_email`` gives it, whether its domain was seen before or not."""
    from digest.audience.addresses import AddressNormaliser

    for order in (_TRICKY, list(reversed(_TRICKY)), _TRICKY + _TRICKY):
        normalise = AddressNormaliser()
        for raw in order:
            assert _answer(normalise, raw) == _answer(normalise_email, raw), raw
