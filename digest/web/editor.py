"""The editors' pages: the editions with their state and delivery counts, and for each edition
its preview (desktop and phone frames, the plain-text part), the edit form (subject,
preheader, intro, pins, exclusions, sections' order: ``digest.web.editing``), a "send a test"
form, and Approve / Reject buttons.

Access (read when the app is created, into :class:`EditorAccess`): the pages are never served
without a secret.

``web.editor_token`` (env only: ``DIGEST__WEB__EDITOR_TOKEN``)
    The editors' secret, sent as the password of HTTP basic auth (any user name; it names the
    editor in the records), as ``Authorization: Bearer <secret>``, or once to the login URL
    ``/editor/login?token=<secret>``, which sets a session cookie (``Secure``, ``HttpOnly``,
    ``SameSite=Strict``, signed with the secret, good for :data:`SESSION_HOURS`) and redirects to
    ``/editions``. Compared in constant time. Unset: ``digest web`` on a loopback address makes
    a secret for its process (``EditorAccess.local_token``, in memory only) and prints its login
    URL. That one is accepted only from this machine: a loopback client, a local ``Host``
    (``localhost``, ``127.0.0.1``, ``[::1]``, with or without a port) and no header a proxy adds
    (``Forwarded``, ``X-Real-IP``, any ``X-Forwarded-*``), so a reverse proxy on the same host
    cannot pass it on. Anyone else gets a 403.
``web.editor_addresses``
    Comma-separated addresses a test message may be sent to; unset: none.

Every editor page is ``Cache-Control: no-store`` and ``X-Robots-Tag: noindex`` (the app's
hardening adds both). A GET changes nothing; every change is a POST from a form (no script
needed), refused when the request says it comes from another site (``Origin`` not this app's,
or ``Sec-Fetch-Site`` other than ``same-origin``), since browsers send basic-auth credentials
with cross-site requests too. A POST that worked redirects (303) back to the edition's page with
a note; one that did not shows the page again with the reason.

Deciding: the page shows the edition's state in the words every command and artifact uses
(``digest.models.edition_state``) and offers only the actions its status allows
(``digest.models.EDITION_TRANSITIONS``: Approve on a draft, one awaiting approval or a skipped
one, Reject on those and on an approved one; none on a rejected one, since a rejection is final,
or on one sending or sent); a POST of any other, or from a page showing a status the edition no
longer has, is refused (409) with the page as it stands. A decision is first a compare-and-set
on the edition's status in the store (``steps.compose.transition``): of two decisions on what
both saw, one wins, and the page the POST redirects to shows the state that resulted. Then, on
an edition awaiting approval and with an ``approver`` passed to ``create_app`` (it resumes the
run waiting for an editor's decision), the run is told: the approver is called with the edition
id and ``{"decision": "approve" | "reject", "editor": <who>}``, and the run, resumed, finds the
decision in the store. No run waiting, or one that could not be told: the decision stands in the
store all the same (an approved edition goes out with the next run; a waiting run finds it when
its wait ends).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, SecretStr
from starlette.datastructures import FormData

from digest.compose.periods import edition_id as period_edition_id
from digest.compose.periods import period_key
from digest.config import Settings
from digest.errors import DigestError, EditionStateError
from digest.factory import make_provider
from digest.models import (
    Edition,
    EditionAction,
    EditionStatus,
    SendStatus,
    allowed_actions,
    edition_state,
)
from digest.steps.compose import edit_changes, edit_edition, transition
from digest.steps.messages import message_for_test
from digest.steps.preview import preview
from digest.steps.stats import edition_clicks, percent
from digest.store import Store
from digest.web.editing import asked, edit_form
from digest.web.forms import form_text

log = logging.getLogger(__name__)

Approver = Callable[[str, dict[str, Any]], str]

LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Headers a proxy adds: a request carrying any of them is not from this machine.
PROXY_HEADERS = frozenset({"forwarded", "x-real-ip"})
SESSION_COOKIE = "digest_editor"
SESSION_HOURS = 12
LOGIN_PATH = "/editor/login"
_HOST = re.compile(r"^(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?$")


class NoRunWaiting(LookupError):
    """An approver found no run paused for the edition: the decision goes to the store."""


EDITIONS_LISTED = 50
MAX_ID = 200
MAX_FORM = 64 * 1024
TEST_PREFIX = "[Test] "
# Wider pages than the subscribers' forms, for the two preview frames side by side.
EDITOR_CSS = """
main { max-width: 70rem; }
table { width: 100%; border-collapse: collapse; margin: 0 0 16px; font-size: 0.94rem; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: start; }
.frames { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; margin: 0 0 16px; }
.frames figure { margin: 0; }
.frames figcaption { color: var(--muted); font-size: 0.85rem; }
.frames .inbox { margin: 0 0 6px; padding: 6px 8px; border: 1px solid var(--line);
  font-size: 0.9rem; overflow-wrap: anywhere; max-width: 100%; }
.frames .wide { width: 600px; }
.frames .narrow { width: 375px; }
.frames iframe { border: 1px solid var(--line); background: #ffffff; max-width: 100%; }
textarea { width: 100%; min-height: 8rem; font: 0.95rem/1.4 ui-monospace, monospace; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; padding: 12px;
  border: 1px solid var(--line); font-size: 0.85rem; max-height: 30rem; overflow: auto; }
.actions { display: flex; gap: 12px; flex-wrap: wrap; }
.state { font-weight: 700; }
input[type="number"] { width: 5rem; padding: 6px 8px; font: inherit; }
"""
# The email itself: inline styles and https images, no script, framed only by these pages.
PREVIEW_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https: data:",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
    ]
)
PREVIEW_HEADERS = {
    "Content-Security-Policy": PREVIEW_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
# What a POST did; the state it left is shown beside it (the badge and its explanation).
NOTES = {
    "edited": "Saved.",
    "unchanged": "Nothing to save: the form asks for the edition as it is.",
    "tested": "Test message sent.",
    "approved": "Approved.",
    "rejected": "Rejected.",
    "approved-told": "Approved; the run waiting for the decision was told and goes on.",
    "rejected-told": "Rejected; the run waiting for the decision was told and stops.",
}
# What each state means for an editor: shown under the state on the edition's page.
EXPLAINED = {
    EditionStatus.DRAFT: "Not approved yet: approve it, or the next edition run asks for a "
    "decision (or sends it, when the digest needs no approval).",
    EditionStatus.AWAITING_APPROVAL: "An edition run asked for a decision: approve or reject it.",
    EditionStatus.APPROVED: "Approved: the edition run sends it (the next one, if none is "
    "waiting). It can still be rejected, or edited, which makes it a draft again.",
    EditionStatus.REJECTED: "Rejected: a rejection is final, it will not be sent.",
    EditionStatus.SKIPPED: "No decision came in time, so the run skipped it and sent nothing. "
    "Approve it and the next edition run of its period sends it; edit it and it is a draft "
    "again.",
    EditionStatus.SENDING: "Going out: nothing is left to decide.",
    EditionStatus.SENT: "Sent: nothing is left to decide.",
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# The decisions the page's buttons post, and what each does to the edition.
DECISIONS = {"approve": EditionAction.APPROVE, "reject": EditionAction.REJECT}
DONE = {"approve": "approved", "reject": "rejected"}


class EditorAccess(BaseModel):
    """Who may use the editor pages, and where a test may be sent (see the module docstring):
    ``token`` is the configured secret (good from anywhere), ``local_token`` the one
    ``digest web`` made for its process (good from this machine only)."""

    model_config = ConfigDict(frozen=True)

    token: SecretStr = SecretStr("")
    local_token: SecretStr = SecretStr("")
    addresses: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, local_token: str = "") -> EditorAccess:
        return cls(
            token=SecretStr(settings.web.editor_token.get_secret_value().strip()),
            local_token=SecretStr(local_token),
            addresses=tuple(a.strip().lower() for a in settings.web.editor_addresses if a.strip()),
        )

    def allows(self, address: str) -> bool:
        return address.strip().lower() in self.addresses

    def secrets_for(self, request: Request) -> list[str]:
        """The secrets this request may sign in with: the process's own only from this
        machine; refuses (403) a request that none could let in."""
        configured = self.token.get_secret_value()
        local = self.local_token.get_secret_value() if is_local(request) else ""
        usable = [s for s in (configured, local) if s]
        if usable:
            return usable
        if self.local_token.get_secret_value():
            raise HTTPException(
                403,
                "The editor pages answer only on this machine (not through a proxy) until "
                "DIGEST__WEB__EDITOR_TOKEN is set.",
            )
        raise HTTPException(403, "The editor pages are off: DIGEST__WEB__EDITOR_TOKEN is not set.")


# Access ------------------------------------------------------------------------------------------
def is_local(request: Request) -> bool:
    """A request from this machine, straight: a loopback client, a local Host name (a page on
    another site whose name resolves to 127.0.0.1 does not count) and no header a proxy adds
    (a proxy on this host connects from loopback too, and may rewrite Host)."""
    client = request.client.host if request.client else ""
    if client not in LOOPBACK_CLIENTS:
        return False
    if any(n in PROXY_HEADERS or n.startswith("x-forwarded-") for n in request.headers):
        return False
    found = _HOST.match((request.headers.get("host") or "").strip().lower())
    return found is not None and (found["ip6"] or found["name"]) in LOCAL_HOSTS


def _credentials(header: str) -> tuple[str, str]:
    """(user, secret) from an Authorization header; empty strings when there are none."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return "editor", value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        user, sep, secret = decoded.partition(":")
        return (user, secret) if sep else ("", "")
    return "", ""


def _matches(given: str, secret: str) -> bool:
    same = hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(secret.encode()).digest()
    )
    return bool(given) and same


def _sessions(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="digest-editor-session")


def _session_of(request: Request, secrets: list[str]) -> str | None:
    """The editor named by a valid session cookie signed with one of ``secrets``."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    for secret in secrets if 0 < len(cookie) <= 500 else []:
        try:
            name = _sessions(secret).loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            continue
        if isinstance(name, str):
            return name
    return None


def editor(request: Request) -> str:
    """The editor making the request (a name for the records); refuses anyone else."""
    secrets = request.app.state.editor_access.secrets_for(request)
    user, given = _credentials(request.headers.get("authorization", ""))
    if any(_matches(given, secret) for secret in secrets):
        name = " ".join(_UNSAFE.sub(" ", user).split())[:80]
        return name or "editor"
    session = _session_of(request, secrets)
    if session is not None:
        return session
    raise HTTPException(
        401,
        "Editor credentials required: the editors' secret as a basic-auth password, or the "
        "login URL `digest web` prints.",
        headers={"WWW-Authenticate": 'Basic realm="digest editors", charset="UTF-8"'},
    )


def same_site(request: Request) -> None:
    """Refuses a state-changing request that says it comes from another site: by
    ``Sec-Fetch-Site`` when the browser sends it (it does not depend on the referrer policy,
    under which a form post may carry ``Origin: null``), else by ``Origin`` when present."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site != "same-origin":
            raise HTTPException(403, "Cross-site request refused.")
        return
    origin = request.headers.get("origin")
    if origin is None:
        return
    settings: Settings = request.app.state.settings
    allowed = {_origin(str(request.base_url)), _origin(settings.links_base)}
    if origin.rstrip("/").lower() not in allowed:
        raise HTTPException(403, "Cross-site request refused.")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


Editor = Annotated[str, Depends(editor)]

router = APIRouter(dependencies=[Depends(editor)])
login_router = APIRouter()


@login_router.get(LOGIN_PATH)
def login(request: Request, token: str = "") -> Response:
    """Trades the secret in the URL for a session cookie, then shows the editions without the
    secret in the address bar (nor, with this app's Referrer-Policy, in any Referer)."""
    access: EditorAccess = request.app.state.editor_access
    secret = next((s for s in access.secrets_for(request) if _matches(token, s)), None)
    if secret is None:
        return request.app.state.pages.message(
            "This login link does not work",
            "Its secret is not the editors' one. digest web prints a new login link each time "
            "it starts; without DIGEST__WEB__EDITOR_TOKEN, the link works only on the machine "
            "that runs it.",
            status_code=403,
        )
    response = RedirectResponse("/editions", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        _sessions(secret).dumps("editor"),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


# Helpers -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Listed:
    id: str
    digest: str
    period: str
    state: str
    created_at: datetime
    sent_at: datetime | None
    counts: dict[str, int]


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    pages = request.app.state.pages
    css = str(pages.stylesheet) + EDITOR_CSS
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    csp = "; ".join(
        [
            "default-src 'none'",
            f"style-src 'sha256-{digest}'",
            "img-src 'self' https: data:",
            "frame-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
    page = pages.env.get_template(f"web/{template}.html.j2")
    html = page.render({**pages.shared, "stylesheet": Markup(css), **context})
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            # Form posts then carry this app's Origin (the app's default sends none).
            "Referrer-Policy": "same-origin",
        },
    )


def _edition(request: Request, edition_id: str) -> Edition:
    store: Store = request.app.state.store
    edition = store.edition(edition_id) if len(edition_id) <= MAX_ID else None
    if edition is None:
        raise HTTPException(404, "No such edition.")
    return edition


def _page_url(edition_id: str, note: str = "") -> str:
    url = f"/editions/{quote(edition_id, safe='')}"
    return f"{url}?note={note}" if note else url


def _see(edition_id: str, note: str) -> RedirectResponse:
    return RedirectResponse(_page_url(edition_id, note), status_code=303)


async def _form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM):
        raise HTTPException(413, "Form too large.")
    try:
        return await request.form(max_files=0, max_fields=500)
    except (HTTPException, ValueError):
        return FormData()


Form = Annotated[FormData, Depends(_form)]


def _edition_page(
    request: Request,
    edition: Edition,
    *,
    note: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    access: EditorAccess = request.app.state.editor_access
    try:
        _, text = preview(settings, edition)
    except DigestError as e:
        text = ""
        error = error or f"The email does not render: {e}"
    return _render(
        request,
        "edition",
        status_code,
        title=edition.subject,
        edition=edition,
        state=edition_state(edition.status),
        explained=EXPLAINED.get(edition.status, ""),
        counts=store.delivery_counts(edition.id),
        form=edit_form(settings, store, edition),
        text=text,
        addresses=access.addresses,
        base=_page_url(edition.id),
        note=NOTES.get(note, ""),
        error=error,
        actions={a.value for a in allowed_actions(edition.status)},
        clicks=edition_clicks(settings, store, edition.id),
        percent=percent,
    )


# Routes ------------------------------------------------------------------------------------------
@router.get("/editions")
def editions(request: Request) -> Response:
    store: Store = request.app.state.store
    rows = [
        Listed(
            id=row["id"],
            digest=row["digest"],
            period=row["period"],
            state=edition_state(row["status"]),
            created_at=row["created_at"],
            sent_at=row["sent_at"],
            counts=store.delivery_counts(row["id"]),
        )
        for row in store.last_editions(EDITIONS_LISTED)
    ]
    return _render(request, "editions", title="Editions", editions=rows)


@router.get("/editions/{edition_id}")
def edition_page(request: Request, edition_id: str, note: str = "") -> Response:
    return _edition_page(request, _edition(request, edition_id), note=note)


@router.get("/editions/{edition_id}/html")
def edition_html(request: Request, edition_id: str) -> Response:
    """The full email as a subscriber sees it, links pointing at a harmless preview token."""
    edition = _edition(request, edition_id)
    try:
        html, _ = preview(request.app.state.settings, edition)
    except DigestError as e:
        raise HTTPException(500, f"The email does not render: {e}") from None
    return HTMLResponse(html, headers=PREVIEW_HEADERS)


@router.post("/editions/{edition_id}/edit", dependencies=[Depends(same_site)])
def edit(request: Request, edition_id: str, fields: Form, who: Editor) -> Response:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    edition = _edition(request, edition_id)
    if EditionAction.EDIT not in allowed_actions(edition.status):
        return _edition_page(
            request,
            edition,
            error=f"This edition is {edition_state(edition.status)}; it can no longer be edited.",
            status_code=409,
        )
    now: datetime = request.app.state.clock()
    digest = settings.digests.get(edition.digest)
    if digest is None:
        return _edition_page(
            request, edition, error="Its digest is no longer configured.", status_code=409
        )
    period = period_key(now, digest.period, digest.schedule.timezone, digest.schedule.cron)
    if period_edition_id(edition.digest, period) != edition.id:
        return _edition_page(
            request,
            edition,
            error="Only the edition of the current period can be edited.",
            status_code=409,
        )
    try:
        changes = edit_changes(settings, store, edition, **asked(settings, store, edition, fields))
    except DigestError as e:  # a FormError, or a reference that is no article
        return _edition_page(request, edition, error=f"Not saved: {e.message}", status_code=400)
    have = store.overrides(edition.id)
    if have.model_validate({**have.model_dump(), **changes}) == have:
        return _see(edition.id, "unchanged")
    try:
        edit_edition(settings, store, edition.digest, changes, now=now)
    except EditionStateError as e:  # decided meanwhile: show what it is now
        return _edition_page(
            request,
            _edition(request, edition_id),
            error=f"Not saved: {e.message}.",
            status_code=409,
        )
    except DigestError as e:
        return _edition_page(request, edition, error=str(e), status_code=409)
    log.info("edition %s edited by %s", edition.id, who)
    return _see(edition.id, "edited")


@router.post("/editions/{edition_id}/test", dependencies=[Depends(same_site)])
def send_test(request: Request, edition_id: str, fields: Form, who: Editor) -> Response:
    settings: Settings = request.app.state.settings
    access: EditorAccess = request.app.state.editor_access
    edition = _edition(request, edition_id)
    address = form_text(fields, "address").strip()
    if not access.allows(address):
        return _edition_page(
            request,
            edition,
            error="Tests go only to the addresses in web.editor_addresses.",
            status_code=400,
        )
    now: datetime = request.app.state.clock()
    try:
        message = message_for_test(settings, edition, address, now=now, prefix=TEST_PREFIX)
    except DigestError as e:
        return _edition_page(request, edition, error=f"Not sent: {e}", status_code=500)
    factory = getattr(request.app.state, "provider_factory", None)
    try:
        # A provider that owns the list (Mailchimp, listmonk) sends no single messages.
        provider = factory() if factory is not None else make_provider(settings)
    except DigestError as e:
        return _edition_page(request, edition, error=f"Not sent: {e}", status_code=502)
    try:
        results = provider.send([message])
    except DigestError as e:
        return _edition_page(request, edition, error=f"Not sent: {e}", status_code=502)
    finally:
        provider.close()
    if not results or results[0].status is not SendStatus.SUBMITTED:
        reason = results[0].reason if results else "no result"
        return _edition_page(request, edition, error=f"Not sent: {reason}", status_code=502)
    log.info("test of edition %s sent to %s by %s", edition.id, address, who)
    return _see(edition.id, "tested")


def _refusal(edition: Edition, decision: str, shown: str) -> str:
    """Why ``decision`` cannot be taken on ``edition`` as it stands ("" if it can): the page
    it came from showed another status, or the status does not allow it."""
    status = edition_state(edition.status)
    if shown and shown != edition.status.value:
        return (
            f"This edition is {status} now; the page you used showed it {edition_state(shown)}. "
            "Nothing was changed: decide again on the page as it stands."
        )
    if DECISIONS[decision] in allowed_actions(edition.status):
        return ""
    if edition.status is EditionStatus.REJECTED:
        done = DONE[decision]
        return f"This edition was rejected, and a rejection is final: it cannot be {done}."
    if edition.status in (EditionStatus.SENDING, EditionStatus.SENT):
        return f"This edition is {status}; it is too late to decide."
    return f"This edition is {status}; it cannot be {DONE[decision]}."


@router.post("/editions/{edition_id}/decision", dependencies=[Depends(same_site)])
def decide(request: Request, edition_id: str, fields: Form, who: Editor) -> Response:
    store: Store = request.app.state.store
    edition = _edition(request, edition_id)
    decision = form_text(fields, "decision")
    if decision not in DECISIONS:
        return _edition_page(request, edition, error="Approve or reject?", status_code=400)
    refused = _refusal(edition, decision, form_text(fields, "status"))
    if refused:
        return _edition_page(request, edition, error=refused, status_code=409)
    now: datetime = request.app.state.clock()
    try:
        transition(store, edition, DECISIONS[decision], now=now)
    except EditionStateError as e:  # another decision came first: show the edition as it is
        log.info("edition %s: %s by %s refused: %s", edition.id, decision, who, e.message)
        return _edition_page(
            request, _edition(request, edition_id), error=f"Not done: {e.message}.", status_code=409
        )
    log.info("edition %s: %s by %s", edition.id, decision, who)
    approver: Approver | None = getattr(request.app.state, "approver", None)
    if approver is None or edition.status is not EditionStatus.AWAITING_APPROVAL:
        return _see(edition.id, DONE[decision])
    # The decision stands in the store; the run waiting for it is told, so it goes on now.
    try:
        answer = approver(edition.id, {"decision": decision, "editor": who})
    except NoRunWaiting:
        # No run is waiting (it stopped, or ran without Prefect): the next one finds it.
        return _see(edition.id, DONE[decision])
    except Exception as e:  # the approver talks to another system; say what it said
        log.exception("approver failed for edition %s", edition.id)
        return _edition_page(
            request,
            _edition(request, edition_id),
            note=DONE[decision],
            error=f"The decision is recorded, but the run waiting for it was not told: {e}. "
            "It finds the decision when its wait ends; to hurry it, resume it in Prefect.",
            status_code=502,
        )
    log.info("edition %s: the run waiting for it was told (%s)", edition.id, answer)
    return _see(edition.id, f"{DONE[decision]}-told")
