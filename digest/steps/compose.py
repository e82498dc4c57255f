"""The compose step and an editor's hand on the edition: compose (or find) the current period's
edition, edit it, approve, reject or decide on it, and queue its exhausted messages again.

Composition itself is pure (:mod:`digest.compose`); this reads the candidates and the history
from the store and records the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from digest.compose.editions import compose_edition
from digest.compose.periods import edition_id, period_key
from digest.config import Settings
from digest.errors import EditionStateError, NothingNew, PermanentError
from digest.gather.sections import in_section
from digest.models import (
    EDITION_TRANSITIONS,
    Article,
    Edition,
    EditionAction,
    EditionStatus,
    Overrides,
    edition_state,
)
from digest.render.email import oversized_teasers
from digest.store import Store


def sources_of(settings: Settings, section_keys: Iterable[str]) -> list[str]:
    """Source keys feeding ``section_keys``, each once, in order of first use."""
    keys: dict[str, None] = {}
    for s in section_keys:
        keys.update(dict.fromkeys(settings.sections[s].sources))
    return list(keys)


@dataclass(frozen=True)
class ComposeOutcome:
    edition: Edition | None
    status: str  # "new", "updated", "unchanged", "existing", "nothing-new"
    message: str
    # Items left out because they cannot fit the HTML budget, one line each (id and URL).
    warnings: tuple[str, ...] = ()


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def fitting(
    settings: Settings, make: Callable[[Overrides], Edition], overrides: Overrides
) -> tuple[Edition, tuple[str, ...]]:
    """``make(overrides)``, made again without every item that cannot fit the HTML budget
    even alone (see ``oversized_teasers``), so that one such item never stops the edition; the
    next candidate takes its place. Returns the edition and a warning per item dropped.
    Raises NothingNew (saying what was dropped) when too few items are left."""
    budget = settings.render.max_html_bytes
    warnings: list[str] = []
    left_out = overrides
    while True:
        try:
            edition = make(left_out)
        except NothingNew as e:
            if not warnings:
                raise
            raise NothingNew(f"{e.message}; left out: {' '.join(warnings)}") from None
        too_big = oversized_teasers(edition, settings)
        if not too_big:
            return edition, tuple(warnings)
        for item in too_big:
            t = item.teaser
            warnings.append(
                f"edition {edition.id}: article {t.article_id} ({_short(t.url)}) left out: "
                f"alone it makes {item.html_bytes} bytes of HTML, over the budget of {budget} "
                "(render.max_html_bytes)."
            )
        dropped = tuple(item.teaser.article_id for item in too_big)
        left_out = left_out.model_copy(update={"excluded": (*left_out.excluded, *dropped)})


def candidates(
    settings: Settings,
    store: Store,
    digest_key: str,
    extra: Sequence[Article] = (),
    *,
    now: datetime,
    pinned: Sequence[str] = (),
) -> dict[str, list[Article]]:
    """For each section of the digest, the stored (plus ``extra``) articles that belong to it.

    Only articles young enough for the digest's ``max_age_days`` are read (composition would
    drop older ones), except pinned ones: the store keeps every article ever gathered.
    """
    digest = settings.digests[digest_key]
    since = now - timedelta(days=digest.max_age_days) if digest.max_age_days else None
    stored = store.articles_from_sources(
        sources_of(settings, digest.sections), since=since, also=pinned
    )
    pool: dict[str, tuple[Article, set[str]]] = {a.id: (a, set(srcs)) for a, srcs in stored}
    for a in extra:
        pool.setdefault(a.id, (a, set()))[1].add(a.source)
    out: dict[str, list[Article]] = {}
    for key in digest.sections:
        section = settings.sections[key]
        out[key] = [
            a
            for a, srcs in pool.values()
            if srcs.intersection(section.sources) and in_section(a, section)
        ]
    return out


def compose(
    settings: Settings,
    store: Store,
    digest_key: str,
    *,
    now: datetime,
    record: bool = True,
    extra: Sequence[Article] = (),
) -> ComposeOutcome:
    """Compose (or find) the edition of the current period.

    An edition past the draft (awaiting approval, decided, going out) is returned as it is:
    re-running a period never makes a second edition, and an editor decides on what they see.
    A draft is recomposed, so articles that arrived since join it.
    """
    digest = settings.digests[digest_key]
    period = period_key(now, digest.period, digest.schedule.timezone, digest.schedule.cron)
    eid = edition_id(digest_key, period)
    existing = store.edition(eid)
    if existing is not None and existing.status is not EditionStatus.DRAFT:
        return ComposeOutcome(
            existing, "existing", f"edition {eid} is {edition_state(existing.status)}"
        )
    overrides = store.overrides(eid) if existing else Overrides()
    pool = candidates(settings, store, digest_key, extra, now=now, pinned=overrides.pinned)
    history = store.carried_article_ids(digest_key, except_edition=eid)
    last = store.last_edition_time(digest_key)

    def make(edits: Overrides) -> Edition:
        return compose_edition(
            pool,
            history=history,
            settings=settings,
            digest_key=digest_key,
            now=now,
            overrides=edits,
            created_at=existing.created_at if existing else None,
            last_edition_at=last,
        )

    try:
        edition, warnings = fitting(settings, make, overrides)
    except NothingNew as e:
        if existing is not None:
            return ComposeOutcome(existing, "unchanged", f"edition {eid} kept: {e.message}")
        return ComposeOutcome(None, "nothing-new", e.message)
    dropped = f"; {len(warnings)} item(s) left out, too big for the HTML budget" if warnings else ""
    if existing is not None and existing == edition:
        return ComposeOutcome(existing, "unchanged", f"edition {eid} unchanged{dropped}", warnings)
    if record:
        try:
            store.save_edition(edition, now=now, expected=EditionStatus.DRAFT if existing else None)
        except EditionStateError as e:
            # Approved or rejected while this composed: what was decided stands.
            decided = store.edition(eid)
            if decided is None:
                raise
            return ComposeOutcome(decided, "existing", e.message)
    status = "updated" if existing else "new"
    message = f"edition {eid}: {len(edition.teasers)} items{dropped}"
    return ComposeOutcome(edition, status, message, warnings)


def resolve_article(store: Store, digest_key: str, settings: Settings, ref: str) -> str:
    """An article id from an editor's reference: the id, or a unique prefix of it (6+ chars)."""
    ids = {
        a.id
        for a, _ in store.articles_from_sources(
            sources_of(settings, settings.digests[digest_key].sections)
        )
    }
    if ref in ids:
        return ref
    matches = [i for i in ids if len(ref) >= 6 and i.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    what = "matches several articles" if matches else "is no article of this digest's sections"
    raise PermanentError(f"article {ref!r} {what}; `digest edition show` lists the ids")


def edit_edition(
    settings: Settings,
    store: Store,
    digest_key: str,
    changes: Mapping[str, Any],
    *,
    now: datetime,
) -> ComposeOutcome:
    """Apply an editor's changes to the current period's edition and recompose it.

    ``changes`` holds Overrides fields to replace. Allowed until the edition is decided for
    good (rejected) or starts going out: one awaiting approval still awaits it; an approved or
    skipped one goes back to draft and needs approving again.
    """
    outcome = compose(settings, store, digest_key, now=now)
    edition = outcome.edition
    if edition is None:
        raise PermanentError(f"digest {digest_key!r}: no edition to edit ({outcome.message})")
    check(edition, EditionAction.EDIT)
    unknown = set(changes) - set(Overrides.model_fields)
    if unknown:
        raise PermanentError(f"edition {edition.id}: unknown change(s) {sorted(unknown)}")
    try:
        overrides = Overrides.model_validate(
            {**store.overrides(edition.id).model_dump(), **changes}
        )
    except ValidationError as e:
        raise PermanentError(f"edition {edition.id}: invalid change: {e}") from None
    bad = [k for k in overrides.section_order if k not in settings.digests[digest_key].sections]
    if bad:
        raise PermanentError(f"edition {edition.id}: section_order names unknown {bad}")
    # Compose first and store nothing unless it works: a failed edit leaves the edition as it was.
    pool = candidates(settings, store, digest_key, now=now, pinned=overrides.pinned)
    history = store.carried_article_ids(digest_key, except_edition=edition.id)

    def make(edits: Overrides) -> Edition:
        return compose_edition(
            pool,
            history=history,
            settings=settings,
            digest_key=digest_key,
            now=now,
            overrides=edits,
            created_at=edition.created_at,
        )

    try:
        updated, warnings = fitting(settings, make, overrides)
    except NothingNew as e:
        raise PermanentError(f"edition {edition.id}: after these changes, {e.message}") from None
    # The editor's overrides are stored, not what was left out for size (it is again next time).
    status = store.save_edition(updated, now=now, overrides=overrides, expected=edition.status)
    updated = updated.model_copy(update={"status": status})
    message = f"edition {updated.id}: {len(updated.teasers)} items"
    return ComposeOutcome(updated, "edited", message, warnings)


def check(edition: Edition, action: EditionAction) -> None:
    """Raise :class:`EditionStateError` unless ``edition``'s status (as read) allows ``action``."""
    rule = EDITION_TRANSITIONS[action]
    if edition.status not in rule.allowed_from:
        raise EditionStateError(
            edition.id,
            edition.status.value,
            action.value,
            allowed=", ".join(sorted(s.value for s in rule.allowed_from)),
        )


def transition(store: Store, edition: Edition, action: EditionAction, *, now: datetime) -> Edition:
    """Apply ``action`` to ``edition`` in the store, only from the status ``edition`` has (what
    the caller saw): ``edition`` with its new status, or :class:`EditionStateError` when the
    action is not allowed or another decision changed the status first."""
    status = store.change_edition_status(edition.id, action, now=now, expected=edition.status)
    return edition.model_copy(update={"status": status})


def approve(store: Store, edition: Edition, *, now: datetime) -> Edition:
    return transition(store, edition, EditionAction.APPROVE, now=now)


def reject(store: Store, edition: Edition, *, now: datetime) -> Edition:
    return transition(store, edition, EditionAction.REJECT, now=now)


def edit_changes(
    settings: Settings,
    store: Store,
    edition: Edition,
    *,
    intro: str | None = None,
    subject: str | None = None,
    preheader: str | None = None,
    pin: Sequence[str] = (),
    unpin: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    section_order: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The Overrides changes an editor asks for, article references resolved (see
    :func:`resolve_article`): pinning includes an article again, excluding unpins it. Empty
    when nothing is asked."""
    have = store.overrides(edition.id)

    def ids(refs: Iterable[str]) -> list[str]:
        return [resolve_article(store, edition.digest, settings, r) for r in refs]

    changes: dict[str, Any] = {}
    if intro is not None:
        changes["intro"] = intro
    if subject is not None:
        changes["subject"] = subject
    if preheader is not None:
        changes["preheader"] = preheader
    pins, drops = ids(pin), ids(exclude)
    if pins or unpin or drops:
        # Pinning includes an article again; excluding unpins it.
        gone = set(ids(unpin)) | set(drops)
        changes["pinned"] = [i for i in dict.fromkeys([*have.pinned, *pins]) if i not in gone]
    if drops or include or pins:
        back = set(ids(include)) | set(pins)
        changes["excluded"] = [i for i in dict.fromkeys([*have.excluded, *drops]) if i not in back]
    if section_order is not None:
        changes["section_order"] = list(section_order)
    return changes


# Deciding at the approval gate ---------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """An editor's decision on an edition awaiting approval.

    ``excluded``: article ids (or unique prefixes of 6+ characters) to leave out, added to
    those already excluded. ``subject``/``intro``: replace the edition's, when given.
    """

    decision: Literal["approve", "reject"]
    subject: str | None = None
    intro: str | None = None
    excluded: Sequence[str] = ()
    editor: str = ""


@dataclass(frozen=True)
class Decided:
    """The edition after a decision (approved or rejected) and the overrides it changed."""

    edition: Edition
    changed: tuple[str, ...] = ()


def decision_changes(
    settings: Settings, store: Store, edition: Edition, decision: Decision
) -> dict[str, Any]:
    """The Overrides changes that come with an approval."""
    changes: dict[str, Any] = {}
    if decision.subject is not None:
        changes["subject"] = decision.subject
    if decision.intro is not None:
        changes["intro"] = decision.intro
    if decision.excluded:
        have = store.overrides(edition.id).excluded
        new = [resolve_article(store, edition.digest, settings, r) for r in decision.excluded]
        changes["excluded"] = tuple(dict.fromkeys([*have, *new]))
    return changes


def decide(
    settings: Settings, store: Store, edition: Edition, decision: Decision, *, now: datetime
) -> Decided:
    """Apply an editor's decision: reject the edition, or apply its changes and approve it.

    Without changes the edition approved is the one stored (an editor may have changed the
    draft meanwhile). Each change is a compare-and-set on the status: raises
    :class:`EditionStateError` when ``edition``'s status does not allow the decision (a
    rejection is final) or another decision changed it first.
    """
    if decision.decision == "reject":
        return Decided(reject(store, edition, now=now))
    if edition.status is not EditionStatus.APPROVED:
        check(edition, EditionAction.APPROVE)
    changes = decision_changes(settings, store, edition, decision)
    if changes:
        outcome = edit_edition(settings, store, edition.digest, changes, now=now)
        if outcome.edition is not None:
            edition = outcome.edition
    else:
        edition = store.edition(edition.id) or edition
        if edition.status is EditionStatus.APPROVED:
            return Decided(edition)  # approved already (in the store, meanwhile)
    return Decided(approve(store, edition, now=now), tuple(changes))


# Retrying what ran out of attempts -----------------------------------------------------------


@dataclass(frozen=True)
class Requeued:
    """The current edition (None: there is none, ``message`` says why) and how many of its
    messages were queued again."""

    edition: Edition | None
    queued: int = 0
    message: str = ""


def retry_exhausted(
    settings: Settings, store: Store, digest_key: str, *, now: datetime
) -> Requeued:
    """Queue again the current edition's messages that ran out of attempts; the next run sends
    them (nobody who already got the edition gets it twice). A sent edition goes back to
    sending while they are queued."""
    current = compose(settings, store, digest_key, now=now, record=False)
    edition = current.edition and store.edition(current.edition.id)
    if edition is None:
        return Requeued(None, message=current.message)
    n = store.requeue_exhausted(edition.id, now=now)
    if n and edition.status is EditionStatus.SENT:
        edition = transition(store, edition, EditionAction.REOPEN, now=now)
    return Requeued(edition, n)
