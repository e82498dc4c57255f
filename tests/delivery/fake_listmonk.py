"""A fake of listmonk's campaigns API for :class:`tests.apiserver.ApiServer`.

It answers the way listmonk documents it:

- ``Authorization: token <api_user>:<token>`` (or HTTP Basic with the same pair), else 403;
- ``GET /api/campaigns`` (``query`` searched in names and subjects, ``per_page`` a number or
  ``all``) answers ``{"data": {"results", "total", "per_page", "page"}}``;
- ``POST /api/campaigns`` needs ``name``, ``subject``, ``lists`` (known ids), ``content_type``
  (richtext, html, markdown, plain, visual) and a body whose template compiles (every ``{{``
  opens a known action); it makes a ``draft`` and answers ``{"data": campaign}``;
- ``GET`` and ``PUT /api/campaigns/{id}`` (a draft only), ``PUT /api/campaigns/{id}/status``
  (``running`` from draft or scheduled);
- errors are ``{"message": "…"}`` with a 4xx status.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.apiserver import Answer, Request

CONTENT_TYPES = frozenset({"richtext", "html", "markdown", "plain", "visual"})
# The template actions our bodies may hold: listmonk's functions and fields, and a quoted "{{".
ACTION = re.compile(
    r'\{\{ (?:UnsubscribeURL|ManageURL|"\{\{"|if \.Subscriber\.FirstName|else|end'
    r"|\.Subscriber\.FirstName) \}\}"
)


def error(status: int, message: str) -> Answer:
    return status, {}, {"message": message}


@dataclass
class FakeListmonk:
    """``respond`` for an ApiServer; ``campaigns`` holds what was made, by id."""

    api_user: str = "digest"
    token: str = "tok3n"
    lists: frozenset[int] = frozenset({3, 4})
    campaigns: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)

    def _authorised(self, request: Request) -> bool:
        pair = f"{self.api_user}:{self.token}"
        auth = request.headers.get("Authorization", "")
        if auth == f"token {pair}":
            return True
        return auth == "Basic " + base64.b64encode(pair.encode()).decode()

    def __call__(self, request: Request) -> Answer:
        if not self._authorised(request):
            return error(403, "invalid API credentials")
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        if parts[:2] != ["api", "campaigns"]:
            return error(404, "Not found")
        if len(parts) == 2 and request.method == "GET":
            return self._search({k: v[0] for k, v in parse_qs(url.query).items()})
        if len(parts) == 2 and request.method == "POST":
            return self._save(None, request.json())
        if not parts[2].isdigit() or int(parts[2]) not in self.campaigns:
            return error(404, "Campaign not found.")
        campaign = self.campaigns[int(parts[2])]
        rest = (request.method, *parts[3:])
        if rest == ("GET",):
            return 200, {}, {"data": campaign}
        if rest == ("PUT",):
            if campaign["status"] != "draft":
                return error(400, "Cannot update a running or finished campaign.")
            return self._save(campaign["id"], request.json())
        if rest == ("PUT", "status"):
            status = request.json().get("status")
            if status == "scheduled" and campaign["status"] == "draft":
                try:
                    at = datetime.fromisoformat(str(campaign.get("send_at")))
                except ValueError:
                    return error(400, "send_at date should be set")
                if at.tzinfo is None or at <= datetime.now(UTC):
                    return error(400, "send_at date should be in the future")
                campaign["status"] = "scheduled"
                self.scheduled.append(campaign["id"])
                return 200, {}, {"data": campaign}
            if status != "running" or campaign["status"] not in ("draft", "scheduled"):
                return error(400, f"Cannot change status from {campaign['status']} to {status}.")
            campaign["status"] = "running"
            self.started.append(campaign["id"])
            return 200, {}, {"data": campaign}
        return error(405, "Method not allowed")

    def _search(self, query: dict[str, str]) -> Answer:
        q = query.get("query", "").casefold()
        found = [
            c
            for c in self.campaigns.values()
            if q in c["name"].casefold() or q in c["subject"].casefold()
        ]
        per_page = query.get("per_page", "20")
        shown = found if per_page == "all" else found[: int(per_page)]
        return (
            200,
            {},
            {"data": {"results": shown, "total": len(found), "per_page": per_page, "page": 1}},
        )

    def _save(self, cid: int | None, body: dict[str, Any]) -> Answer:
        for name in ("name", "subject"):
            if not isinstance(body.get(name), str) or not body[name]:
                return error(400, f"invalid {name}")
        lists = body.get("lists")
        if not isinstance(lists, list) or not lists or not set(lists) <= self.lists:
            return error(400, "invalid list IDs")
        if body.get("content_type") not in CONTENT_TYPES:
            return error(400, "invalid content_type")
        for text in (body.get("body", ""), body.get("altbody", "")):
            stray = ACTION.sub("", text)
            if "{{" in stray:
                return error(400, "Error compiling template: unexpected {{ in body")
        cid = cid if cid is not None else len(self.campaigns) + 1
        campaign = {"id": cid, "status": "draft", **body}
        self.campaigns[cid] = campaign
        return 200, {}, {"data": campaign}
