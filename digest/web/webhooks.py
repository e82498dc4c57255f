"""The providers' webhook routes: ``POST /webhooks/sendgrid``, ``/webhooks/postmark`` and
``/webhooks/mailgun``.

Each route reads the raw body (a signature covers the bytes as sent, so the body is never
parsed before it is checked), takes ``settings``, ``store`` and ``clock`` from ``app.state`` and
hands them to the handler in :mod:`digest.audience.webhooks`, in a worker thread (the store is
synchronous). Answers:

- 200 ``{"received", "applied", "duplicates", "ignored"}``: the events were taken (a redelivery
  is a 200 too, counted as duplicates, so the provider stops retrying it);
- 401 ``{"error"}``: not signed, wrongly signed, too old, a replayed token, wrong credentials,
  or the provider's secret is not configured;
- 400 ``{"error"}``: the body is not the provider's JSON;
- 413 ``{"error"}``: a body over 5 MB (checked on ``Content-Length`` and while reading);
- 503 ``{"error"}``: the database is unreachable for now; providers retry on any non-2xx.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digest.audience.webhooks import (
    WebhookRefused,
    WebhookResult,
    handle_mailgun,
    handle_postmark,
    handle_sendgrid,
)
from digest.errors import TransientError
from digest.web.hardening import TooLarge

Handler = Callable[..., WebhookResult]

MAX_BODY = 5_000_000  # bytes; SendGrid batches events, but never near this

router = APIRouter(tags=["webhooks"])


async def _body(request: Request) -> bytes:
    """The raw body, refused (``TooLarge``) as soon as it passes MAX_BODY."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _run(request: Request, handler: Handler) -> JSONResponse:
    try:
        body = await _body(request)
    except TooLarge:
        return JSONResponse({"error": f"body over {MAX_BODY:,} bytes"}, status_code=413)
    state = request.app.state
    now: datetime = state.clock()
    headers = dict(request.headers.items())
    try:
        result = await run_in_threadpool(
            handler, state.settings, state.store, body, headers, now=now
        )
    except WebhookRefused as e:
        return JSONResponse({"error": e.message}, status_code=e.status)
    except TransientError:
        return JSONResponse({"error": "temporarily unavailable; try again"}, status_code=503)
    return JSONResponse(result.as_dict())


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request) -> JSONResponse:
    """SendGrid's signed Event Webhook (a JSON array of events)."""
    return await _run(request, handle_sendgrid)


@router.post("/webhooks/postmark")
async def postmark_events(request: Request) -> JSONResponse:
    """Postmark's bounce, spam-complaint and subscription-change webhooks (basic auth)."""
    return await _run(request, handle_postmark)


@router.post("/webhooks/mailgun")
async def mailgun_events(request: Request) -> JSONResponse:
    """Mailgun's signed JSON webhooks (failed, complained, unsubscribed, …)."""
    return await _run(request, handle_mailgun)
