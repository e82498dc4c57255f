"""The public web app, put together: ``create_app`` builds it from the routers, ``serve`` runs it.

The routers, the one place they meet:

- ``digest.web.subscribers``: unsubscribe (RFC 8058 one-click) and preferences;
- ``digest.web.signup``: sign-up with double opt-in and its confirmation;
- ``digest.web.public``: ``/healthz`` and the web version of an edition ("View in browser");
- ``digest.web.archive``: the public archive of the editions that went out, and its Atom feeds;
- ``digest.web.editor``: the editors' pages;
- ``digest.web.webhooks``: the providers' webhooks;
- ``digest.web.clicks``: the click redirects of edition links (``/c/<token>``).

``/`` (:func:`front_door`) sends editors to their editions and everyone else to sign-up.

What they share lives outside them: ``site`` (the state built here, on ``app.state.site``),
``pages`` (templates), ``links`` (reading a link's token), ``forms`` and ``hardening`` (the
middleware that adds the security headers and caps form bodies, rate limits). Pages need no
JavaScript, a GET never changes anything (but the editors' login, which sets their session
cookie), and no cookie or login identifies a subscriber: links carry signed, expiring tokens,
one purpose each (only editors sign in, see ``editor``).

Redirects never name the request's Host (anyone can send any): they are relative paths, and a
path with a trailing slash redirects to the route without it (Starlette's own redirect, which
copies the Host, is off).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from digest.config import Settings
from digest.errors import PermanentError
from digest.factory import make_provider, open_store
from digest.steps.stats import ClickRecorder
from digest.store import Store
from digest.web.archive import router as archive_router
from digest.web.clicks import router as clicks_router
from digest.web.editor import LOGIN_PATH, Approver, EditorAccess, editor, login_router
from digest.web.editor import router as editor_router
from digest.web.hardening import Hardening, RedactTokens
from digest.web.public import WebVersions
from digest.web.public import router as public_router
from digest.web.signup import router as signup_router
from digest.web.site import Clock, ProviderFactory, Site
from digest.web.subscribers import router as subscribers_router
from digest.web.webhooks import router as webhooks_router

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    store: Store,
    *,
    clock: Clock | None = None,
    provider_factory: ProviderFactory | None = None,
    approver: Approver | None = None,
    local_editor_token: str = "",
) -> FastAPI:
    """The web app over ``store``. ``clock`` returns an aware UTC datetime (tests pass a fixed
    one); ``provider_factory`` makes the provider that sends confirmation messages (default:
    the configured one), one per message, closed after it. ``approver`` passes an editor's
    decision on an edition to the run waiting for it (``digest.web.editor``); without one the
    editor pages set the edition's status themselves. ``local_editor_token``: the editors'
    secret ``serve`` made for its process when none is configured, good only for requests from
    this machine (``digest.web.editor``); without either, the editor pages are off."""
    now_of: Clock = clock or _utc_now
    new_provider: ProviderFactory = provider_factory or (lambda: make_provider(settings))
    site = Site.build(settings, store, clock=now_of, new_provider=new_provider)

    app = FastAPI(
        title=f"{settings.publication.name} digests",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.clock = now_of
    app.state.provider_factory = new_provider
    app.state.signups = site.signups
    app.state.web_versions = WebVersions()
    app.state.pages = site.pages
    app.state.site = site
    app.state.approver = approver
    app.state.editor_access = EditorAccess.from_settings(settings, local_editor_token)
    app.state.click_recorder = ClickRecorder(settings, store)
    app.add_middleware(Hardening, csp=site.pages.csp)
    app.include_router(webhooks_router)
    app.include_router(login_router)
    app.include_router(editor_router)
    app.include_router(public_router)
    app.include_router(archive_router)
    app.include_router(subscribers_router)
    app.include_router(signup_router)
    app.include_router(clicks_router)
    app.add_api_route("/", front_door, methods=["GET", "HEAD"], include_in_schema=False)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and (without := _without_slash(app, request)) is not None:
            return RedirectResponse(without)
        # People get a page; programs (webhook senders) get FastAPI's JSON.
        if "text/html" in request.headers.get("accept", "") and exc.status_code in (404, 405):
            title = "Page not found" if exc.status_code == 404 else "Not allowed here"
            return site.nothing_here(title, exc.status_code)
        return await http_exception_handler(request, exc)

    return app


def front_door(request: Request) -> Response:
    """``/``: an editor signed in (session cookie, bearer or basic auth) goes to the editions,
    everyone else to the sign-up page. Relative, and never cached: the answer depends on who
    asks."""
    try:
        editor(request)
        where = "/editions"
    except StarletteHTTPException:
        where = "/subscribe"
    return RedirectResponse(where, status_code=303, headers={"Cache-Control": "no-store"})


def _without_slash(app: FastAPI, request: Request) -> str | None:
    """For a path that matches no route only because of trailing slashes, the route's path
    (relative: a redirect built from the Host header would send people wherever it says)."""
    path = request.url.path
    stripped = path.rstrip("/")
    if stripped == path or not stripped.startswith("/") or stripped.startswith("//"):
        return None
    scope = {**request.scope, "path": stripped}
    if not any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes):
        return None
    query = request.url.query
    return quote(stripped, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")


def editors_banner(host: str, port: int, local_token: str, *, configured: bool) -> str:
    """The line ``serve`` prints about the editor pages: with a secret made for this process,
    the URL that signs in with it (as Jupyter prints its own)."""
    name = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    base = f"http://{f'[{name}]' if ':' in name else name}:{port}"
    if configured:
        return f"Editors' pages: {base}/editions (sign in with DIGEST__WEB__EDITOR_TOKEN)"
    if local_token:
        return (
            "Editors' pages, from this machine only, until this process stops: "
            f"{base}{LOGIN_PATH}?token={local_token}"
        )
    return "Editors' pages are off: set DIGEST__WEB__EDITOR_TOKEN to use them."


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    approver: Approver | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run the web app with uvicorn until interrupted. Behind a reverse proxy on the same
    host, uvicorn takes the client's address from X-Forwarded-For (the sign-up limit counts
    per address). ``approver`` resumes a paused edition run (see ``create_app``). Without a
    configured editors' secret, on a loopback address, makes one for this process only (a
    restart makes a new one, and nothing is written to disk) and ``say``s its login URL."""
    if not settings.secret_key.get_secret_value() and host not in LOOPBACK:
        # Links would be signed with the public development key: anyone could forge them.
        raise PermanentError(
            "web: DIGEST__SECRET_KEY is not set; without it the app serves only on loopback "
            f"(127.0.0.1, ::1), not on {host}"
        )
    import uvicorn

    configured = bool(settings.web.editor_token.get_secret_value().strip())
    local_token = "" if configured or host not in LOOPBACK else secrets.token_urlsafe(32)
    store = open_store(settings)
    try:
        app = create_app(settings, store, approver=approver, local_editor_token=local_token)
        say(editors_banner(host, port, local_token, configured=configured))
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=True,
            server_header=False,
            log_level="info",
        )
        # After the Config: it sets up uvicorn's loggers.
        logging.getLogger("uvicorn.access").addFilter(RedactTokens())
        try:
            uvicorn.Server(config).run()
        finally:
            app.state.click_recorder.close()  # the clicks still queued are written
    finally:
        store.close()
