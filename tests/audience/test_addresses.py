"""The one check and normal form of an email address, and how each caller words a refusal."""

from __future__ import annotations

import re

import pytest

from digest.audience.addresses import InvalidAddress, normalise_email
from digest.audience.csv_import import InvalidSubscriber, new_subscriber
from digest.audience.service import AudienceError, _signup_address


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
