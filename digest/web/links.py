"""A subscriber's link in a request: the signed token at the end of ``/u/…`` (unsubscribe),
``/p/…`` (preferences) and ``/confirm/…``, read into the subscriber it names, and the page for
a link that is invalid or has expired.

Links carry signed, expiring tokens, one purpose each (``digest.audience.tokens``); nothing
else identifies a visitor: no cookies, no login.
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from digest.audience.tokens import InvalidToken, Purpose, read_confirm_token, read_link
from digest.models import Subscriber
from digest.web.site import Site

# Longer than any token this project makes; refused before any work is spent on it.
MAX_TOKEN = 200


def read_token(site: Site, token: str, purpose: Purpose) -> tuple[Subscriber, int] | None:
    """The subscriber a link names, and (for a confirmation) the link's status version."""
    if len(token) > MAX_TOKEN:
        return None
    try:
        if purpose == "confirm":
            ref, version = read_confirm_token(site.settings, token)
        else:
            ref, version = read_link(site.settings, token, purpose), 0
    except InvalidToken:
        return None
    sub = site.store.subscriber_by_token(ref)
    return None if sub is None else (sub, version)


def subscriber_of(site: Site, token: str, purpose: Purpose) -> Subscriber | None:
    return None if (found := read_token(site, token, purpose)) is None else found[0]


def invalid_link(site: Site, purpose: Purpose) -> HTMLResponse:
    settings = site.settings
    if purpose == "confirm":
        return site.pages.message(
            "This link is invalid or has expired",
            f"Confirmation links work for {settings.web.confirm_max_age_days} days. "
            "Sign up again and we will send you a new one.",
            status_code=400,
            links=[("Sign up again", site.subscribe_url)],
        )
    mailto = settings.publication.unsubscribe_mailto
    hint = (
        f"To unsubscribe, use the link in a more recent digest, or write to {mailto} "
        "with the subject “unsubscribe”."
        if mailto
        else "To unsubscribe or change your choices, use the link in a more recent digest."
    )
    return site.pages.message("This link is invalid or has expired", hint, status_code=400)
