"""What the subscribers' routes share (``Site``): settings, store, clock, the page renderer, the
rate limits and the choices offered, built once per app by ``create_app`` and kept on
``app.state.site``; a route takes it as a parameter typed ``SiteDep``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from digest.audience import service
from digest.config import Settings
from digest.delivery.base import Provider
from digest.store import Store
from digest.web.hardening import CONFIRMATIONS_PER_DAY, SlidingWindow
from digest.web.pages import Group, Pages, choice_groups

Clock = Callable[[], datetime]
ProviderFactory = Callable[[], Provider]


@dataclass(frozen=True, slots=True)
class Site:
    """One app's shared state. ``clock`` returns an aware UTC datetime; ``new_provider`` makes
    the provider that sends confirmation messages, one per message."""

    settings: Settings
    store: Store
    clock: Clock
    new_provider: ProviderFactory
    pages: Pages
    signups: SlidingWindow
    confirmations: SlidingWindow
    groups: list[Group]
    offered: list[str]
    what: str
    subscribe_url: str

    @classmethod
    def build(
        cls, settings: Settings, store: Store, *, clock: Clock, new_provider: ProviderFactory
    ) -> Site:
        return cls(
            settings=settings,
            store=store,
            clock=clock,
            new_provider=new_provider,
            pages=Pages(settings),
            signups=SlidingWindow(settings.web.signups_per_hour, 3600.0),
            confirmations=SlidingWindow(CONFIRMATIONS_PER_DAY, 86_400.0),
            groups=choice_groups(settings),
            offered=service.offered_sections(settings),
            what=service.digest_titles(settings),
            subscribe_url=f"{settings.links_base}/subscribe",
        )

    def nothing_here(self, title: str = "Page not found", status_code: int = 404) -> HTMLResponse:
        """The page for an address that shows nothing (a 404, or a 405 to a person)."""
        return self.pages.message(
            title,
            "There is nothing to see at this address.",
            status_code=status_code,
            links=[(self.settings.publication.name, self.settings.publication.url)],
        )


async def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


SiteDep = Annotated[Site, Depends(site_of)]
