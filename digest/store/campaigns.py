"""Campaigns: the one campaign per edition and variant handed to a provider that owns the list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as the store knows it; ``status`` is ``created`` or ``started``."""

    edition_id: str
    variant_key: str
    provider: str
    campaign_id: str
    status: str
    created_at: datetime
    started_at: datetime | None


class CampaignStore(StoreBase):
    """The ``campaigns`` table."""

    def campaign(self, edition_id: str, variant_key: str) -> CampaignRecord | None:
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(t.campaigns)
                .where(t.campaigns.c.edition_id == edition_id)
                .where(t.campaigns.c.variant_key == variant_key)
            ).first()
        return CampaignRecord(**row._mapping) if row else None

    def campaigns(self, edition_id: str) -> list[CampaignRecord]:
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(t.campaigns)
                .where(t.campaigns.c.edition_id == edition_id)
                .order_by(t.campaigns.c.variant_key)
            ).all()
        return [CampaignRecord(**r._mapping) for r in rows]

    def record_campaign(
        self, edition_id: str, variant_key: str, provider: str, campaign_id: str, *, now: datetime
    ) -> CampaignRecord:
        """Keep the campaign the provider made; if one is kept already, that one stands (and
        is returned): there is one campaign per edition and variant, ever."""
        row = {
            "edition_id": edition_id,
            "variant_key": variant_key,
            "provider": provider,
            "campaign_id": campaign_id,
            "status": "created",
            "created_at": now,
            "started_at": None,
        }
        with self.engine.begin() as c:
            _insert_ignore(c, t.campaigns, [row], ["edition_id", "variant_key"])
        kept = self.campaign(edition_id, variant_key)
        assert kept is not None
        return kept

    def mark_campaign_started(self, edition_id: str, variant_key: str, *, now: datetime) -> None:
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.campaigns)
                .where(t.campaigns.c.edition_id == edition_id)
                .where(t.campaigns.c.variant_key == variant_key)
                .values(status="started", started_at=now)
            )
