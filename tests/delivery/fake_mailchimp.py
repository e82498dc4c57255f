"""A fake of Mailchimp's Marketing API v3 campaigns for :class:`tests.apiserver.ApiServer`.

It answers the way Mailchimp documents it, under ``/3.0``:

- HTTP Basic auth, any user name, the API key as password; else 401 "API Key Invalid";
- ``GET /campaigns`` (``list_id``, ``count`` up to 1000, ``offset``) with ``total_items``;
  ``POST /campaigns`` (``type`` regular, ``recipients.list_id`` of a known audience,
  ``segment_opts.saved_segment_id`` of a known segment, ``settings.title``/``subject_line``/
  ``from_name``/``reply_to``) makes a draft (``status: save``); ``GET /campaigns/{id}``;
  ``PUT /campaigns/{id}/content`` (``html``, ``plain_text``); ``POST
  /campaigns/{id}/actions/send`` (204; 400 when sent already or without content);
- errors as ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``,
  ``instance`` (and ``errors`` for invalid fields); unknown paths 404 "Resource Not Found".
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.apiserver import Answer, Request

PROBLEM = {"Content-Type": "application/problem+json; charset=utf-8"}


def problem(status: int, title: str, detail: str, **extra: Any) -> Answer:
    body = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "0d8f3f0e-8a8b-4d1c-9a58-0c1e9e1c2b3a",
        **extra,
    }
    return status, PROBLEM, body


@dataclass
class FakeMailchimp:
    """``respond`` for an ApiServer; ``campaigns`` holds what was made, by id."""

    api_key: str = "0123456789abcdef-us1"
    lists: frozenset[str] = frozenset({"aud1"})
    segments: frozenset[int] = frozenset({7})
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0xA1B2C3))

    def __call__(self, request: Request) -> Answer:
        auth = request.headers.get("Authorization", "")
        try:
            user_pass = base64.b64decode(auth.removeprefix("Basic ")).decode()
        except ValueError:
            user_pass = ""
        if not auth.startswith("Basic ") or user_pass.partition(":")[2] != self.api_key:
            return problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        url = urlsplit(request.path)
        parts = url.path.removeprefix("/3.0/").strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if parts == ["campaigns"] and request.method == "GET":
            return self._list(query)
        if parts == ["campaigns"] and request.method == "POST":
            return self._create(request.json())
        if len(parts) >= 2 and parts[0] == "campaigns":
            campaign = self.campaigns.get(parts[1])
            if campaign is None:
                return problem(
                    404, "Resource Not Found", "The requested resource could not be found."
                )
            rest = (request.method, *parts[2:])
            if rest == ("GET",):
                return 200, {}, campaign
            if rest == ("PUT", "content"):
                body = request.json()
                campaign["content"] = {"html": body["html"], "plain_text": body["plain_text"]}
                return 200, {}, campaign["content"]
            if rest == ("POST", "actions", "send"):
                return self._send(campaign)
            if rest == ("POST", "actions", "schedule"):
                return self._schedule(campaign, request.json())
        return problem(404, "Resource Not Found", "The requested resource could not be found.")

    def _list(self, query: dict[str, str]) -> Answer:
        found = [
            c
            for c in self.campaigns.values()
            if "list_id" not in query or c["recipients"]["list_id"] == query["list_id"]
        ]
        count, offset = min(int(query.get("count", 10)), 1000), int(query.get("offset", 0))
        page = found[offset : offset + count]
        return 200, {}, {"campaigns": page, "total_items": len(found)}

    def _create(self, body: dict[str, Any]) -> Answer:
        errors = []
        if body.get("type") not in ("regular", "plaintext", "absplit", "rss", "variate"):
            errors.append({"field": "type", "message": "Schema describes enum"})
        recipients = body.get("recipients") or {}
        if recipients.get("list_id") not in self.lists:
            errors.append({"field": "recipients.list_id", "message": "Invalid list ID"})
        segment = (recipients.get("segment_opts") or {}).get("saved_segment_id")
        if segment is not None and segment not in self.segments:
            errors.append({"field": "recipients.segment_opts", "message": "Invalid segment"})
        settings = body.get("settings") or {}
        for name in ("subject_line", "from_name", "reply_to", "title"):
            if not isinstance(settings.get(name), str) or not settings[name]:
                errors.append({"field": f"settings.{name}", "message": "This value is required"})
        if errors:
            return problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated. For field-specific details, "
                "see the 'errors' array.",
                errors=errors,
            )
        cid = f"{next(self._ids):x}"
        campaign = {
            "id": cid,
            "type": body["type"],
            "status": "save",
            "recipients": recipients,
            "settings": settings,
        }
        self.campaigns[cid] = campaign
        return 200, {}, campaign

    def _send(self, campaign: dict[str, Any]) -> Answer:
        if campaign["status"] != "save":
            return problem(400, "Bad Request", "This campaign has already been sent.")
        if "content" not in campaign:
            return problem(400, "Bad Request", "Your Campaign is not ready to send.")
        campaign["status"] = "sending"
        self.sent.append(campaign["id"])
        return 204, {}, b""

    def _schedule(self, campaign: dict[str, Any], body: dict[str, Any]) -> Answer:
        raw = body.get("schedule_time")
        try:
            at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            return problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                errors=[
                    {
                        "field": "schedule_time",
                        "message": "Data did not match any of the schemas described in anyOf.",
                    }
                ],
            )
        if campaign["status"] != "save":
            return problem(400, "Bad Request", "This campaign has already been sent or scheduled.")
        if "content" not in campaign:
            return problem(400, "Bad Request", "Your Campaign is not ready to send.")
        if at.minute % 15 or at.second or at.microsecond:
            return problem(
                400,
                "Bad Request",
                "Campaigns may only be scheduled to send on the quarter-hour (:00, :15, :30, :45).",
            )
        if at <= datetime.now(UTC):
            return problem(400, "Bad Request", "Schedule time must be in the future.")
        campaign["status"] = "schedule"
        campaign["send_time"] = at.astimezone(UTC).isoformat()
        self.scheduled.append(campaign["id"])
        return 204, {}, b""

    def requests_of(self, requests: list[Request], method: str, path: str) -> list[Request]:
        """The requests made with ``method`` to ``path`` (query left out)."""
        return [
            r for r in requests if r.method == method and urlsplit(r.path).path == f"/3.0{path}"
        ]
