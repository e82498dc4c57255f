"""The safe fetch: one HTTP(S) GET of an untrusted feed or page, with every guard applied.

This module owns the network side of gathering. It turns a URL (and the validators of the last
fetch) into bytes or a typed error, and nothing else: no parsing, no retries (orchestration
retries what ``TransientFetchError`` marks as retryable), no storage.

Guards, in the order a fetch meets them:

* only ``http`` and ``https``, on the first URL and on every redirect hop;
* the host is resolved with the injected resolver and refused unless every address is global
  (no loopback, private, link-local, reserved, multicast or unspecified address, including
  IPv4-mapped IPv6 forms), unless the source is explicitly ``allow_private``, and then only
  for the exact origin (scheme, host, port) of the URL asked for: a redirect hop elsewhere is
  checked as a public fetch;
* the connection is pinned to the address that was checked (see ``_PinnedAdapter``), so a DNS
  answer that changes between the check and the connect (DNS rebinding) cannot steer us to an
  internal address;
* redirects are followed by hand, at most ``max_redirects`` hops;
* connect and read timeouts per socket operation, plus a total deadline checked while streaming;
* the *decoded* body is capped at ``max_bytes`` while streaming, so a gzip bomb stops at the cap.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from digest.config import HttpSettings
from digest.errors import PermanentFetchError, TransientFetchError

__all__ = [
    "FEED_ACCEPT",
    "FetchResult",
    "Fetcher",
    "TransientHttpError",
    "origin",
    "read_file",
]

# Feeds first (JSON Feed too), then anything XML- or JSON-ish, then whatever the server has
# (some serve feeds as text/html or text/plain).
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, "
    "application/json;q=0.8, */*;q=0.5"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

Resolver = Callable[..., list[Any]]


@dataclass(frozen=True)
class FetchResult:
    """What a fetch produced. ``status`` is 304 (not modified, empty body) or a 2xx code."""

    url: str  # final URL after redirects
    status: int
    body: bytes
    etag: str | None
    last_modified: str | None
    content_type: str | None


class TransientHttpError(TransientFetchError):
    """A transient fetch failure with what a scheduler needs to wait sensibly.

    ``status`` is the HTTP status (None for connection errors and timeouts); ``retry_after`` is
    the server's Retry-After in seconds when it sent one (429, 503).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        reason: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, reason=reason or f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class _PinnedAdapter(HTTPAdapter):
    """Keeps TLS honest when a request goes to an IP literal pinned in place of the host name.

    ``Fetcher`` rewrites ``https://example.org/feed`` to ``https://203.0.113.5/feed`` with
    ``Host: example.org`` so the socket goes to the address that passed the check. Here we put
    the name back where TLS needs it: SNI (``server_hostname``) and certificate verification
    (``assert_hostname``). Pools are keyed on these too, so two names on one IP never share a
    TLS connection.
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, base_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pool_kwargs: dict[str, Any] = dict(base_kwargs)
        host_header = request.headers.get("Host")
        if host_params.get("scheme") == "https" and host_header:
            name = _strip_port(host_header)
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


class Fetcher:
    """Fetches URLs under the guards above. Not thread-safe (neither is a requests Session).

    ``resolver`` has the signature of ``socket.getaddrinfo``; tests inject a stub so that the
    address checks run without DNS. ``session`` may be injected (e.g. with a custom CA bundle);
    the pinning adapter is mounted on it either way, and environment proxies are ignored
    because a proxy would make the address check meaningless.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        resolver: Resolver = socket.getaddrinfo,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._resolver = resolver
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        # No proxies or .netrc from the environment: the request must go where we checked.
        self._session.trust_env = False
        adapter = _PinnedAdapter(max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    # Context manager -------------------------------------------------------------------------
    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections (the session too, when we created it)."""
        if self._owns_session:
            self._session.close()

    # The fetch -------------------------------------------------------------------------------
    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_private: bool = False,
    ) -> FetchResult:
        """GET ``url`` conditionally; return the body (2xx) or an empty 304 result.

        ``allow_private`` lets ``url``'s own origin (scheme, host and port, see :func:`origin`)
        resolve to a private or loopback address (a source marked ``local``); a redirect hop to
        any other origin is checked as a public fetch, so a local service cannot bounce the
        fetch to another port or host of the private network.

        Raises ``TransientHttpError`` (a ``TransientFetchError``) for connection errors,
        timeouts, 408, 429 and 5xx, and ``PermanentFetchError`` for other 4xx, refused schemes
        or addresses, too many redirects and bodies over the cap. Messages start with the URL.
        """
        s = self.settings
        deadline = time.monotonic() + s.total_timeout
        current = url
        licensed = origin(url) if allow_private else None
        hops = 0
        while True:
            target = self._check(current, licensed is not None, licensed=licensed)
            response = self._send(current, target, deadline, etag, last_modified)
            with response:
                status = response.status_code
                if status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise PermanentFetchError(
                            f"{current}: HTTP {status} without Location",
                            url=current,
                            reason="redirect without Location",
                        )
                    hops += 1
                    if hops > s.max_redirects:
                        raise PermanentFetchError(
                            f"{url}: too many redirects (more than {s.max_redirects}), "
                            f"last to {urljoin(current, location)}",
                            url=url,
                            reason="too many redirects",
                        )
                    current = urljoin(current, location.strip())
                    continue
                if status == 304:
                    return FetchResult(
                        url=current,
                        status=304,
                        body=b"",
                        etag=response.headers.get("ETag") or etag,
                        last_modified=response.headers.get("Last-Modified") or last_modified,
                        content_type=response.headers.get("Content-Type"),
                    )
                _raise_for_status(current, response)
                body = self._read_body(current, response, deadline)
                return FetchResult(
                    url=current,
                    status=status,
                    body=body,
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                    content_type=response.headers.get("Content-Type"),
                )

    # Steps ------------------------------------------------------------------------------------
    def _check(self, url: str, allow_private: bool, *, licensed: Origin | None = None) -> _Target:
        """Refuse what we must not fetch; return where to connect (the checked address).

        With ``licensed`` given, ``allow_private`` holds for that origin only."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise PermanentFetchError(
                f"{url}: not a valid URL ({e})", url=url, reason="invalid URL"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise PermanentFetchError(
                f"{url}: scheme {scheme or '(none)'!r} refused; only http and https are fetched",
                url=url,
                reason="scheme refused",
            )
        host = parts.hostname
        if not host:
            raise PermanentFetchError(f"{url}: no host in URL", url=url, reason="invalid URL")
        try:
            ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            raise PermanentFetchError(
                f"{url}: host {host!r} cannot be encoded", url=url, reason="invalid URL"
            ) from None
        port = port or (443 if scheme == "https" else 80)
        try:
            infos = self._resolver(ascii_host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            # Usually a resolver hiccup or a domain that lapsed; both may pass.
            raise TransientHttpError(
                f"{url}: cannot resolve {ascii_host!r} ({e})", url=url, reason="cannot resolve host"
            ) from None
        addresses = []
        for info in infos:
            raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
            try:
                addresses.append(ipaddress.ip_address(raw))
            except ValueError:
                raise PermanentFetchError(
                    f"{url}: resolver returned a non-address {raw!r}",
                    url=url,
                    reason="cannot resolve host",
                ) from None
        if not addresses:
            raise TransientHttpError(
                f"{url}: {ascii_host!r} resolved to no address",
                url=url,
                reason="cannot resolve host",
            )
        off_origin = licensed is not None and (scheme, ascii_host.lower(), port) != licensed
        if not allow_private or off_origin:
            # Every address must be global: a client may connect to any of them.
            for address in addresses:
                reason = refusal_reason(address)
                if reason and off_origin and licensed is not None:
                    raise PermanentFetchError(
                        f"{url}: address {address} of {ascii_host!r} refused ({reason}); "
                        f"a `local` source may reach its own origin ({_origin_text(licensed)}) "
                        "only",
                        url=url,
                        reason="address refused",
                    )
                if reason:
                    raise PermanentFetchError(
                        f"{url}: address {address} of {ascii_host!r} refused ({reason}); "
                        "mark the source `local` to allow it",
                        url=url,
                        reason="address refused",
                    )
        return _Target(
            scheme=scheme,
            host=ascii_host,
            port=port,
            default_port=parts.port is None,
            address=addresses[0],
        )

    def _send(
        self,
        url: str,
        target: _Target,
        deadline: float,
        etag: str | None,
        last_modified: str | None,
    ) -> requests.Response:
        s = self.settings
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientHttpError(
                f"{url}: total deadline of {s.total_timeout:g} s exceeded",
                url=url,
                reason="timed out",
            )
        headers = {
            "User-Agent": s.user_agent,
            "Accept": FEED_ACCEPT,
            "Accept-Encoding": "gzip",
            "Host": target.host_header,
        }
        # Validators go on every hop: after a permanent redirect they describe the same feed.
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            return self._session.get(
                target.pinned_url(url),
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(min(s.connect_timeout, remaining), min(s.read_timeout, remaining)),
            )
        except requests.exceptions.Timeout as e:
            raise TransientHttpError(
                f"{url}: timed out ({_short(e)})", url=url, reason="timed out"
            ) from None
        except requests.exceptions.SSLError as e:
            # A certificate that does not match is not going to fix itself in a minute.
            raise PermanentFetchError(
                f"{url}: TLS error ({_short(e)})", url=url, reason="TLS error"
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as e:
            raise PermanentFetchError(
                f"{url}: invalid URL ({_short(e)})", url=url, reason="invalid URL"
            ) from None
        except requests.exceptions.RequestException as e:
            raise TransientHttpError(
                f"{url}: connection failed ({_short(e)})", url=url, reason="connection failed"
            ) from None

    def _read_body(self, url: str, response: requests.Response, deadline: float) -> bytes:
        s = self.settings
        cap = s.max_bytes
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if not encoded and declared.isdigit() and int(declared) > cap:
            raise PermanentFetchError(
                f"{url}: body of {int(declared)} bytes exceeds the cap of {cap} bytes",
                url=url,
                reason="too big",
            )
        chunks: list[bytes] = []
        size = 0
        try:
            # We count (and cap) the bytes after gzip, not before.
            for chunk in _stream(response):
                size += len(chunk)
                if size > cap:
                    raise PermanentFetchError(
                        f"{url}: decoded body exceeds the cap of {cap} bytes",
                        url=url,
                        reason="too big",
                    )
                if time.monotonic() > deadline:
                    raise TransientHttpError(
                        f"{url}: total deadline of {s.total_timeout:g} s exceeded while reading",
                        url=url,
                        reason="timed out",
                    )
                chunks.append(chunk)
        except urllib3.exceptions.DecodeError as e:
            raise PermanentFetchError(
                f"{url}: body cannot be decoded ({_short(e)})", url=url, reason="undecodable body"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            # Read timeouts, resets and truncated bodies: all worth another try.
            raise TransientHttpError(
                f"{url}: reading the body failed ({_short(e)})", url=url, reason="connection failed"
            ) from None
        return b"".join(chunks)


@dataclass(frozen=True)
class _Target:
    """Where one hop goes: the checked address, and the name for Host and TLS."""

    scheme: str
    host: str
    port: int
    default_port: bool
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def host_header(self) -> str:
        return self.host if self.default_port else f"{self.host}:{self.port}"

    def pinned_url(self, url: str) -> str:
        """``url`` with the host replaced by the checked address (the rest untouched)."""
        parts = urlsplit(url)
        ip = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        # Userinfo is dropped on purpose: feed URLs with credentials are not supported.
        return urlunsplit((self.scheme, f"{ip}:{self.port}", parts.path or "/", parts.query, ""))


Origin = tuple[str, str, int]


def page_url(url: str, param: str, page: int) -> str:
    """``url`` with its page parameter set to ``page`` (other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param]
    query.append((param, str(page)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def origin(url: str) -> Origin | None:
    """The origin of an http(s) URL: scheme, host (lower case, IDNA) and port (the scheme's
    default filled in); None when ``url`` is not one. Two URLs are "the same origin" exactly
    when these are equal (``http://h`` and ``http://h:80`` are; ``:8080`` and ``:8081`` are
    not)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    return scheme, ascii_host.lower(), port or (443 if scheme == "https" else 80)


def _origin_text(o: Origin) -> str:
    scheme, host, port = o
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def refusal_reason(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> str | None:
    """Why ``address`` must not be fetched without ``allow_private``, or None if it is global."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 reaches 10.0.0.1; judge the IPv4 address it carries.
        mapped = address.ipv4_mapped
        if mapped is not None:
            address = mapped
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        # Shared address space (100.64/10), 6to4/Teredo oddities and the like.
        return "not globally routable"
    return None


def read_file(path: Path, max_bytes: int) -> FetchResult:
    """Read a local feed file (a source given as ``path``) under the same size cap."""
    url = path.resolve().as_uri()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PermanentFetchError(
                f"{url}: file of {size} bytes exceeds the cap of {max_bytes} bytes"
            )
        with path.open("rb") as f:
            body = f.read(max_bytes + 1)  # the file may grow between stat and read
    except FileNotFoundError:
        raise PermanentFetchError(f"{url}: no such file") from None
    except IsADirectoryError:
        raise PermanentFetchError(f"{url}: is a directory, not a feed file") from None
    except OSError as e:
        raise PermanentFetchError(f"{url}: cannot read ({e.strerror or e})") from None
    if len(body) > max_bytes:
        raise PermanentFetchError(f"{url}: file exceeds the cap of {max_bytes} bytes")
    return FetchResult(
        url=url, status=200, body=body, etag=None, last_modified=None, content_type=None
    )


# Helpers -------------------------------------------------------------------------------------
def _stream(response: requests.Response) -> Iterator[bytes]:
    """Decoded body chunks as they arrive.

    ``read1`` returns whatever one socket read yields (decoded, at most ``_CHUNK`` bytes), so
    a body that drips in byte by byte still lets the caller check the deadline between reads;
    ``iter_content`` would block until a whole chunk had arrived.
    """
    raw = response.raw
    while True:
        chunk = raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _raise_for_status(url: str, response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in (408, 429) or 500 <= status < 600:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        extra = f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""
        raise TransientHttpError(
            f"{url}: HTTP {status}{extra}", url=url, status=status, retry_after=retry_after
        )
    raise PermanentFetchError(f"{url}: HTTP {status}", url=url, reason=f"HTTP {status}")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
