"""What the HTTP providers share: one keep-alive session, retries of what may pass, and
turning a failed request into one result per message.

A request is tried again on a connection error, a timeout, 408, 429 and 5xx, up to
``attempts`` tries, waiting by :func:`digest.delivery.retry.backoff` (the answer's
``Retry-After`` is a floor). Waits inside one request stay short (at most ``max_delay``, one
minute by default); a provider asking for longer ends the tries at once, and its hint goes back
with the transient results, for the ledger to schedule the retry. Any other answer is returned
to the provider, which reads its documented body. Redirects are not followed: an API that
redirects a POST is misconfigured.

At least once: a timeout or 5xx after the request was written may mean the provider took some
of it. Trying again may then deliver those twice; at most the one request in flight per
session is at stake (see the README's "Re-runs and crashes").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from digest.config import ApiSettings, RetrySettings
from digest.delivery.base import transient
from digest.delivery.retry import backoff, parse_retry_after
from digest.errors import PermanentDeliveryError
from digest.models import OutgoingMessage, SendResult

RETRIED = frozenset({408, 429, 500, 502, 503, 504})
REQUEST_MAX_WAIT = 60.0  # seconds one request may wait between its tries
USER_AGENT = "newsletter-digest/0.1"


class RequestFailed(Exception):
    """Every try of a request failed in a way that may pass; ``retry_after`` is the last hint."""

    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ApiClient:
    """Requests to one provider's API. ``sleep`` and ``rng`` are injectable for tests."""

    @classmethod
    def for_provider(
        cls,
        provider: str,
        settings: ApiSettings,
        retry: RetrySettings | None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> ApiClient:
        """The client every HTTP provider uses: its settings' base URL and timeout, the
        configured number of tries, waits of a second doubling up to a minute."""
        retry = retry or RetrySettings()
        return cls(
            provider,
            settings.base_url,
            timeout=settings.timeout,
            attempts=retry.request_attempts,
            base_delay=1.0,
            max_delay=min(REQUEST_MAX_WAIT, retry.max_delay),
            headers=headers,
            auth=auth,
            sleep=sleep,
            rng=rng,
        )

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeout: float,
        attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})
        self.session.auth = auth
        self.session.trust_env = False  # no proxies or .netrc picked up from the environment
        self.requests = 0  # requests written, retries included (tests and logs read it)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST ``path``; see :meth:`request`."""
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method`` on ``path``; the first answer that is not worth retrying, else
        RequestFailed.

        401 and 403 raise :class:`PermanentDeliveryError` (credentials refused: nothing was
        sent, and nothing will be until the configuration changes).
        """
        url = self.url(path)
        reason, hint, tries = "", None, 0
        for attempt in range(1, self.attempts + 1):
            tries = attempt
            self.requests += 1
            try:
                response = self.session.request(
                    method, url, timeout=self.timeout, allow_redirects=False, **kwargs
                )
            except requests.exceptions.InvalidHeader:
                # Its message quotes the header, which may be a credential: never repeat it.
                raise PermanentDeliveryError(
                    f"{self.provider} {url}: a request header is invalid (check the API key or "
                    "token for stray spaces or line breaks)"
                ) from None
            except requests.RequestException as e:
                reason, hint = f"{self.provider} {url}: {type(e).__name__}: {e}", None
            else:
                if response.status_code in (401, 403):
                    raise PermanentDeliveryError(
                        f"{self.provider} {url}: credentials refused (HTTP "
                        f"{response.status_code}): {response.text[:300]}"
                    )
                if response.status_code not in RETRIED:
                    return response
                hint = parse_retry_after(response.headers.get("Retry-After"))
                status, body = response.status_code, response.text[:300]
                reason = f"{self.provider} {url}: HTTP {status}: {body}"
            if hint is not None and hint > self.max_delay:
                break  # longer than a request may wait: the ledger schedules the retry
            if attempt < self.attempts:
                self.sleep(
                    backoff(
                        attempt,
                        base=self.base_delay,
                        cap=self.max_delay,
                        retry_after=hint,
                        rng=self.rng,
                    )
                )
        raise RequestFailed(f"{reason} (after {tries} tr{'y' if tries == 1 else 'ies'})", hint)

    def close(self) -> None:
        self.session.close()


def all_transient(
    messages: Sequence[OutgoingMessage], reason: str, retry_after: float | None = None
) -> list[SendResult]:
    """One transient result per message of a request that failed as a whole."""
    return [transient(m.key, reason, retry_after=retry_after) for m in messages]
