"""Hand an edition over to a provider that owns the list: one campaign per variant, ever.

For each variant (the full edition, and each variant the provider's settings name a segment or
lists for), in order: the campaign the store keeps for it; else the one the provider has under
its title (a run that crashed between the provider making it and the store keeping it); else a
new one. Its id is stored before anything else happens to it. Then, unless the provider says it
was started already (sending, sent, or scheduled), its content is set and it is started, or
scheduled when the provider's ``schedule_minutes`` is set (``send_time``), and the store notes
that. A re-run
after any crash therefore finds the campaign instead of making a second, and never starts one
twice. Call it holding the edition's delivery lease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from digest.config import Settings
from digest.delivery.campaigns.base import (
    FULL,
    CampaignContent,
    CampaignProvider,
    campaign_title,
    variant_sections,
)
from digest.models import Edition, EditionAction, EditionStatus
from digest.render.personalise import GREETING, PREFERENCES, READER, UNSUBSCRIBE, body_template
from digest.render.variants import Variants, variant_for, variant_key
from digest.store import Store


@dataclass
class HandOver:
    """What a hand-over did: ``campaigns`` maps each variant to its campaign id; ``started``
    the variants this run started; ``skipped`` variants without news this time."""

    edition_id: str
    provider: str
    campaigns: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # When the campaigns this run started are to be sent (None: at once).
    send_at: datetime | None = None

    def summary(self) -> str:
        ids = ", ".join(f"{v}: {c}" for v, c in self.campaigns.items()) or "none"
        when = f" (scheduled for {self.send_at:%Y-%m-%d %H:%M} UTC)" if self.send_at else ""
        return (
            f"edition {self.edition_id}: {len(self.campaigns)} campaign(s) at {self.provider} "
            f"({ids}); {len(self.started)} started by this run{when}"
        )


# What each personal token stands for, in the provider's terms (its merge tags replace them).
TOKEN_ROLES = {
    UNSUBSCRIBE: "unsubscribe",
    PREFERENCES: "preferences",
    GREETING: "greeting",
    READER: "reader",
}


def _variants(
    settings: Settings, edition: Edition, provider: CampaignProvider, report: HandOver
) -> list[tuple[str, frozenset[str] | None]]:
    """``(name, variant key)`` of each campaign to hand over: the full edition, then each
    variant the provider is configured for that has news this time."""
    out: list[tuple[str, frozenset[str] | None]] = [(FULL, None)]
    for name in provider.variant_names:
        key = variant_key(edition, variant_sections(name))
        if key == frozenset():
            report.skipped.append(name)
        else:
            out.append((name, key))
    return out


def hand_over(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    provider: CampaignProvider,
    *,
    now: datetime,
    log: Callable[[str], None] | None = None,
) -> HandOver:
    """Create (once) and start the edition's campaigns; see the module docstring. Raises the
    provider's error (transient or permanent) after storing what was made; the edition stays
    ``sending`` until every campaign was started."""
    if store.edition_status(edition.id) is not EditionStatus.SENT:
        store.change_edition_status(edition.id, EditionAction.START_SENDING, now=now)
    report = HandOver(edition.id, provider.name)
    send_at = report.send_at = provider.send_time(now)
    for name, key in _variants(settings, edition, provider, report):
        variant = variant_for(settings, edition, variants, key)
        title = campaign_title(edition.id, name)
        body = body_template(title, variant.html, variant.text)
        html, text = provider.tags.apply(body, TOKEN_ROLES)
        content = CampaignContent(
            edition_id=edition.id,
            variant=name,
            title=title,
            subject=variant.subject,
            preview_text=edition.preheader,
            html=html,
            text=text,
            send_at=send_at,
        )
        record = store.campaign(edition.id, name)
        if record is None:
            found = provider.find(title)
            if found is not None and log:
                log(
                    f"{title}: found campaign {found.id} at {provider.name}, made by a run "
                    "that stopped before keeping it"
                )
            campaign_id = found.id if found is not None else provider.create(content)
            record = store.record_campaign(edition.id, name, provider.name, campaign_id, now=now)
        report.campaigns[name] = record.campaign_id
        if record.status == "started":
            continue
        if not provider.get(record.campaign_id).started:
            provider.fill(record.campaign_id, content)
            provider.start(record.campaign_id, send_at)
            report.started.append(name)
        store.mark_campaign_started(edition.id, name, now=now)
    if store.edition_status(edition.id) is EditionStatus.SENDING:
        store.change_edition_status(edition.id, EditionAction.FINISH, now=now)
    return report
