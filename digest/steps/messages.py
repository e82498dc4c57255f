"""Where a message is built: one subscriber's copy of a variant, a claimed batch's messages, the
messages an editor looks at (a preview's sample, a test), and a sign-up's confirmation.

Each variant's MIME message is compiled once (:mod:`digest.render.fastmime`); per subscriber
only the personal parts (To, Message-ID, unsubscribe and preference links, greeting, and with
per-subscriber click analytics the reader's part of each click link) change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from digest.audience.service import digest_titles
from digest.audience.tokens import (
    confirm_url,
    make_confirm_token,
    make_token,
    preferences_url,
    unsubscribe_url,
)
from digest.config import Settings
from digest.errors import DigestError
from digest.models import (
    Edition,
    OutgoingMessage,
    RenderedVariant,
    SendResult,
    SendStatus,
    Subscriber,
)
from digest.render.clicks import per_subscriber, reader_part
from digest.render.confirmation import render_confirmation
from digest.render.email import render_variant
from digest.render.fastmime import MessageTemplate, compile_message
from digest.render.variants import Variants, variant_for, variant_key
from digest.store import Store


def message_template(
    settings: Settings, edition: Edition, variant: RenderedVariant, *, now: datetime
) -> MessageTemplate:
    """``variant``'s MIME message with the personal parts left open (Date is ``now``)."""
    return compile_message(variant.html, variant.text, edition=edition, settings=settings, now=now)


def personal_message(
    settings: Settings,
    edition: Edition,
    variant: RenderedVariant,
    subscriber: Subscriber,
    *,
    now: datetime,
    template: MessageTemplate | None = None,
    bodies: bool = True,
) -> OutgoingMessage:
    """One subscriber's copy: tokens substituted into the compiled variant, MIME around it.

    ``template`` is ``variant``'s message compiled with :func:`message_template` for this
    ``now``; batches pass it so that only the personal parts are encoded per recipient.
    ``bodies=False``: ``raw`` only (see ``ProviderBase.raw_only``).
    """
    key = settings.signing_key
    unsub = unsubscribe_url(settings, make_token(key, subscriber.link_id, "unsubscribe"))
    prefs = preferences_url(settings, make_token(key, subscriber.link_id, "preferences"))
    template = template or message_template(settings, edition, variant, now=now)
    # A sample or test reader (id 0) is nobody: their links name no one.
    reader = ""
    if subscriber.id > 0 and per_subscriber(settings, edition.digest):
        reader = reader_part(key, edition.id, subscriber.id)
    return template.render(
        subscriber=subscriber,
        unsubscribe_url=unsub,
        preferences_url=prefs,
        key=f"{edition.id}.{subscriber.id}",
        bodies=bodies,
        reader=reader,
    )


@dataclass
class Built:
    """A claimed batch turned into messages: what to send and what is settled already."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)  # message key -> delivery id
    unusable: dict[int, SendResult] = field(default_factory=dict)  # could not be built
    skipped: list[int] = field(default_factory=list)  # chose only sections without news


class Builder:
    """Builds the messages of claimed rows; each variant's template is compiled once."""

    def __init__(
        self,
        settings: Settings,
        edition: Edition,
        variants: Variants,
        *,
        now: datetime,
        bodies: bool = True,
    ) -> None:
        self.settings, self.edition, self.variants, self.now = settings, edition, variants, now
        self.bodies = bodies
        self.templates: dict[frozenset[str] | None, MessageTemplate] = {}

    def build(self, rows: Iterable[tuple[int, Subscriber]]) -> Built:
        out = Built()
        for delivery_id, subscriber in rows:
            key = variant_key(self.edition, subscriber.sections)
            if key == frozenset():
                out.skipped.append(delivery_id)
                continue
            try:
                variant = variant_for(self.settings, self.edition, self.variants, key)
                if key not in self.templates:
                    self.templates[key] = message_template(
                        self.settings, self.edition, variant, now=self.now
                    )
                msg = personal_message(
                    self.settings,
                    self.edition,
                    variant,
                    subscriber,
                    now=self.now,
                    template=self.templates[key],
                    bodies=self.bodies,
                )
            except DigestError as e:
                out.unusable[delivery_id] = SendResult(
                    f"{self.edition.id}.{subscriber.id}", SendStatus.PERMANENT, reason=str(e)
                )
                continue
            out.by_key[msg.key] = delivery_id
            out.messages.append(msg)
        return out


# Messages an editor looks at -----------------------------------------------------------------

SAMPLE_READER = Subscriber(id=0, email="preview@example.org", name="Preview Reader")


def sample_message(
    settings: Settings, edition: Edition, variant: RenderedVariant, *, now: datetime
) -> OutgoingMessage:
    """``variant`` as a sample reader (:data:`SAMPLE_READER`) would get it."""
    return personal_message(settings, edition, variant, SAMPLE_READER, now=now)


def message_for_test(
    settings: Settings, edition: Edition, address: str, *, now: datetime, prefix: str = "[Test] "
) -> OutgoingMessage:
    """A test of ``edition`` for an editor at ``address``: the full edition, its subject marked
    with ``prefix``, addressed as to a subscriber without a name."""
    test = edition.model_copy(update={"subject": prefix + edition.subject})
    reader = Subscriber(id=0, email=address, name="")
    variant = render_variant(test, settings)
    return personal_message(settings, test, variant, reader, now=now)


def confirmation_message(
    settings: Settings, store: Store, subscriber: Subscriber, *, now: datetime
) -> OutgoingMessage:
    """The message asking ``subscriber`` to confirm a sign-up, with a confirmation link signed
    for the subscriber's current status version (a link goes stale once the status changes)."""
    token = make_confirm_token(settings, subscriber.link_id, store.status_version(subscriber.id))
    return render_confirmation(
        settings,
        subscriber,
        link=confirm_url(settings, token),
        what=digest_titles(settings),
        now=now,
    )
