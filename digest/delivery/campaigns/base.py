"""The campaign port: what the hand-over step may expect of a provider that owns the list.

Unlike :class:`~digest.delivery.base.Provider`, which takes one message per recipient, a
campaign provider takes a whole variant of an edition once, as a campaign for a list (or a
segment of it) kept at the provider, and sends each recipient's copy itself. The rendered
variant's personal tokens (see :mod:`digest.render.personalise`) become the provider's own
merge tags (:class:`MergeTags`): the caller hands the bodies cut at their tokens
(:class:`~digest.models.BodyTemplate`) and what each token stands for (``ROLES``), so
unsubscribing and preferences are the provider's.

Contract:

- :meth:`CampaignProvider.find` looks a campaign up by its title, which names the edition and
  the variant (:func:`campaign_title`): a run that crashed after the provider made a campaign
  but before the store kept its id finds it there instead of making a second.
- :meth:`~CampaignProvider.create` makes a draft and returns its id; :meth:`~CampaignProvider.fill`
  (re)sets its content (safe to repeat); :meth:`~CampaignProvider.start` sends it. The caller
  stores the id between create and start.
- :meth:`~CampaignProvider.get` tells whether a campaign was started already (a run that
  crashed between start and recording it must not start it again).
- Failures raise :class:`~digest.errors.TransientDeliveryError` (unreachable, 429 or 5xx
  after the request's retries) or :class:`~digest.errors.PermanentDeliveryError` (credentials,
  a refused request), quoting the provider's own error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import requests

from digest.delivery.httpapi import ApiClient, RequestFailed
from digest.errors import PermanentDeliveryError, TransientDeliveryError
from digest.models import BodyTemplate

FULL = "all"  # the variant name of the full edition
# What a personal token may stand for; MergeTags has the provider's tag for each.
ROLES = ("unsubscribe", "preferences", "greeting", "reader")
# Scheduled times are whole multiples of a step counted from here (a step divides the hour).
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def variant_name(sections: frozenset[str] | None) -> str:
    """``all`` for the full edition, else the variant's section keys, sorted, joined by ``+``."""
    return FULL if sections is None else "+".join(sorted(sections))


def variant_sections(name: str) -> frozenset[str] | None:
    """The inverse of :func:`variant_name`."""
    return None if name == FULL else frozenset(name.split("+"))


def campaign_title(edition_id: str, variant: str) -> str:
    """The campaign's title (its name at the provider): unique per edition and variant, so a
    lookup by title finds the campaign a crashed run made."""
    return f"digest {edition_id} [{variant}]"


@dataclass(frozen=True)
class CampaignContent:
    """One variant of an edition as a campaign: bodies already carry the provider's tags."""

    edition_id: str
    variant: str
    title: str
    subject: str
    preview_text: str
    html: str
    text: str
    # When the provider is to send it (UTC); None: as soon as it is started.
    send_at: datetime | None = None


@dataclass(frozen=True)
class RemoteCampaign:
    """A campaign as the provider reports it; ``started``: sent, sending or scheduled."""

    id: str
    status: str
    started: bool


@dataclass(frozen=True)
class MergeTags:
    """What a provider puts in place of our personal tokens, and how literal text that looks
    like its own tag syntax is kept literal (an article title must not become a tag)."""

    unsubscribe: str
    preferences: str
    greeting: str
    escape_html: Callable[[str], str]
    escape_text: Callable[[str], str]
    # A click link's reader part: never filled, since the provider makes each copy (settings
    # refuse per-subscriber clicks with a campaign provider; this keeps any such link whole).
    reader: str = ""

    def apply(self, body: BodyTemplate, roles: Mapping[str, str]) -> tuple[str, str]:
        """``(html, text)`` of ``body`` with each token replaced by the tag for its role
        (``roles`` maps a token to one of ``ROLES``) and literal text escaped."""
        tags = {token: getattr(self, role) for token, role in roles.items() if role in ROLES}
        missing = sorted({*body.html_parts[1::2], *body.text_parts[1::2]} - tags.keys())
        if missing:
            raise PermanentDeliveryError(
                f"variant {body.id}: no merge tag for the token(s) {', '.join(missing)}"
            )
        return _fill(body.html_parts, tags, self.escape_html), _fill(
            body.text_parts, tags, self.escape_text
        )


def _fill(parts: tuple[str, ...], tags: dict[str, str], escape: Callable[[str], str]) -> str:
    return "".join(tags[p] if i % 2 else escape(p) for i, p in enumerate(parts))


@runtime_checkable
class CampaignProvider(Protocol):
    """A provider that owns the list. See the module docstring for the contract."""

    name: str
    tags: MergeTags
    # Variants (see :func:`variant_name`) that get a campaign besides the full edition.
    variant_names: tuple[str, ...]

    def find(self, title: str) -> RemoteCampaign | None: ...

    def get(self, campaign_id: str) -> RemoteCampaign: ...

    def create(self, content: CampaignContent) -> str: ...

    def fill(self, campaign_id: str, content: CampaignContent) -> None: ...

    def send_time(self, now: datetime) -> datetime | None: ...

    def start(self, campaign_id: str, at: datetime | None = None) -> None: ...

    def close(self) -> None: ...


def no_campaign_id(provider: str, what: str) -> TransientDeliveryError:
    """A 2xx to a create that names no campaign: it may exist all the same, and the next run's
    lookup by title finds it."""
    return TransientDeliveryError(f"{provider}: could not {what}: the answer named no campaign id")


class CampaignApi:
    """An :class:`ApiClient` whose answers are either a 2xx or a raised delivery error that
    quotes the provider's error (``error_text`` reads it from the answer's body)."""

    def __init__(self, client: ApiClient, error_text: Callable[[requests.Response], str]) -> None:
        self.client = client
        self.error_text = error_text

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        """``method path`` for ``what`` (e.g. "create the campaign for edition X [all]")."""
        provider = self.client.provider
        try:
            response = self.client.request(method, path, **kwargs)
        except RequestFailed as e:
            raise TransientDeliveryError(f"{provider}: could not {what}: {e.reason}") from None
        except PermanentDeliveryError as e:
            raise PermanentDeliveryError(f"{provider}: could not {what}: {e.message}") from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        where = f"{method} {self.client.url(path)}"
        detail = self.error_text(response) or response.text[:300]
        message = f"{provider}: could not {what}: {where} answered HTTP {status}: {detail}"
        if status >= 500:
            raise TransientDeliveryError(message)
        raise PermanentDeliveryError(message)

    def json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """:meth:`call`, and the answer's JSON (an unreadable one is transient: unknown)."""
        response = self.call(method, path, what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise TransientDeliveryError(
                f"{self.client.provider}: could not {what}: HTTP {response.status_code} without "
                "JSON; outcome unknown"
            ) from None

    def close(self) -> None:
        self.client.close()


class CampaignProviderBase:
    """What the adapters share: their :class:`CampaignApi`, the variants configured besides
    the full edition, reading a campaign's status (anything but ``draft_status`` is started)."""

    name = "campaigns"
    draft_status = ""
    schedule_minutes = 0
    # Scheduled times are rounded up to a multiple of this many minutes (1: to the minute).
    schedule_step = 1

    def __init__(self, api: CampaignApi, variants: Iterable[str]) -> None:
        self.api = api
        self.variant_names = tuple(sorted(n for n in variants if n != FULL))

    def send_time(self, now: datetime) -> datetime | None:
        """When a campaign handed over ``now`` is to be sent: None (at once) without
        ``schedule_minutes``, else that much later, rounded up to ``schedule_step`` minutes."""
        if not self.schedule_minutes:
            return None
        at = now.astimezone(UTC) + timedelta(minutes=self.schedule_minutes)
        return at + -(at - _EPOCH) % timedelta(minutes=self.schedule_step)

    def remote(self, campaign: Mapping[str, Any]) -> RemoteCampaign:
        status = str(campaign.get("status", ""))
        return RemoteCampaign(
            id=str(campaign["id"]), status=status, started=status != self.draft_status
        )

    def close(self) -> None:
        self.api.close()
