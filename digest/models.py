"""Domain types shared by every stage: articles, teasers, editions, subscribers, messages.

Pure data. Nothing here imports another module of the project, does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Image(_Model):
    """An article's lead image, with what the email needs to show it honestly."""

    url: str
    alt: str = ""
    caption: str = ""
    credit: str = ""
    width: int | None = None
    height: int | None = None


class Article(_Model):
    """One article as gathered from a source, normalised and sanitised.

    ``id`` is stable across fetches: derived from a trustworthy guid, else the canonical URL.
    ``summary_html`` and ``content_html`` are already sanitised.
    """

    id: str
    source: str
    url: str
    guid: str | None = None
    title: str
    authors: tuple[str, ...] = ()
    published: datetime
    updated: datetime | None = None
    summary_html: str = ""
    content_html: str = ""
    image: Image | None = None
    categories: tuple[str, ...] = ()


class Teaser(_Model):
    """An article as an edition shows it: a card (``full``) or a headline-only link."""

    article_id: str
    section: str
    url: str
    kicker: str
    title: str
    paragraphs: tuple[str, ...] = ()
    image: Image | None = None
    authors: tuple[str, ...] = ()
    published: datetime
    full: bool = True
    pinned: bool = False


class EditionSection(_Model):
    key: str
    title: str
    teasers: tuple[Teaser, ...]

    @property
    def cards(self) -> tuple[Teaser, ...]:
        return tuple(t for t in self.teasers if t.full)

    @property
    def headlines(self) -> tuple[Teaser, ...]:
        return tuple(t for t in self.teasers if not t.full)


class Overrides(_Model):
    """What an editor set for an edition before it went out; applied at every recomposition."""

    intro: str = Field(default="", description="A note above the sections, in Markdown.")
    subject: str = ""
    preheader: str = ""
    pinned: tuple[str, ...] = Field(default=(), description="Article ids shown first.")
    excluded: tuple[str, ...] = Field(default=(), description="Article ids left out.")
    section_order: tuple[str, ...] = Field(
        default=(), description="Section keys in the order wanted; others follow as configured."
    )


class EditionStatus(enum.StrEnum):
    """Where an edition is in its life (:data:`EDITION_TRANSITIONS`); people read it in the
    words :func:`edition_state` gives."""

    DRAFT = "draft"  # composed; nobody asked for a decision yet
    AWAITING_APPROVAL = "awaiting_approval"  # an edition run asked an editor and waits
    APPROVED = "approved"
    REJECTED = "rejected"  # final
    SKIPPED = "skipped"  # no decision in time, `approval_timeout_action = "skip"`
    SENDING = "sending"
    SENT = "sent"


# What people read for each status: the same words on every page, command and artifact.
EDITION_STATES: Mapping[EditionStatus, str] = MappingProxyType(
    {
        EditionStatus.DRAFT: "draft",
        EditionStatus.AWAITING_APPROVAL: "awaiting approval",
        EditionStatus.APPROVED: "approved",
        EditionStatus.REJECTED: "rejected",
        EditionStatus.SKIPPED: "skipped",
        EditionStatus.SENDING: "sending",
        EditionStatus.SENT: "sent",
    }
)


def edition_state(status: EditionStatus | str) -> str:
    """The words people read for an edition's status (a stored value or the enum); an
    unknown value is shown as it is."""
    try:
        return EDITION_STATES[EditionStatus(status)]
    except ValueError:
        return str(status)


class EditionAction(enum.StrEnum):
    """Everything that changes an edition's status (or a draft's content): each is one
    compare-and-set on the status in the store, allowed only from the statuses
    :data:`EDITION_TRANSITIONS` lists for it."""

    RECOMPOSE = "recompose"  # a draft's content replaced by a newer composition
    EDIT = "edit"  # an editor's change (one awaiting approval still does; others: draft again)
    ASK = "ask for approval"  # the edition run asks an editor and waits (the approval gate)
    APPROVE = "approve"
    REJECT = "reject"
    SKIP = "skip"  # no decision in time, `approval_timeout_action = "skip"`: nothing sent
    APPROVE_ON_TIMEOUT = "approve on timeout"  # no decision in time, action "send"
    START_SENDING = "start sending"  # the ledger is written (again, after a crash)
    FINISH = "finish"  # nothing left to send or retry
    REOPEN = "reopen"  # messages out of attempts queued again: sending again


@dataclass(frozen=True)
class Transition:
    """An action's rule: for each status it may start from, the status it leaves."""

    moves: Mapping[EditionStatus, EditionStatus]

    @property
    def allowed_from(self) -> frozenset[EditionStatus]:
        return frozenset(self.moves)

    @property
    def to(self) -> frozenset[EditionStatus]:
        """Every status the action may leave."""
        return frozenset(self.moves.values())


def _rule(allowed_from: set[EditionStatus], to: EditionStatus) -> Transition:
    return Transition(MappingProxyType(dict.fromkeys(sorted(allowed_from), to)))


_E = EditionStatus
# The edition's life, in one place: draft → awaiting approval (when the digest requires an
# editor's decision) → approved → sending → sent; or rejected (final), or skipped when no
# decision came in time. A rejection is final (no action starts from it); so is sent, but for
# queueing exhausted messages again. An edit leaves an edition awaiting approval as it is (the
# run still waits for the decision) and makes an approved or skipped one a draft again.
EDITION_TRANSITIONS: Mapping[EditionAction, Transition] = MappingProxyType(
    {
        EditionAction.RECOMPOSE: _rule({_E.DRAFT}, _E.DRAFT),
        EditionAction.EDIT: Transition(
            MappingProxyType(
                {
                    _E.DRAFT: _E.DRAFT,
                    _E.AWAITING_APPROVAL: _E.AWAITING_APPROVAL,
                    _E.APPROVED: _E.DRAFT,
                    _E.SKIPPED: _E.DRAFT,
                }
            )
        ),
        EditionAction.ASK: _rule({_E.DRAFT}, _E.AWAITING_APPROVAL),
        EditionAction.APPROVE: _rule({_E.DRAFT, _E.AWAITING_APPROVAL, _E.SKIPPED}, _E.APPROVED),
        EditionAction.REJECT: _rule(
            {_E.DRAFT, _E.AWAITING_APPROVAL, _E.APPROVED, _E.SKIPPED}, _E.REJECTED
        ),
        EditionAction.SKIP: _rule({_E.AWAITING_APPROVAL}, _E.SKIPPED),
        EditionAction.APPROVE_ON_TIMEOUT: _rule({_E.AWAITING_APPROVAL}, _E.APPROVED),
        EditionAction.START_SENDING: _rule({_E.APPROVED, _E.SENDING}, _E.SENDING),
        EditionAction.FINISH: _rule({_E.SENDING}, _E.SENT),
        EditionAction.REOPEN: _rule({_E.SENT}, _E.SENDING),
    }
)


def allowed_actions(status: EditionStatus) -> frozenset[EditionAction]:
    """The actions an edition in ``status`` allows."""
    return frozenset(a for a, rule in EDITION_TRANSITIONS.items() if status in rule.allowed_from)


class Edition(_Model):
    """What one email carries. ``id`` is the digest key plus the period, so it is stable."""

    id: str
    digest: str
    period: str
    title: str
    subject: str
    preheader: str
    intro: str = Field(default="", description="The editor's note, in Markdown.")
    sections: tuple[EditionSection, ...]
    created_at: datetime
    status: EditionStatus = EditionStatus.DRAFT

    @property
    def teasers(self) -> tuple[Teaser, ...]:
        return tuple(t for s in self.sections for t in s.teasers)

    @property
    def article_ids(self) -> tuple[str, ...]:
        return tuple(t.article_id for t in self.teasers)

    def for_sections(self, keys: frozenset[str] | None) -> Edition:
        """The variant of this edition that carries only ``keys`` (``None``: every section)."""
        if keys is None:
            return self
        return self.model_copy(
            update={"sections": tuple(s for s in self.sections if s.key in keys)}
        )


class SubscriberStatus(enum.StrEnum):
    """Only ``active`` subscribers are mailed digests."""

    PENDING = "pending"  # signed up, has not confirmed yet (double opt-in)
    ACTIVE = "active"
    PAUSED = "paused"  # chose to pause; their choices are kept
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # hard bounce, or soft bounces past the limit: suppressed
    COMPLAINED = "complained"  # marked a digest as spam: suppressed


# Never mailed again unless they subscribe anew through double opt-in; an import never revives.
SUPPRESSED = frozenset({SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED})
# Still on the list: what leaving, a bounce or a provider's unsubscribe event may change.
LEAVABLE = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED, SubscriberStatus.PENDING})


class Subscriber(_Model):
    id: int
    email: str
    name: str = ""
    sections: frozenset[str] | None = Field(
        default=None, description="Chosen sections; None means every section of the digest."
    )
    digests: frozenset[str] | None = Field(
        default=None, description="Digests received; None means every digest."
    )
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    source: str = ""
    token_id: int | None = Field(
        default=None,
        description="The random id links carry instead of ``id`` (the store assigns it).",
    )

    @property
    def link_id(self) -> int:
        """What a link for this subscriber carries: ``token_id`` (``id`` only for a
        subscriber that never was in a store, as in previews)."""
        return self.id if self.token_id is None else self.token_id

    def receives(self, digest: str) -> bool:
        return self.digests is None or digest in self.digests


class NewSubscriber(_Model):
    """A subscriber as an import or a sign-up gives it, before the store assigns an id."""

    email: str
    name: str = ""
    sections: frozenset[str] | None = None
    digests: frozenset[str] | None = None


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SUBMITTED = "submitted"
    FAILED = "failed"
    # The subscriber left, was suppressed, or chose only sections without news, before their
    # copy went out: a final state, never sent.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RenderedVariant:
    """An edition compiled once for one set of sections; personal parts are still tokens."""

    edition_id: str
    sections: frozenset[str] | None
    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class BodyTemplate:
    """A variant's bodies with the personal tokens still in them (``%%UNSUBSCRIBE_URL%%`` …).

    Messages of one variant share one instance, so an HTTP provider that substitutes per
    recipient (SendGrid, Mailgun) can send the body once per request: ``id`` tells variants apart.
    ``html_parts`` and ``text_parts`` are the same bodies cut at their tokens by the render stage:
    literal text at the even indexes, a token (a key of ``OutgoingMessage.tokens``) at the odd
    ones; ``"".join(html_parts) == html``. A provider puts its own syntax in the tokens' places.
    """

    id: str
    html: str
    text: str
    html_parts: tuple[str, ...]
    text_parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One subscriber's finished message, ready for a provider.

    ``key`` identifies the ledger row (and serves as the idempotency key where a provider takes
    one); ``raw`` is the complete RFC 5322 message. The structured fields are for HTTP providers:
    ``html``/``text`` are this recipient's bodies, ``template`` the shared bodies they were made
    from and ``tokens`` the plain-text value of each token for this recipient (HTML-escape them
    for the HTML part).
    """

    key: str
    edition_id: str
    message_id: str
    sender: str
    recipient: str
    subject: str
    raw: bytes
    html: str = ""
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    template: BodyTemplate | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    # True when ``raw`` can go into SMTP's DATA as it is: CRLF line ends only and no line
    # starting with "." (the render stage's encoder guarantees both), so no pass over it is
    # needed to normalise line ends or dot-stuff.
    wire_ready: bool = False


class SendStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider's answer for one message.

    ``bounce`` marks a permanent failure caused by the recipient's address itself (no such
    mailbox, an address the provider has marked inactive): the subscriber is suppressed, not just
    this message. A permanent failure of the sender's or the content's making leaves the
    subscriber alone. ``retry_after`` is the provider's own hint, in seconds, for a transient one.
    """

    key: str
    status: SendStatus
    provider_id: str = ""
    reason: str = ""
    bounce: bool = False
    retry_after: float | None = None

    def __reduce__(self) -> tuple[type[SendResult], tuple[object, ...]]:
        # Sending processes pass every answer back pickled: the fields in order, rather than
        # the slotted dataclass's own state functions, which look its fields up each time.
        # (SendResult has no subclasses; one would come back as a SendResult.)
        return (
            SendResult,
            (self.key, self.status, self.provider_id, self.reason, self.bounce, self.retry_after),
        )
