"""What a subscriber or a visitor can do: unsubscribe, choose digests and sections, pause and
resume, sign up, confirm a sign-up. (The confirmation message a sign-up is sent is built by
:func:`digest.steps.messages.confirmation_message`.)

Plain functions over the store, no HTTP: the web app calls them, and so can a command. Every
status change goes through :meth:`Store.set_subscriber_status`, so it is recorded with its cause
in the subscriber's audit trail. A change is made only from the status that was read
(``only_from``), so two requests racing can never undo each other's work: the loser reads again.

Statuses and who may move them:

- ``unsubscribe``: active, paused or pending → unsubscribed. A bounced or complained address
  stays as it is: it is already never mailed, and its cause is worth keeping.
- ``pause`` / ``resume``: active ↔ paused.
- ``confirm`` (double opt-in): pending, paused, unsubscribed, bounced or complained → active.
  It is the only way back for an address that left or was suppressed.
- ``signup`` never changes an existing subscriber: it adds an unknown address as pending and
  says whether a confirmation should be sent. What a visitor sees must not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from digest.audience.addresses import InvalidAddress, normalise_email
from digest.config import Settings
from digest.errors import PermanentError
from digest.models import LEAVABLE, NewSubscriber, Subscriber, SubscriberStatus
from digest.store import Store
from digest.text import clean_header

S = SubscriberStatus

# Who may leave, and who may come back through double opt-in.
CONFIRMABLE = frozenset({S.PENDING, S.PAUSED, S.UNSUBSCRIBED, S.BOUNCED, S.COMPLAINED})
# Who may change their choices (the others receive nothing, whatever they chose).
CHOOSING = frozenset({S.ACTIVE, S.PAUSED, S.PENDING})

SIGNUP_SOURCE = "signup"
CONFIRMED_CAUSE = "confirmed by double opt-in"
MAX_NAME = 100
# A status read, then changed only from that status: a lost race is read again, this often.
_TRIES = 3


class AudienceError(PermanentError):
    """A request that cannot be applied as asked. ``message`` is written for the person who
    made it, so the web app shows it as it is."""


@dataclass(frozen=True, slots=True)
class SignupOutcome:
    """What a sign-up did. ``subscriber`` is the address's record (new or as it was);
    ``send_confirmation`` says whether a confirmation message should go to it (not for an
    active subscriber). The visitor's answer must be the same in every case."""

    subscriber: Subscriber
    added: bool
    send_confirmation: bool


def _move(
    store: Store,
    subscriber_id: int,
    allowed: frozenset[SubscriberStatus],
    to: SubscriberStatus,
    *,
    now: datetime,
    cause: str,
) -> bool:
    """Set ``to`` when the subscriber is in one of ``allowed``; True when it changed."""
    for _ in range(_TRIES):
        sub = store.subscriber(subscriber_id)
        if sub is None or sub.status is to or sub.status not in allowed:
            return False
        if store.set_subscriber_status(
            subscriber_id, to, now=now, cause=cause, only_from=sub.status
        ):
            return True
    return False


def unsubscribe(store: Store, subscriber_id: int, *, now: datetime, cause: str) -> bool:
    """Unsubscribe (idempotent). True when the status changed; False when the subscriber had
    already left, is suppressed, or does not exist."""
    return _move(store, subscriber_id, LEAVABLE, S.UNSUBSCRIBED, now=now, cause=cause)


def pause(
    store: Store, subscriber_id: int, *, now: datetime, cause: str = "paused by the subscriber"
) -> bool:
    """Stop mail to an active subscriber, keeping their choices. True when it changed."""
    return _move(store, subscriber_id, frozenset({S.ACTIVE}), S.PAUSED, now=now, cause=cause)


def resume(
    store: Store, subscriber_id: int, *, now: datetime, cause: str = "resumed by the subscriber"
) -> bool:
    """Mail a paused subscriber again. True when it changed."""
    return _move(store, subscriber_id, frozenset({S.PAUSED}), S.ACTIVE, now=now, cause=cause)


def confirm(store: Store, subscriber_id: int, *, now: datetime, version: int | None = None) -> bool:
    """Double opt-in: the address's owner followed the confirmation link. True when it changed
    (False too when the subscriber was already active).

    ``version`` is the token's (see ``tokens.make_confirm_token``): a link made before the
    subscriber's last change of status is refused, so someone who confirmed and then left or
    complained is not brought back by the old message."""
    if version is not None and store.status_version(subscriber_id) != version:
        return False
    return _move(store, subscriber_id, CONFIRMABLE, S.ACTIVE, now=now, cause=CONFIRMED_CAUSE)


def digest_titles(settings: Settings) -> str:
    """Every digest's title, as a sentence says them: "A", "A and B", "A, B and C"."""
    titles = [d.title for d in settings.digests.values()]
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


# Choices ----------------------------------------------------------------------------------------
def offered_sections(settings: Settings) -> list[str]:
    """Section keys a subscriber can choose: those some digest carries, in digest order."""
    return list(dict.fromkeys(s for d in settings.digests.values() for s in d.sections))


def resolve_choices(
    settings: Settings, *, digests: Iterable[str], sections: Iterable[str]
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(sections, digests) to store for what was ticked; None where everything was ticked, so
    a section or digest added later reaches those who chose everything. Raises AudienceError
    for an unknown key or a choice that would receive nothing."""
    chosen_digests = set(digests)
    chosen_sections = set(sections)
    offered = offered_sections(settings)
    unknown = sorted(chosen_digests - set(settings.digests)) + sorted(
        chosen_sections - set(offered)
    )
    if unknown:
        raise AudienceError(f"Unknown choice: {', '.join(unknown)}. Reload the page and retry.")
    if not chosen_digests:
        raise AudienceError(
            "You chose no digest, so you would receive nothing. To stop all email, "
            "unsubscribe instead."
        )
    for key, digest in settings.digests.items():
        if key in chosen_digests and not chosen_sections & set(digest.sections):
            raise AudienceError(
                f"{digest.title}: choose at least one of its sections, or untick the digest."
            )
    return (
        None if chosen_sections >= set(offered) else frozenset(chosen_sections),
        None if chosen_digests >= set(settings.digests) else frozenset(chosen_digests),
    )


def update_preferences(
    store: Store,
    settings: Settings,
    subscriber_id: int,
    *,
    digests: Iterable[str],
    sections: Iterable[str],
    now: datetime,
) -> Subscriber:
    """Apply what a subscriber ticked on the preferences page; the subscriber as it now is.
    Raises AudienceError when the choice is refused (see :func:`resolve_choices`) or the
    subscriber has left (choices would change nothing: they receive no mail)."""
    sub = store.subscriber(subscriber_id)
    if sub is None:
        raise AudienceError("This subscription no longer exists.")
    if sub.status not in CHOOSING:
        raise AudienceError(
            "This address receives no digests, so there is nothing to choose. To receive them "
            "again, sign up anew."
        )
    chosen_sections, chosen_digests = resolve_choices(settings, digests=digests, sections=sections)
    store.set_preferences(subscriber_id, sections=chosen_sections, digests=chosen_digests, now=now)
    updated = store.subscriber(subscriber_id)
    assert updated is not None
    return updated


# Sign-up ----------------------------------------------------------------------------------------
def _signup_address(raw: str) -> str:
    """``normalise_email``, its refusal as an AudienceError the visitor reads."""
    try:
        return normalise_email(raw)
    except InvalidAddress as e:
        raise AudienceError(f"That email address is not valid: {e.reason}") from None


def signup(
    store: Store,
    settings: Settings,
    *,
    email: str,
    name: str,
    sections: Iterable[str],
    digests: Iterable[str],
    now: datetime,
) -> SignupOutcome:
    """A visitor asks to receive digests. Raises AudienceError for an invalid address or
    choice (the visitor's own input, so saying so reveals nothing about the list).

    An unknown address is added as pending with these choices; a known one is left exactly as
    it is (an unconfirmed visitor may not change someone's record). Everyone but an active
    subscriber gets a confirmation to send: confirming is how a pending address starts and how
    one that left, paused or was suppressed comes back.
    """
    address = _signup_address(email)
    chosen_sections, chosen_digests = resolve_choices(settings, digests=digests, sections=sections)
    person = NewSubscriber(
        email=address,
        name=clean_header(name)[:MAX_NAME].strip(),
        sections=chosen_sections,
        digests=chosen_digests,
    )
    sub, added = store.add_subscriber(
        person,
        status=S.PENDING,
        source=SIGNUP_SOURCE,
        now=now,
        cause="signed up on the web; waiting for confirmation",
    )
    if not added and sub.status is S.PENDING:
        # Never confirmed: the latest sign-up's name and choices replace an earlier one's (an
        # earlier visitor may have typed anything for this address).
        store.set_preferences(
            sub.id, sections=chosen_sections, digests=chosen_digests, now=now, name=person.name
        )
        sub = store.subscriber(sub.id) or sub
    return SignupOutcome(subscriber=sub, added=added, send_confirmation=sub.status is not S.ACTIVE)
