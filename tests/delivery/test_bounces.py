"""Which SMTP refusals of ``RCPT TO`` are hard bounces (the address itself is bad).

With an RFC 3463 enhanced status at the start of the reply, it decides: ``5.1.x`` (no such
user or domain, bad syntax, moved) and ``5.2.1`` (mailbox disabled) are; policy refusals
(``5.7.x``), a full mailbox (``5.2.2``) and the rest are not. Without one, the basic code does:
550, 551 and 553 are, other 5xx are not. 4xx (and anything else) never is.
"""

from __future__ import annotations

import pytest

from digest.delivery.smtp import hard_bounce


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (550, "5.1.1 user unknown"),
        (550, "5.1.1 <gone@example.org>: Recipient address rejected: User unknown"),
        (550, "5.1.2 bad destination system address"),
        (553, "5.1.3 bad destination mailbox address syntax"),
        (550, "5.1.6 mailbox has moved"),
        (550, "5.1.10 recipient address has null MX"),
        (550, "5.2.1 mailbox disabled"),
        (554, "5.1.1 no such user"),  # the enhanced status decides, not the basic code
        (551, "5.1.1 user not local"),
    ],
)
def test_address_problems_with_an_enhanced_status_are_hard(code: int, reply: str) -> None:
    assert hard_bounce(code, reply) is True


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (550, "5.7.1 relaying denied"),
        (550, "5.7.1 <x@example.org>: Relay access denied"),
        (554, "5.7.1 message rejected as spam"),
        (550, "5.7.26 unauthenticated email is not accepted"),
        (552, "5.2.2 mailbox full"),
        (550, "5.2.2 over quota"),  # a full mailbox, even with 550
        (552, "5.3.4 message too big for system"),
        (550, "5.2.0 other mailbox status"),
        (550, "5.4.1 no answer from host"),
        (553, "5.7.1 sender not authorised"),  # enhanced status overrules 553
    ],
)
def test_policy_and_mailbox_state_with_an_enhanced_status_are_not_hard(
    code: int, reply: str
) -> None:
    assert hard_bounce(code, reply) is False


@pytest.mark.parametrize(
    ("code", "reply", "expected"),
    [
        (550, "Requested action not taken: mailbox unavailable", True),
        (551, "User not local; please try <other@example.org>", True),
        (551, "", True),
        (553, "Requested action not taken: mailbox name not allowed", True),
        (553, "", True),
        (550, "", False),
        (550, "Relaying denied", False),
        (550, "Message rejected: listed at a block list", False),
        (550, "No such user here", True),
        (550, "Recipient address rejected: user unknown in local recipient table", True),
        (554, "Transaction failed", False),
        (552, "Requested mail action aborted: exceeded storage allocation", False),
        (500, "Syntax error, command unrecognized", False),
        (501, "Syntax error in parameters", False),
        (503, "Bad sequence of commands", False),
        (554, "", False),
    ],
)
def test_without_an_enhanced_status_the_basic_code_decides(
    code: int, reply: str, expected: bool
) -> None:
    assert hard_bounce(code, reply) is expected


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (451, "4.1.1 temporarily unable to verify recipient"),
        (450, "4.2.1 mailbox busy"),
        (452, "4.2.2 mailbox full"),
        (421, "4.7.0 try again later"),
        (450, "mailbox unavailable"),
        (250, "2.1.5 OK"),
        (250, "5.1.1 inconsistent but still accepted"),
        (-1, "5.1.1 unreadable reply"),  # smtplib's code for a reply it could not read
        (0, ""),
        (600, "5.1.1 out of range"),
    ],
)
def test_anything_but_5xx_is_never_hard(code: int, reply: str) -> None:
    assert hard_bounce(code, reply) is False


@pytest.mark.parametrize(
    ("code", "reply", "expected"),
    [
        (550, " 5.1.1 user unknown", True),
        (550, "    5.1.1 user unknown", True),
        (550, "\t5.2.1 disabled", True),
        (550, "  5.7.1 relaying denied", False),
        (552, "   5.2.2 mailbox full", False),
    ],
)
def test_leading_spaces_before_the_enhanced_status(code: int, reply: str, expected: bool) -> None:
    assert hard_bounce(code, reply) is expected


@pytest.mark.parametrize(
    ("code", "reply", "expected"),
    [
        # Only a status at the start counts: one further in is ordinary text.
        (554, "Rejected (see 5.1.1 in the docs)", False),
        (550, "Policy 5.7.1 applies", False),
        # Not an enhanced status: the basic code decides.
        (550, "5.7 relaying denied", False),
        (554, "5.1 user unknown", False),
        (550, "5.7.1234 too many digits", False),
        (554, "5.1.1234 too many digits", False),
    ],
)
def test_what_counts_as_an_enhanced_status(code: int, reply: str, expected: bool) -> None:
    assert hard_bounce(code, reply) is expected


def test_multiline_reply_reads_the_first_line() -> None:
    reply = "5.1.1 The email account that you tried to reach does not exist.\n5.1.1 Please check"
    assert hard_bounce(550, reply) is True
    reply = "5.7.1 Our system has detected an unusual rate\n5.1.1 of unsolicited mail"
    assert hard_bounce(550, reply) is False
