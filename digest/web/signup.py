"""Sign-up with double opt-in: the form (``/subscribe``), the confirmation message sent in the
background, and the confirmation link's page (``/confirm/<token>``).

The form answers the same whatever the state of the address it is given, so it cannot tell
anyone who is subscribed; the confirmation is sent after the answer has gone out, so its timing
says nothing either. Sign-ups are limited per client address, confirmations per address (see
``digest.web.hardening``); a hidden field catches bots. Opening the confirmation link changes
nothing: its page's button posts the confirmation.
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from digest.audience import service
from digest.audience.tokens import make_token, preferences_url
from digest.models import SendStatus, Subscriber, SubscriberStatus
from digest.steps import messages
from digest.web.forms import Fields, form_text, form_texts
from digest.web.links import invalid_link, read_token, subscriber_of
from digest.web.site import Site, SiteDep

log = logging.getLogger(__name__)

S = SubscriberStatus

router = APIRouter()


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# Sign-up -----------------------------------------------------------------------------------------
def subscribe_form(
    site: Site,
    *,
    error: str = "",
    email: str = "",
    name: str = "",
    ticked: tuple[set[str], set[str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    digests, sections = ticked or (set(site.settings.digests), set(site.offered))
    return site.pages.render(
        "subscribe",
        status_code,
        title="Subscribe",
        what=site.what,
        error=error,
        email=email,
        name=name,
        groups=site.groups,
        chosen_digests=digests,
        chosen_sections=sections,
    )


def check_inbox(site: Site) -> HTMLResponse:
    return site.pages.message(
        "Check your inbox",
        "If this address can subscribe, a message with a confirmation link is on its way. "
        "Open it and press the button to start receiving our digests.",
        f"The link works for {site.settings.web.confirm_max_age_days} days. Nothing arrived? "
        "Look in your spam folder, or sign up again later.",
    )


def send_confirmation(site: Site, subscriber_id: int) -> None:
    """Runs after the answer has gone out, so the answer's timing says nothing either."""
    settings, store = site.settings, site.store
    sub = store.subscriber(subscriber_id)
    if sub is None:
        return
    if site.confirmations.hit(sub.email.lower(), site.clock().timestamp()):
        log.info("sign-up: subscriber %s asked too often; no confirmation sent", sub.id)
        return
    try:
        message = messages.confirmation_message(settings, store, sub, now=site.clock())
        provider = site.new_provider()
        try:
            results = provider.send([message])
        finally:
            provider.close()
    except Exception:
        log.exception("sign-up: confirmation for subscriber %s not sent", sub.id)
        return
    for result in results:
        if result.status is not SendStatus.SUBMITTED:
            log.warning(
                "sign-up: confirmation for subscriber %s not submitted: %s %s",
                sub.id,
                result.status.value,
                result.reason,
            )


@router.api_route("/subscribe", methods=["GET", "HEAD"])
def subscribe_page(site: SiteDep) -> HTMLResponse:
    return subscribe_form(site)


@router.post("/subscribe")
def subscribe(
    request: Request, site: SiteDep, fields: Fields, background: BackgroundTasks
) -> Response:
    wait = site.signups.hit(_client(request), site.clock().timestamp())
    if wait:
        response = site.pages.message(
            "Too many sign-ups",
            "This network has signed up too often in the last hour. Please try again later.",
            status_code=429,
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if form_text(fields, "website"):
        # A bot filled the hidden field: answer as for anyone, and do nothing.
        return check_inbox(site)
    email, name = form_text(fields, "email"), form_text(fields, "name")
    digests, sections = form_texts(fields, "digest"), form_texts(fields, "section")
    try:
        outcome = service.signup(
            site.store,
            site.settings,
            email=email,
            name=name,
            sections=sections,
            digests=digests,
            now=site.clock(),
        )
    except service.AudienceError as e:
        return subscribe_form(
            site,
            error=e.message,
            email=email,
            name=name,
            ticked=(set(digests), set(sections)),
            status_code=400,
        )
    if outcome.send_confirmation:
        background.add_task(send_confirmation, site, outcome.subscriber.id)
    return check_inbox(site)


# Confirmation ------------------------------------------------------------------------------------
def confirm_page(site: Site, sub: Subscriber) -> HTMLResponse:
    settings = site.settings
    done = sub.status is S.ACTIVE
    return site.pages.render(
        "confirm",
        title="You are subscribed" if done else "Confirm your subscription",
        email=sub.email,
        what=site.what,
        state="done" if done else "ask",
        preferences_url=preferences_url(
            settings, make_token(settings.signing_key, sub.link_id, "preferences")
        ),
    )


@router.api_route("/confirm/{token}", methods=["GET", "HEAD"])
def confirm_form(site: SiteDep, token: str) -> HTMLResponse:
    sub = subscriber_of(site, token, "confirm")
    return invalid_link(site, "confirm") if sub is None else confirm_page(site, sub)


@router.post("/confirm/{token}")
def confirm(site: SiteDep, token: str) -> HTMLResponse:
    found = read_token(site, token, "confirm")
    if found is None:
        return invalid_link(site, "confirm")
    sub, version = found
    changed = service.confirm(site.store, sub.id, now=site.clock(), version=version)
    now_sub = site.store.subscriber(sub.id) or sub
    if not changed and now_sub.status is not SubscriberStatus.ACTIVE:
        # A link from before the address last changed (it left, or complained, since).
        return invalid_link(site, "confirm")
    return confirm_page(site, now_sub)
