"""Mailchimp: each edition variant becomes one regular campaign for an audience.

What it relies on, from the Marketing API v3 documentation
(https://mailchimp.com/developer/marketing/api/campaigns/):

- The API root is ``https://<dc>.api.mailchimp.com/3.0``, where ``<dc>`` is the data center
  named by the API key's suffix (``…-us21``); HTTP Basic auth with any user name and the key
  as password.
- ``POST /campaigns`` with ``type: regular``, ``recipients.list_id`` (and optionally
  ``recipients.segment_opts.saved_segment_id``: a saved segment or a tag) and ``settings``
  (``subject_line``, ``preview_text``, ``title``, ``from_name``, ``reply_to``) makes a draft
  (``status: save``) and answers with its ``id``.
- ``PUT /campaigns/{id}/content`` with ``html`` and ``plain_text`` sets its content;
  ``POST /campaigns/{id}/actions/send`` sends it (204); ``POST /campaigns/{id}/actions/schedule``
  with ``schedule_time`` (UTC, ISO 8601) schedules it instead (204; status ``schedule``). A
  schedule time must be in the future and on the quarter hour (:00, :15, :30, :45).
- ``GET /campaigns?list_id=…&count=…&offset=…`` lists an audience's campaigns
  (``total_items``); ``GET /campaigns/{id}`` gives one, with ``status`` ``save``, ``paused``,
  ``schedule``, ``sending`` or ``sent``.
- Errors are ``application/problem+json``: ``type``, ``title``, ``status``, ``detail``,
  ``instance``, and ``errors`` (``field``, ``message``) for validation; 429 when too many
  requests are in flight (tried again by :class:`~digest.delivery.httpapi.ApiClient`).
- Merge tags: ``*|UNSUB|*`` (unsubscribe link), ``*|UPDATE_PROFILE|*`` (preferences),
  ``*|FNAME|*`` and the conditional ``*|IF:FNAME|*…*|ELSE:|*…*|END:IF|*``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from digest.config import MailchimpSettings, PublicationSettings, RetrySettings
from digest.delivery.campaigns.base import (
    CampaignApi,
    CampaignContent,
    CampaignProviderBase,
    MergeTags,
    RemoteCampaign,
    no_campaign_id,
)
from digest.delivery.httpapi import ApiClient

PAGE = 1000  # campaigns per page when looking one up (the API's maximum ``count``)
DRAFT = "save"

TAGS = MergeTags(
    unsubscribe="*|UNSUB|*",
    preferences="*|UPDATE_PROFILE|*",
    greeting="*|IF:FNAME|*Hello *|FNAME|*,*|ELSE:|*Hello,*|END:IF|*",
    # Literal "*|" would open a merge tag: break it with a character entity / a zero-width
    # joiner, so an article's text never becomes one.
    escape_html=lambda s: s.replace("*|", "*&#124;"),
    escape_text=lambda s: s.replace("*|", "*\u200d|"),
)


def api_root(settings: MailchimpSettings, api_key: str) -> str:
    """The configured root, else the data center's (``server_prefix`` or the key's suffix)."""
    if settings.base_url:
        return settings.base_url
    dc = settings.server_prefix or api_key.rpartition("-")[2]
    return f"https://{dc}.api.mailchimp.com/3.0"


def problem(response: requests.Response) -> str:
    """``title: detail`` of a problem+json answer, with any field errors."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    text = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
    errors = body.get("errors")
    if isinstance(errors, list):
        fields = [
            f"{e.get('field') or '?'}: {e.get('message', '')}"
            for e in errors
            if isinstance(e, dict)
        ]
        if fields:
            text += " (" + "; ".join(fields) + ")"
    return text[:500]


class MailchimpCampaigns(CampaignProviderBase):
    """Campaigns for ``settings.list_id``; segments per variant from ``settings.segments``."""

    name = "mailchimp"
    tags = TAGS
    draft_status = DRAFT

    def __init__(
        self,
        settings: MailchimpSettings,
        publication: PublicationSettings,
        retry: RetrySettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.publication = publication
        self.schedule_minutes = settings.schedule_minutes
        self.schedule_step = 15
        key = settings.api_key.get_secret_value()
        client = ApiClient.for_provider(
            "Mailchimp",
            settings.model_copy(update={"base_url": api_root(settings, key)}),
            retry,
            headers={"Accept": "application/json"},
            auth=("digest", key),
            sleep=sleep,
            rng=rng,
        )
        super().__init__(CampaignApi(client, problem), settings.segments)

    def find(self, title: str) -> RemoteCampaign | None:
        offset = 0
        while True:
            page = self.api.json(
                "GET",
                "/campaigns",
                f"look up campaign {title!r}",
                params={
                    "list_id": self.settings.list_id,
                    "count": PAGE,
                    "offset": offset,
                    "fields": "campaigns.id,campaigns.status,campaigns.settings.title,total_items",
                },
            )
            found = page.get("campaigns") if isinstance(page, dict) else None
            if not isinstance(found, list):
                return None
            for c in found:
                if isinstance(c, dict) and (c.get("settings") or {}).get("title") == title:
                    return self.remote(c)
            offset += len(found)
            if not found or offset >= int(page.get("total_items") or 0):
                return None

    def get(self, campaign_id: str) -> RemoteCampaign:
        body = self.api.json("GET", f"/campaigns/{campaign_id}", f"read campaign {campaign_id}")
        return self.remote(body)

    def payload(self, content: CampaignContent) -> dict[str, Any]:
        pub = self.publication
        recipients: dict[str, Any] = {"list_id": self.settings.list_id}
        segment = self.settings.segments.get(content.variant)
        if segment is not None:
            recipients["segment_opts"] = {"saved_segment_id": segment}
        settings = {
            "subject_line": content.subject,
            "preview_text": content.preview_text,
            "title": content.title,
            "from_name": pub.from_name or pub.name,
            "reply_to": pub.reply_to or pub.from_email,
        }
        return {"type": "regular", "recipients": recipients, "settings": settings}

    def create(self, content: CampaignContent) -> str:
        what = f"create campaign {content.title!r}"
        body = self.api.json("POST", "/campaigns", what, json=self.payload(content))
        if not isinstance(body, dict) or not body.get("id"):
            raise no_campaign_id("Mailchimp", what)
        return str(body["id"])

    def fill(self, campaign_id: str, content: CampaignContent) -> None:
        self.api.call(
            "PUT",
            f"/campaigns/{campaign_id}/content",
            f"set the content of campaign {campaign_id} ({content.title!r})",
            json={"html": content.html, "plain_text": content.text},
        )

    def start(self, campaign_id: str, at: datetime | None = None) -> None:
        if at is None:
            self.api.call(
                "POST", f"/campaigns/{campaign_id}/actions/send", f"send campaign {campaign_id}"
            )
            return
        when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        self.api.call(
            "POST",
            f"/campaigns/{campaign_id}/actions/schedule",
            f"schedule campaign {campaign_id} for {when}",
            json={"schedule_time": when},
        )
