"""Click redirects: ``/c/<token>``, an article link of an edition (see ``digest.render.clicks``).

A token whose signature holds redirects (302) to the URL it signs, UTM parameters included; a
forged, altered or unknown token is refused with a 400 and redirects nowhere, so the app is no
open redirect. The answer goes out at once; the click is handed to the app's recorder, which
writes clicks in batches on a thread of its own (``digest.steps.stats``: scanners filtered,
repeats counted once, nothing about who clicked), so a slow or busy database never holds a
reader up.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from digest.render.clicks import read_click_token
from digest.steps.stats import Click, ClickRecorder
from digest.web.site import SiteDep

router = APIRouter()

HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def click(request: Request, token: str, site: SiteDep) -> Response:
    target = read_click_token(site.settings.verifying_keys, token)
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
    recorder.submit(Click(target, request.method, agent, client, site.clock()))
    return RedirectResponse(target.url, status_code=302, headers=HEADERS)
