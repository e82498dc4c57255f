"""A subscriber's own pages, opened from the links in every digest: unsubscribe (``/u/<token>``,
with RFC 8058 one-click) and preferences (``/p/<token>``: digests and sections, pause, resume,
leave).

A GET never changes anything: mail scanners and link previews open every link in a message, so
every change is a POST, made by a button or, for unsubscribing, by a mail client's one-click
POST. What a subscriber does is done by ``digest.audience.service``, which records every status
change with its cause.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from digest.audience import service
from digest.models import Subscriber, SubscriberStatus
from digest.web.forms import Fields, form_text, form_texts
from digest.web.links import invalid_link, subscriber_of
from digest.web.site import Site, SiteDep

S = SubscriberStatus

router = APIRouter()


def chosen(site: Site, sub: Subscriber) -> tuple[set[str], set[str]]:
    """The digests and sections a subscriber gets, as ticked boxes (none stored: all)."""
    digests = set(site.settings.digests) if sub.digests is None else set(sub.digests)
    sections = set(site.offered) if sub.sections is None else set(sub.sections)
    return digests, sections


# Unsubscribe -------------------------------------------------------------------------------------
def unsubscribe_page(site: Site, sub: Subscriber, state: str | None = None) -> HTMLResponse:
    if state is None and sub.status in service.LEAVABLE:
        state = "ask"
    elif state is None:
        state = "done" if sub.status is S.UNSUBSCRIBED else "suppressed"
    title = {"ask": "Unsubscribe", "done": "You are unsubscribed"}.get(state, "No email")
    return site.pages.render(
        "unsubscribe", title=title, email=sub.email, state=state, subscribe_url=site.subscribe_url
    )


@router.api_route("/u/{token}", methods=["GET", "HEAD"])
def unsubscribe_form(site: SiteDep, token: str) -> HTMLResponse:
    sub = subscriber_of(site, token, "unsubscribe")
    return invalid_link(site, "unsubscribe") if sub is None else unsubscribe_page(site, sub)


@router.post("/u/{token}")
def unsubscribe(site: SiteDep, token: str, fields: Fields) -> HTMLResponse:
    """RFC 8058: a POST with ``List-Unsubscribe=One-Click`` unsubscribes, idempotently,
    with no cookie and no login. The page's button posts the same; any other POST to a
    valid link is taken as the same request (a POST is never a scanner's prefetch)."""
    sub = subscriber_of(site, token, "unsubscribe")
    if sub is None:
        return invalid_link(site, "unsubscribe")
    if form_text(fields, "via") == "page":
        cause = "unsubscribe page"
    elif form_text(fields, "List-Unsubscribe") == "One-Click":
        cause = "one-click unsubscribe"
    else:
        cause = "unsubscribe link (POST without List-Unsubscribe=One-Click)"
    service.unsubscribe(site.store, sub.id, now=site.clock(), cause=cause)
    after = site.store.subscriber(sub.id) or sub
    return unsubscribe_page(site, after, "done" if after.status is S.UNSUBSCRIBED else None)


# Preferences -------------------------------------------------------------------------------------
def preferences_page(
    site: Site,
    sub: Subscriber,
    *,
    note: str = "",
    error: str = "",
    ticked: tuple[set[str], set[str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    digests, sections = ticked or chosen(site, sub)
    return site.pages.render(
        "preferences",
        status_code,
        title="Your email preferences",
        email=sub.email,
        status=sub.status.value,
        note=note,
        error=error,
        groups=site.groups,
        chosen_digests=digests,
        chosen_sections=sections,
        subscribe_url=site.subscribe_url,
    )


@router.api_route("/p/{token}", methods=["GET", "HEAD"])
def preferences(site: SiteDep, token: str) -> HTMLResponse:
    sub = subscriber_of(site, token, "preferences")
    return invalid_link(site, "preferences") if sub is None else preferences_page(site, sub)


@router.post("/p/{token}")
def save_preferences(site: SiteDep, token: str, fields: Fields) -> HTMLResponse:
    store = site.store
    sub = subscriber_of(site, token, "preferences")
    if sub is None:
        return invalid_link(site, "preferences")
    action = form_text(fields, "action")
    now = site.clock()
    if action == "save":
        digests, sections = form_texts(fields, "digest"), form_texts(fields, "section")
        try:
            sub = service.update_preferences(
                store, site.settings, sub.id, digests=digests, sections=sections, now=now
            )
        except service.AudienceError as e:
            return preferences_page(
                site, sub, error=e.message, ticked=(set(digests), set(sections)), status_code=400
            )
        return preferences_page(site, sub, note="Saved. Your choices apply from the next digest.")
    if action == "pause":
        service.pause(store, sub.id, now=now, cause="paused on the preferences page")
        note = "Paused. You will receive nothing until you resume."
    elif action == "resume":
        service.resume(store, sub.id, now=now, cause="resumed on the preferences page")
        note = "Welcome back: your digests are on again."
    elif action == "leave":
        service.unsubscribe(store, sub.id, now=now, cause="preferences page")
        after = store.subscriber(sub.id) or sub
        return unsubscribe_page(site, after, "done" if after.status is S.UNSUBSCRIBED else None)
    else:
        return preferences_page(
            site, sub, error="Unknown action; nothing changed.", status_code=400
        )
    return preferences_page(site, store.subscriber(sub.id) or sub, note=note)
