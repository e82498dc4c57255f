"""The public web app: unsubscribe, preferences, sign-up and its confirmation, and the providers'
webhooks (``digest.web.webhooks``).

Pages are rendered on the server from ``templates/web/`` and need no JavaScript. A GET never
changes anything: mail scanners and link previews open every link in a message, so every change
is a POST, made by a button or, for unsubscribing, by a mail client's RFC 8058 one-click POST.
Links carry signed, expiring tokens, one purpose each (``digest.audience.tokens``); nothing else
identifies a visitor: no cookies, no login. What a subscriber does is done by
``digest.audience.service``, which records every status change with its cause.

Every response carries a Content-Security-Policy that allows no script and only the app's own
stylesheet (by its hash), refuses framing, and sends no Referer (tokens are in the URLs), and
``Cache-Control: no-store``; except the public web version of an edition (``/v/…``, "View in
browser"), which is the email itself: its own policy allows inline styles and https images (still
no script), framing by the app's own pages, and caching. The sign-up form answers the same
whatever the state of the address it is given, so it cannot tell anyone who is subscribed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import jinja2
from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.audience import service
from digest.audience.tokens import (
    InvalidToken,
    Purpose,
    make_confirm_token,
    make_token,
    preferences_url,
    read_confirm_token,
    read_link,
)
from digest.config import Settings
from digest.delivery.base import Provider
from digest.errors import PermanentError
from digest.factory import make_provider, open_store
from digest.models import EditionStatus, SendStatus, Subscriber, SubscriberStatus
from digest.render import personalise, render_variant
from digest.render.email import templates_dir, view_sections
from digest.store import Store
from digest.web.editor import Approver, EditorAccess
from digest.web.editor import router as editor_router
from digest.web.webhooks import router as webhooks_router

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ProviderFactory = Callable[[], Provider]

S = SubscriberStatus
TEMPLATES = "web"
STYLESHEET = "web/style.css"
# The app's forms are small; a bigger body is refused unread. (Webhooks cap their own.)
MAX_BODY = 64 * 1024
FORM_PATHS = ("/u/", "/p/", "/confirm/", "/subscribe", "/editions")
# Longer than any token this project makes; refused before any work is spent on it.
MAX_TOKEN = 200
# Confirmation messages to one address, at most, per day (whoever asks for them).
CONFIRMATIONS_PER_DAY = 3
# Web versions of editions ("View in browser"): only editions that went out are public, so a
# draft never leaks. The page is the email itself, inline styles and <style> block included,
# so this route has its own policy: inline styles and https images, still no script; framing
# by the app's own pages (the editors' preview).
PUBLIC_EDITION = (EditionStatus.SENDING, EditionStatus.SENT)
VIEW_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https:",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
    ]
)
VIEW_HEADERS = {
    "Content-Security-Policy": VIEW_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    # Nothing personal in it: the same page for everyone who got that variant.
    "Cache-Control": "public, max-age=300",
}
# Longer than any list of section keys a real digest has; refused before any work.
MAX_VIEW_SECTIONS = 1000
_RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ps", "sd", "ug", "ur", "yi"}
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Templates ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir(STYLESHEET)),
        autoescape=True,
        # A misspelt variable must fail loudly, not print an empty string into a page.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True, slots=True)
class _Choice:
    key: str
    title: str


@dataclass(frozen=True, slots=True)
class _Group:
    """One digest on the choice forms: its sections not shown under an earlier digest, and
    the titles of those that were."""

    key: str
    title: str
    sections: tuple[_Choice, ...]
    shared: tuple[str, ...]


def choice_groups(settings: Settings) -> list[_Group]:
    groups = []
    shown: set[str] = set()
    for key, digest in settings.digests.items():
        own = [s for s in digest.sections if s not in shown]
        shown.update(own)
        groups.append(
            _Group(
                key=key,
                title=digest.title,
                sections=tuple(_Choice(s, settings.sections[s].title) for s in own),
                shared=tuple(settings.sections[s].title for s in digest.sections if s not in own),
            )
        )
    return groups


class Pages:
    """Renders the templates with what every page shares (publication, language, stylesheet)."""

    def __init__(self, settings: Settings) -> None:
        self.env = environment()
        css = (templates_dir(STYLESHEET) / STYLESHEET).read_text(encoding="utf-8")
        self.stylesheet = Markup(css)
        digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
        self.csp = "; ".join(
            [
                "default-src 'none'",
                f"style-src 'sha256-{digest}'",
                "img-src 'self' https: data:",
                "form-action 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ]
        )
        pub = settings.publication
        self.shared = {
            "publication": pub,
            "lang": pub.lang,
            "dir": "rtl" if pub.lang.split("-")[0].lower() in _RTL_LANGUAGES else "ltr",
            "stylesheet": self.stylesheet,
        }

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(f"{TEMPLATES}/{template}.html.j2")
        return HTMLResponse(page.render(**self.shared, **context), status_code=status_code)

    def message(
        self,
        title: str,
        *paragraphs: str,
        status_code: int = 200,
        links: Iterable[tuple[str, str]] = (),
    ) -> HTMLResponse:
        return self.render(
            "message", status_code, title=title, paragraphs=paragraphs, links=list(links)
        )


# Middleware and helpers --------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


class Hardening:
    """Security headers on every response, and a cap on the bodies of the app's own forms
    (413 past it). Other routes (the webhooks) take bodies of their own size and cap them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        csp: str,
        capped: tuple[str, ...] = FORM_PATHS,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.capped = capped
        self.max_body = max_body
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"x-robots-tag", b"noindex, nofollow"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.headers if n not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if not str(scope.get("path", "")).startswith(self.capped):
            await self.app(scope, receive, send_with_headers)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send_with_headers)

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = b"Request body too large\n"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SlidingWindow:
    """At most ``limit`` hits per key in any ``window`` seconds; in memory, per app instance
    (several worker processes each count on their own)."""

    MAX_KEYS = 10_000

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float) -> float:
        """Count a hit at ``now`` (seconds); 0 when allowed, else the seconds to wait before
        the next one is (a refused hit is not counted)."""
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            if len(self._hits) > self.MAX_KEYS:
                self._forget_idle(now)
            return 0.0

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]


class WebVersions:
    """Rendered web versions of edition variants, by (edition id, sorted section keys or None),
    the most recently used ``limit`` of them. An edition that went out no longer changes, so
    an entry never goes stale."""

    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self._pages: OrderedDict[tuple[str, tuple[str, ...] | None], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[str, ...] | None]) -> str | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple[str, tuple[str, ...] | None], page: str) -> None:
        with self._lock:
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self.limit:
                self._pages.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pages)


async def form_fields(request: Request) -> FormData:
    """The request's form fields; empty for a body that is not a form or cannot be parsed
    (each route decides what an empty form means)."""
    try:
        return await request.form(max_files=0, max_fields=200)
    except (StarletteHTTPException, ValueError):
        return FormData()


Fields = Annotated[FormData, Depends(form_fields)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _text(fields: FormData, name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _texts(fields: FormData, name: str) -> list[str]:
    return [v for v in fields.getlist(name) if isinstance(v, str)]


# The app -----------------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    store: Store,
    *,
    clock: Clock | None = None,
    provider_factory: ProviderFactory | None = None,
    approver: Approver | None = None,
    editors_on_loopback: bool = True,
) -> FastAPI:
    """The web app over ``store``. ``clock`` returns an aware UTC datetime (tests pass a fixed
    one); ``provider_factory`` makes the provider that sends confirmation messages (default:
    the configured one), one per message, closed after it. ``approver`` passes an editor's
    decision on an edition to the run waiting for it (``digest.web.editor``); without one the
    editor pages set the edition's status themselves. ``editors_on_loopback``: without an
    editors' secret, local requests may use the editor pages (only when the app itself listens
    on loopback: ``serve`` decides)."""
    now_of: Clock = clock or _utc_now
    new_provider: ProviderFactory = provider_factory or (lambda: make_provider(settings))
    pages = Pages(settings)
    signups = SlidingWindow(settings.web.signups_per_hour, 3600.0)
    confirmations = SlidingWindow(CONFIRMATIONS_PER_DAY, 86_400.0)
    groups = choice_groups(settings)
    offered = service.offered_sections(settings)
    what = service.digest_titles(settings)
    subscribe_url = f"{settings.links_base}/subscribe"

    app = FastAPI(
        title=f"{settings.publication.name} digests",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.clock = now_of
    app.state.provider_factory = new_provider
    app.state.signups = signups
    app.state.web_versions = web_versions = WebVersions()
    app.state.pages = pages
    app.state.approver = approver
    app.state.editors_on_loopback = editors_on_loopback
    app.state.editor_access = EditorAccess.from_settings(settings)
    app.add_middleware(Hardening, csp=pages.csp)
    app.include_router(webhooks_router)
    app.include_router(editor_router)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # People get a page; programs (webhook senders) get FastAPI's JSON.
        if "text/html" in request.headers.get("accept", "") and exc.status_code in (404, 405):
            title = "Page not found" if exc.status_code == 404 else "Not allowed here"
            return nothing_here(title, exc.status_code)
        return await http_exception_handler(request, exc)

    def nothing_here(title: str = "Page not found", status_code: int = 404) -> HTMLResponse:
        return pages.message(
            title,
            "There is nothing to see at this address.",
            status_code=status_code,
            links=[(settings.publication.name, settings.publication.url)],
        )

    def subscriber_of(token: str, purpose: Purpose) -> Subscriber | None:
        return None if (found := read_token_of(token, purpose)) is None else found[0]

    def read_token_of(token: str, purpose: Purpose) -> tuple[Subscriber, int] | None:
        """The subscriber a link names, and (for a confirmation) the link's status version."""
        if len(token) > MAX_TOKEN:
            return None
        try:
            if purpose == "confirm":
                ref, version = read_confirm_token(settings, token)
            else:
                ref, version = read_link(settings, token, purpose), 0
        except InvalidToken:
            return None
        sub = store.subscriber_by_token(ref)
        return None if sub is None else (sub, version)

    def invalid_link(purpose: Purpose) -> HTMLResponse:
        if purpose == "confirm":
            return pages.message(
                "This link is invalid or has expired",
                f"Confirmation links work for {settings.web.confirm_max_age_days} days. "
                "Sign up again and we will send you a new one.",
                status_code=400,
                links=[("Sign up again", subscribe_url)],
            )
        mailto = settings.publication.unsubscribe_mailto
        hint = (
            f"To unsubscribe, use the link in a more recent digest, or write to {mailto} "
            "with the subject “unsubscribe”."
            if mailto
            else "To unsubscribe or change your choices, use the link in a more recent digest."
        )
        return pages.message("This link is invalid or has expired", hint, status_code=400)

    def chosen(sub: Subscriber) -> tuple[set[str], set[str]]:
        digests = set(settings.digests) if sub.digests is None else set(sub.digests)
        sections = set(offered) if sub.sections is None else set(sub.sections)
        return digests, sections

    # Health ---------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    # Unsubscribe ----------------------------------------------------------------------------
    def unsubscribe_page(sub: Subscriber, state: str | None = None) -> HTMLResponse:
        if state is None and sub.status in service.LEAVABLE:
            state = "ask"
        elif state is None:
            state = "done" if sub.status is S.UNSUBSCRIBED else "suppressed"
        title = {"ask": "Unsubscribe", "done": "You are unsubscribed"}.get(state, "No email")
        return pages.render(
            "unsubscribe", title=title, email=sub.email, state=state, subscribe_url=subscribe_url
        )

    @app.api_route("/u/{token}", methods=["GET", "HEAD"])
    def unsubscribe_form(token: str) -> HTMLResponse:
        sub = subscriber_of(token, "unsubscribe")
        return invalid_link("unsubscribe") if sub is None else unsubscribe_page(sub)

    @app.post("/u/{token}")
    def unsubscribe(token: str, fields: Fields) -> HTMLResponse:
        """RFC 8058: a POST with ``List-Unsubscribe=One-Click`` unsubscribes, idempotently,
        with no cookie and no login. The page's button posts the same; any other POST to a
        valid link is taken as the same request (a POST is never a scanner's prefetch)."""
        sub = subscriber_of(token, "unsubscribe")
        if sub is None:
            return invalid_link("unsubscribe")
        if _text(fields, "via") == "page":
            cause = "unsubscribe page"
        elif _text(fields, "List-Unsubscribe") == "One-Click":
            cause = "one-click unsubscribe"
        else:
            cause = "unsubscribe link (POST without List-Unsubscribe=One-Click)"
        service.unsubscribe(store, sub.id, now=now_of(), cause=cause)
        after = store.subscriber(sub.id) or sub
        return unsubscribe_page(after, "done" if after.status is S.UNSUBSCRIBED else None)

    # Preferences ----------------------------------------------------------------------------
    def preferences_page(
        sub: Subscriber,
        *,
        note: str = "",
        error: str = "",
        ticked: tuple[set[str], set[str]] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        digests, sections = ticked or chosen(sub)
        return pages.render(
            "preferences",
            status_code,
            title="Your email preferences",
            email=sub.email,
            status=sub.status.value,
            note=note,
            error=error,
            groups=groups,
            chosen_digests=digests,
            chosen_sections=sections,
            subscribe_url=subscribe_url,
        )

    @app.api_route("/p/{token}", methods=["GET", "HEAD"])
    def preferences(token: str) -> HTMLResponse:
        sub = subscriber_of(token, "preferences")
        return invalid_link("preferences") if sub is None else preferences_page(sub)

    @app.post("/p/{token}")
    def save_preferences(token: str, fields: Fields) -> HTMLResponse:
        sub = subscriber_of(token, "preferences")
        if sub is None:
            return invalid_link("preferences")
        action = _text(fields, "action")
        now = now_of()
        if action == "save":
            digests, sections = _texts(fields, "digest"), _texts(fields, "section")
            try:
                sub = service.update_preferences(
                    store, settings, sub.id, digests=digests, sections=sections, now=now
                )
            except service.AudienceError as e:
                return preferences_page(
                    sub, error=e.message, ticked=(set(digests), set(sections)), status_code=400
                )
            return preferences_page(sub, note="Saved. Your choices apply from the next digest.")
        if action == "pause":
            service.pause(store, sub.id, now=now, cause="paused on the preferences page")
            note = "Paused. You will receive nothing until you resume."
        elif action == "resume":
            service.resume(store, sub.id, now=now, cause="resumed on the preferences page")
            note = "Welcome back: your digests are on again."
        elif action == "leave":
            service.unsubscribe(store, sub.id, now=now, cause="preferences page")
            after = store.subscriber(sub.id) or sub
            return unsubscribe_page(after, "done" if after.status is S.UNSUBSCRIBED else None)
        else:
            return preferences_page(sub, error="Unknown action; nothing changed.", status_code=400)
        return preferences_page(store.subscriber(sub.id) or sub, note=note)

    # Sign-up --------------------------------------------------------------------------------
    def subscribe_form(
        *,
        error: str = "",
        email: str = "",
        name: str = "",
        ticked: tuple[set[str], set[str]] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        digests, sections = ticked or (set(settings.digests), set(offered))
        return pages.render(
            "subscribe",
            status_code,
            title="Subscribe",
            what=what,
            error=error,
            email=email,
            name=name,
            groups=groups,
            chosen_digests=digests,
            chosen_sections=sections,
        )

    def check_inbox() -> HTMLResponse:
        return pages.message(
            "Check your inbox",
            "If this address can subscribe, a message with a confirmation link is on its way. "
            "Open it and press the button to start receiving our digests.",
            f"The link works for {settings.web.confirm_max_age_days} days. Nothing arrived? "
            "Look in your spam folder, or sign up again later.",
        )

    def send_confirmation(subscriber_id: int) -> None:
        """Runs after the answer has gone out, so the answer's timing says nothing either."""
        sub = store.subscriber(subscriber_id)
        if sub is None:
            return
        if confirmations.hit(sub.email.lower(), now_of().timestamp()):
            log.info("sign-up: subscriber %s asked too often; no confirmation sent", sub.id)
            return
        try:
            token = make_confirm_token(settings, sub.link_id, store.status_version(sub.id))
            message = service.confirmation_message(settings, sub, token, now_of())
            provider = new_provider()
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

    @app.api_route("/subscribe", methods=["GET", "HEAD"])
    def subscribe_page() -> HTMLResponse:
        return subscribe_form()

    @app.post("/subscribe")
    def subscribe(request: Request, fields: Fields, background: BackgroundTasks) -> Response:
        wait = signups.hit(_client(request), now_of().timestamp())
        if wait:
            response = pages.message(
                "Too many sign-ups",
                "This network has signed up too often in the last hour. Please try again later.",
                status_code=429,
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        if _text(fields, "website"):
            # A bot filled the hidden field: answer as for anyone, and do nothing.
            return check_inbox()
        email, name = _text(fields, "email"), _text(fields, "name")
        digests, sections = _texts(fields, "digest"), _texts(fields, "section")
        try:
            outcome = service.signup(
                store,
                settings,
                email=email,
                name=name,
                sections=sections,
                digests=digests,
                now=now_of(),
            )
        except service.AudienceError as e:
            return subscribe_form(
                error=e.message,
                email=email,
                name=name,
                ticked=(set(digests), set(sections)),
                status_code=400,
            )
        if outcome.send_confirmation:
            background.add_task(send_confirmation, outcome.subscriber.id)
        return check_inbox()

    # Confirmation ---------------------------------------------------------------------------
    def confirm_page(sub: Subscriber) -> HTMLResponse:
        done = sub.status is S.ACTIVE
        return pages.render(
            "confirm",
            title="You are subscribed" if done else "Confirm your subscription",
            email=sub.email,
            what=what,
            state="done" if done else "ask",
            preferences_url=preferences_url(
                settings, make_token(settings.signing_key, sub.link_id, "preferences")
            ),
        )

    @app.api_route("/confirm/{token}", methods=["GET", "HEAD"])
    def confirm_form(token: str) -> HTMLResponse:
        sub = subscriber_of(token, "confirm")
        return invalid_link("confirm") if sub is None else confirm_page(sub)

    @app.post("/confirm/{token}")
    def confirm(token: str) -> HTMLResponse:
        found = read_token_of(token, "confirm")
        if found is None:
            return invalid_link("confirm")
        sub, version = found
        changed = service.confirm(store, sub.id, now=now_of(), version=version)
        now_sub = store.subscriber(sub.id) or sub
        if not changed and now_sub.status is not SubscriberStatus.ACTIVE:
            # A link from before the address last changed (it left, or complained, since).
            return invalid_link("confirm")
        return confirm_page(now_sub)

    # Web version of an edition ("View in browser") ------------------------------------------
    not_found = nothing_here

    @app.api_route("/v/{edition_id}", methods=["GET", "HEAD"])
    def web_version(edition_id: str, s: str | None = None) -> HTMLResponse:
        """The edition as its subscribers got it, for the sections ``s`` (comma-separated keys;
        none: all), with the personal links pointing to the sign-up page and the neutral
        greeting. Only editions that went out; anything else is a 404, drafts included."""
        if len(edition_id) > MAX_TOKEN or len(s or "") > MAX_VIEW_SECTIONS:
            return not_found()
        edition = store.edition(edition_id)
        if (
            edition is None
            or edition.status not in PUBLIC_EDITION
            or edition.digest not in settings.digests
        ):
            return not_found()
        asked: frozenset[str] | None = None
        if s:
            asked = frozenset(k for k in s.split(",") if k)
            if not asked <= {section.key for section in edition.sections}:
                return not_found()
        keys = view_sections(edition, asked)
        page = web_versions.get((edition.id, keys))
        if page is None:
            variant = render_variant(
                edition,
                settings,
                sections=None if keys is None else frozenset(keys),
                view_link=False,
            )
            page, _ = personalise.personalise(
                variant, unsubscribe_url=subscribe_url, preferences_url=subscribe_url, name=""
            )
            web_versions.put((edition.id, keys), page)
        return HTMLResponse(page, headers=VIEW_HEADERS)

    return app


_TOKEN_PATH = re.compile(r"^/(u|p|confirm)/[^/?\s]+")


class RedactTokens(logging.Filter):
    """Keeps link tokens out of the access log: anyone who can read a token can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _TOKEN_PATH.sub(r"/\1/…", args[2]), *args[3:])
        return True


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def serve(settings: Settings, *, host: str, port: int, approver: Approver | None = None) -> None:
    """Run the web app with uvicorn until interrupted. Behind a reverse proxy on the same
    host, uvicorn takes the client's address from X-Forwarded-For (the sign-up limit counts
    per address). ``approver`` resumes a paused edition run (see ``create_app``)."""
    if not settings.secret_key.get_secret_value() and host not in LOOPBACK:
        # Links would be signed with the public development key: anyone could forge them.
        raise PermanentError(
            "web: DIGEST__SECRET_KEY is not set; without it the app serves only on loopback "
            f"(127.0.0.1, ::1), not on {host}"
        )
    import uvicorn

    store = open_store(settings)
    try:
        config = uvicorn.Config(
            create_app(settings, store, approver=approver, editors_on_loopback=host in LOOPBACK),
            host=host,
            port=port,
            proxy_headers=True,
            server_header=False,
            log_level="info",
        )
        # After the Config: it sets up uvicorn's loggers.
        logging.getLogger("uvicorn.access").addFilter(RedactTokens())
        uvicorn.Server(config).run()
    finally:
        store.close()
