"""listmonk: each edition variant becomes one regular campaign for its lists.

What it relies on, from listmonk's API documentation (https://listmonk.app/docs/apis/campaigns/):

- Requests carry ``Authorization: token <api_user>:<token>`` (an API user made under
  Admin → Users); answers are ``{"data": …}``, errors ``{"message": "…"}`` with a 4xx/5xx.
- ``POST /api/campaigns`` with ``name``, ``subject``, ``lists`` (ids), ``from_email``,
  ``type: regular``, ``content_type: html``, ``body`` and ``altbody`` (the plain text) makes
  a draft and answers with it (``data.id``); ``PUT /api/campaigns/{id}`` takes the same fields.
- ``PUT /api/campaigns/{id}/status`` with ``{"status": "running"}`` starts it; with
  ``{"status": "scheduled"}`` it is sent at its ``send_at`` (a future time, ISO 8601, set with
  the campaign's other fields).
- ``GET /api/campaigns?query=…&per_page=all`` searches campaigns by name
  (``data.results``); ``GET /api/campaigns/{id}`` gives one, with ``status`` ``draft``,
  ``scheduled``, ``running``, ``paused``, ``cancelled`` or ``finished``.
- Campaign bodies are Go templates: ``{{ UnsubscribeURL }}``, ``{{ ManageURL }}``,
  ``{{ .Subscriber.FirstName }}``; a literal ``{{`` is written ``{{ "{{" }}``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from digest.config import ListmonkSettings, PublicationSettings, RetrySettings
from digest.delivery.campaigns.base import (
    CampaignApi,
    CampaignContent,
    CampaignProviderBase,
    MergeTags,
    RemoteCampaign,
    no_campaign_id,
)
from digest.delivery.httpapi import ApiClient

DRAFT = "draft"


def _literal(s: str) -> str:
    return s.replace("{{", '{{ "{{" }}')


TAGS = MergeTags(
    unsubscribe="{{ UnsubscribeURL }}",
    preferences="{{ ManageURL }}",
    greeting="{{ if .Subscriber.FirstName }}Hello {{ .Subscriber.FirstName }},"
    "{{ else }}Hello,{{ end }}",
    escape_html=_literal,
    escape_text=_literal,
)


def message(response: requests.Response) -> str:
    """listmonk's ``message`` of an error answer."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", ""))[:500] if isinstance(body, dict) else ""


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


class ListmonkCampaigns(CampaignProviderBase):
    """Campaigns for ``settings.list_ids``; other lists per variant from ``settings.lists``."""

    name = "listmonk"
    tags = TAGS
    draft_status = DRAFT

    def __init__(
        self,
        settings: ListmonkSettings,
        publication: PublicationSettings,
        retry: RetrySettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.publication = publication
        self.schedule_minutes = settings.schedule_minutes
        token = f"{settings.api_user}:{settings.token.get_secret_value()}"
        client = ApiClient.for_provider(
            "listmonk",
            settings,
            retry,
            headers={"Accept": "application/json", "Authorization": f"token {token}"},
            sleep=sleep,
            rng=rng,
        )
        super().__init__(CampaignApi(client, message), settings.lists)

    def find(self, title: str) -> RemoteCampaign | None:
        body = self.api.json(
            "GET",
            "/api/campaigns",
            f"look up campaign {title!r}",
            params={"query": title, "per_page": "all"},
        )
        results = (_data(body) or {}).get("results")
        for c in results if isinstance(results, list) else []:
            if isinstance(c, dict) and c.get("name") == title and "id" in c:
                return self.remote(c)
        return None

    def get(self, campaign_id: str) -> RemoteCampaign:
        body = self.api.json("GET", f"/api/campaigns/{campaign_id}", f"read campaign {campaign_id}")
        data = _data(body)
        if not isinstance(data, dict) or "id" not in data:
            raise no_campaign_id("listmonk", f"read campaign {campaign_id}")
        return self.remote(data)

    def payload(self, content: CampaignContent) -> dict[str, Any]:
        pub = self.publication
        lists = self.settings.lists.get(content.variant) or self.settings.list_ids
        sender = f"{pub.from_name or pub.name} <{pub.from_email}>"
        payload: dict[str, Any] = {
            "name": content.title,
            "subject": content.subject,
            "lists": list(lists),
            "from_email": sender,
            "type": "regular",
            "content_type": "html",
            "messenger": "email",
            "body": content.html,
            "altbody": content.text,
        }
        if content.send_at is not None:
            payload["send_at"] = content.send_at.astimezone(UTC).isoformat()
        return payload

    def create(self, content: CampaignContent) -> str:
        what = f"create campaign {content.title!r}"
        data = _data(self.api.json("POST", "/api/campaigns", what, json=self.payload(content)))
        if not isinstance(data, dict) or "id" not in data:
            raise no_campaign_id("listmonk", what)
        return str(data["id"])

    def fill(self, campaign_id: str, content: CampaignContent) -> None:
        self.api.call(
            "PUT",
            f"/api/campaigns/{campaign_id}",
            f"set the content of campaign {campaign_id} ({content.title!r})",
            json=self.payload(content),
        )

    def start(self, campaign_id: str, at: datetime | None = None) -> None:
        """Start it, or (``at``: the ``send_at`` set by :meth:`fill`) schedule it."""
        self.api.call(
            "PUT",
            f"/api/campaigns/{campaign_id}/status",
            f"{'schedule' if at else 'start'} campaign {campaign_id}",
            json={"status": "scheduled" if at else "running"},
        )
