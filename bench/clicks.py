"""Click redirects per second on ``digest web``, with each click recorded, beside a bare static
redirect served by the same app on the same server in the same run.

The server (uvicorn, one process, as ``digest web`` runs it) serves the example publication's
edition, sent, with click tracking on and the store in SQLite. Clients on other threads of this
process, each with a keep-alive connection, alternate phases: ``/c/<token>`` (signature checked,
302, the click written after the answer) and ``/static`` (a 302 to a fixed URL, nothing else).
Every click carries its own User-Agent, so every one is a new reader and is written: the worst
case for the store. After the run the counts are checked against the clicks sent.

Prints medians of 3 runs; the last line is one JSON object. Run:
``.venv/bin/python bench/clicks.py`` (``--seconds S`` and ``--clients N`` to change the load).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from digest.config import Settings, load_settings
from digest.models import EditionAction
from digest.render.clicks import ClickTarget, click_token
from digest.store import Store

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
RUNS = 3
STATIC = "https://meridian.example.org/static-target"


def settings_in(folder: Path) -> Settings:
    env = {
        "DIGEST__DATA_DIR": str(folder),
        "DIGEST__DIGESTS__WEEKLY__CLICK_TRACKING": "true",
        "DIGEST__DELIVERY__PROVIDER": "memory",
    }
    return load_settings(ROOT / "config" / "example.toml", environ=env)


def sent_edition(settings: Settings) -> list[str]:
    """Gather the sample feeds, compose the week's edition, mark it sent a day ago; the
    click tokens of its articles."""
    from digest.factory import make_fetcher
    from digest.steps.compose import compose
    from digest.steps.gather import gather_source

    store = Store.open(settings.database_url)
    try:
        with make_fetcher(settings) as fetcher:
            for key in settings.sources:
                gather_source(settings, store, fetcher, key, now=NOW)
        edition = compose(settings, store, "weekly", now=NOW).edition
        assert edition is not None
        for action in (EditionAction.APPROVE, EditionAction.START_SENDING, EditionAction.FINISH):
            store.change_edition_status(edition.id, action, now=NOW)
        return [
            click_token(
                settings.signing_key,
                ClickTarget(f"{t.url}?utm_source=newsletter", edition.id, t.article_id, t.section),
            )
            for t in edition.teasers
        ]
    finally:
        store.close()


def serve(folder: str, sock: socket.socket) -> None:
    """The server process: the web app plus one bare static redirect, on ``sock``."""
    import logging

    import uvicorn
    from fastapi.responses import RedirectResponse

    from digest.web.app import create_app

    settings = settings_in(Path(folder))
    store = Store.open(settings.database_url)
    app = create_app(settings, store, clock=lambda: NOW + timedelta(days=1))
    app.add_api_route("/static", lambda: RedirectResponse(STATIC, status_code=302))
    logging.disable(logging.WARNING)
    uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off")).run(sockets=[sock])


def phase(url: str, paths: list[str], clients: int, seconds: float, tag: str) -> tuple[int, float]:
    """Requests answered 302 by ``clients`` threads in ``seconds``, and the elapsed time."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                r = c.get(paths[i % len(paths)], headers={"User-Agent": f"{tag}-{n}-{i}"})
                assert r.status_code == 302, r.status_code
                i += 1
            done[n] = i

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_in(Path(tmp))
        tokens = sent_edition(settings)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = multiprocessing.get_context("fork").Process(target=serve, args=(tmp, sock))
        server.start()
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/healthz", trust_env=False, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the web app did not start within 30 s") from None
                    time.sleep(0.05)
            clicks = [f"/c/{t}" for t in tokens]
            click_rates, static_rates, sent = [], [], 0
            for run in range(RUNS):
                n, took = phase(url, clicks, args.clients, args.seconds, f"run{run}")
                sent += n
                click_rates.append(n / took)
                n, took = phase(url, ["/static"], args.clients, args.seconds, "static")
                static_rates.append(n / took)
                print(
                    f"  run: {click_rates[-1]:,.0f} recorded redirects/s, "
                    f"static {static_rates[-1]:,.0f}/s",
                    flush=True,
                )
            # Every click answered has been written, once the background writes are done.
            store = Store.open(settings.database_url)
            deadline = time.monotonic() + 60
            while (counted := sum(c.clicks for c in store.click_counts(_edition(tokens)))) < sent:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            store.close()
        finally:
            server.terminate()
            server.join(10)
    rate, base = statistics.median(click_rates), statistics.median(static_rates)
    print(
        f"click redirects with recording: {rate:,.0f}/s; bare static redirect: {base:,.0f}/s "
        f"({rate / base:.2f}x); {counted} of {sent} clicks counted"
    )
    result = {
        "benchmark": "click_redirects",
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "runs": RUNS,
        "redirects_per_s_recorded": round(rate),
        "baseline_static_redirects_per_s": round(base),
        "ratio": round(rate / base, 2),
        "clicks_sent": sent,
        "clicks_counted": counted,
    }
    print(json.dumps(result))


def _edition(tokens: list[str]) -> str:
    from digest.render.clicks import read_click_token

    target = read_click_token(settings_in(Path(".")).signing_key, tokens[0])
    assert target is not None
    return target.edition_id


if __name__ == "__main__":
    main()
