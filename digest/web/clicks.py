"""Click redirects: ``/c/<token>``, an article link of an edition (see ``digest.render.clicks``).

A token whose signature holds redirects (302) to the URL it signs, UTM parameters included; a
forged, altered or unknown token is refused with a 400 and redirects nowhere, so the app is no
open redirect. The answer goes out at once; the click is handed to the app's recorder, which
writes clicks in batches on a thread of its own (``digest.steps.stats``: scanners filtered,
repeats counted once, nothing about who clicked), so a slow or busy database never holds a
reader up.

``/c/<token>/<reader>``: the same link in a copy with per-subscriber analytics, naming its
subscriber; a reader part whose signature does not hold for the link's edition (another
subscriber's id put in, or a part moved from another edition) is refused like a forged token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from digest.render.clicks import ClickTarget, read_click_token, read_reader
from digest.steps.stats import Click, ClickRecorder
from digest.web.site import SiteDep

router = APIRouter()

HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def click(request: Request, token: str, site: SiteDep) -> Response:
    return _answer(request, site, read_click_token(site.settings.verifying_keys, token), 0)


@router.api_route("/c/{token}/{reader}", methods=["GET", "HEAD"], include_in_schema=False)
async def personal_click(request: Request, token: str, reader: str, site: SiteDep) -> Response:
    keys = site.settings.verifying_keys
    target = read_click_token(keys, token)
    subscriber_id = read_reader(keys, target.edition_id, reader) if target else None
    if subscriber_id is None:
        target = None
    return _answer(request, site, target, subscriber_id or 0)


def _answer(
    request: Request, site: SiteDep, target: ClickTarget | None, subscriber: int
) -> Response:
    if target is None:
        return site.pages.message(
            "This link is invalid",
            "The link was changed on its way here, so it leads nowhere. Open the article from "
            "the publication's site instead.",
            status_code=400,
            links=[(site.settings.publication.name, site.settings.publication.url)],
        )
    recorder: ClickRecorder = request.app.state.click_recorder
    agent = request.headers.get("user-agent", "")
    client = request.client.host if request.client else ""
    recorder.submit(Click(target, request.method, agent, client, site.clock(), subscriber))
    return RedirectResponse(target.url, status_code=302, headers=HEADERS)
