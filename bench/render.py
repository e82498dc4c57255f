"""Complete personalised MIME messages per second for an ~80 KB edition and 100,000 recipients.

Ours: the delivery path's way, one ``MessageTemplate`` compiled for the variant, then per
recipient two signed tokens (unsubscribe, preferences) and ``template.render``. Baseline, in the
same run: the same messages built one by one with ``email.message.EmailMessage``
(``build_message``, the reference) on a sample of recipients. Recipients are generated lazily
and every message is dropped once its bytes are counted, so peak memory must not grow with the
number of recipients: RSS is reported after 10,000 and after 100,000 of them.

Per-subscriber click analytics, in the same run: the edition with click tracking on (every
article link a signed redirect), messages built as the delivery path builds them with
``analytics.per_subscriber`` off and on (on: one HMAC per recipient, its reader part in every
click link); ``per_subscriber_ratio`` is on / off.

Single-threaded: one core. Prints medians of 3 runs; the last line is one JSON object.
Run: ``.venv/bin/python bench/render.py`` (``--recipients N`` for a shorter run).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.audience.tokens import make_token, preferences_url, token_maker, unsubscribe_url
from digest.compose.editions import compose_edition
from digest.config import Settings, load_settings
from digest.gather.feeds import parse_feed
from digest.gather.sections import in_section
from digest.models import Edition, OutgoingMessage, RenderedVariant, Subscriber, SubscriberStatus
from digest.render.clicks import reader_part
from digest.render.email import render_variant
from digest.render.fastmime import compile_message
from digest.render.mime import build_message
from digest.render.personalise import personalise

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
TARGET_HTML = 80_000
RUNS = 3

# Own sentences, long enough to make teasers of realistic length.
_PARAGRAPH = (
    "Delegations met again on Tuesday after a winter of silence, and both sides described the "
    "first session as “workmanlike” — a word diplomats reserve for talks that neither collapse "
    "nor move. The agenda, agreed only the night before, puts prisoner exchanges ahead of the "
    "harder questions about borders and guarantees, which officials say will wait for spring. "
)
_FIRST = ("Zoë", "Ángel", "Mei", "Olusegun", "Siobhán", "Jürgen", "Priya", "Lars", "Ana", "Tom")
_LAST = ("Ångström", "O'Neill", "García-López", "Nakamura", "Smith", "Øvergaard", "Dubois")


def edition_and_settings() -> tuple[Edition, Settings]:
    """The example publication's edition from its sample feeds, each teaser given longer
    paragraphs until the compiled HTML is about 80 KB (under the 90 KB budget)."""
    settings = load_settings(ROOT / "config" / "example.toml", environ={})
    candidates = {}
    for key, section in settings.sections.items():
        articles = []
        for src in section.sources:
            path = settings.resolve(settings.sources[src].path)
            feed = parse_feed(path.read_bytes(), source=src, url=path.as_uri(), now=NOW)
            articles += feed.articles
        candidates[key] = [a for a in articles if in_section(a, section)]
    edition = compose_edition(
        candidates, history=set(), settings=settings, digest_key="weekly", now=NOW
    )

    def padded(words: int) -> Edition:
        text = (_PARAGRAPH * 8).split(" ")[:words]
        sections = tuple(
            s.model_copy(
                update={
                    "teasers": tuple(
                        t.model_copy(
                            update={"paragraphs": (*t.paragraphs[:1], " ".join(text)), "full": True}
                        )
                        for t in s.teasers
                    )
                }
            )
            for s in edition.sections
        )
        return edition.model_copy(update={"sections": sections})

    lo, hi = 0, 400
    while lo < hi:  # the most words per teaser that keep the HTML at most TARGET_HTML
        mid = (lo + hi + 1) // 2
        if len(render_variant(padded(mid), settings).html.encode()) <= TARGET_HTML:
            lo = mid
        else:
            hi = mid - 1
    return padded(lo), settings


def recipients(n: int) -> Iterator[Subscriber]:
    """``n`` subscribers made on demand; about one name in three is non-ASCII.

    They are the input, not the work measured: built without validation, as trusted rows
    would be (validating each costs about 3 µs, a sixth of building its message).
    """
    for i in range(1, n + 1):
        name = f"{_FIRST[i % len(_FIRST)]} {_LAST[i % len(_LAST)]}" if i % 5 else ""
        yield Subscriber.model_construct(
            id=100_000 + i,
            email=f"reader{i}@example.org",
            name=name,
            sections=None,
            status=SubscriberStatus.ACTIVE,
        )


def rss_mb() -> float:
    """Peak resident set size so far, in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if platform.system() == "Darwin" else 1024)


def run(
    build: Callable[[Subscriber], OutgoingMessage], n: int, checkpoints: tuple[int, ...] = ()
) -> tuple[float, int, dict[int, float]]:
    """(messages per second, bytes built, peak RSS at each checkpoint)."""
    total = 0
    rss: dict[int, float] = {}
    start = time.perf_counter()
    for i, subscriber in enumerate(recipients(n), 1):
        total += len(build(subscriber).raw)
        if i in checkpoints:
            rss[i] = rss_mb()
    return n / (time.perf_counter() - start), total, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--baseline-sample", type=int, default=500)
    args = parser.parse_args()

    edition, settings = edition_and_settings()
    variant = render_variant(edition, settings)
    key = settings.signing_key
    unsub_token, prefs_token = token_maker(key, "unsubscribe"), token_maker(key, "preferences")

    def messages(
        rendered: RenderedVariant, with_settings: Settings, per_subscriber: bool = False
    ) -> Callable[[], Callable[[Subscriber], OutgoingMessage]]:
        """The delivery path's way for ``rendered``: each call compiles its template afresh
        and gives the per-recipient builder (with the reader's part of each click link when
        ``per_subscriber``)."""

        def factory() -> Callable[[Subscriber], OutgoingMessage]:
            template = compile_message(
                rendered.html, rendered.text, edition=edition, settings=with_settings, now=NOW
            )

            def build(s: Subscriber) -> OutgoingMessage:
                return template.render(
                    subscriber=s,
                    unsubscribe_url=unsubscribe_url(settings, unsub_token(s.id)),
                    preferences_url=preferences_url(settings, prefs_token(s.id)),
                    key=f"{edition.id}.{s.id}",
                    reader=reader_part(key, edition.id, s.id) if per_subscriber else "",
                )

            return build

        return factory

    ours_factory = messages(variant, settings)

    def baseline(s: Subscriber) -> OutgoingMessage:
        unsub = unsubscribe_url(settings, make_token(key, s.id, "unsubscribe"))
        prefs = preferences_url(settings, make_token(key, s.id, "preferences"))
        html, text = personalise(variant, unsubscribe_url=unsub, preferences_url=prefs, name=s.name)
        return build_message(
            html,
            text,
            edition=edition,
            subscriber=s,
            settings=settings,
            unsubscribe_url=unsub,
            now=NOW,
            key=f"{edition.id}.{s.id}",
        )

    # The same message either way (the boundary aside): same bodies and headers.
    probe = next(recipients(2))
    a, b = ours_factory()(probe), baseline(probe)
    assert (a.html, a.text, a.headers) == (b.html, b.text, b.headers)

    def clicks_factory(on: bool) -> Callable[[], Callable[[Subscriber], OutgoingMessage]]:
        """Messages of the edition with click tracking, per-subscriber links ``on`` or off."""
        digest = settings.digests["weekly"].model_copy(
            update={"click_tracking": True, "per_subscriber_clicks": on}
        )
        with_clicks = settings.model_copy(
            update={
                "digests": {**settings.digests, "weekly": digest},
                # Redirect links are longer than the articles' own: not this budget's concern.
                "render": settings.render.model_copy(update={"max_html_bytes": 1_000_000}),
            }
        )
        return messages(render_variant(edition, with_clicks), with_clicks, on)

    clicks_off, clicks_on = clicks_factory(False), clicks_factory(True)
    assert "/c/" in clicks_on()(probe).text and str(probe.id) not in clicks_off()(probe).text

    n = args.recipients
    checkpoints = (min(10_000, n), n)
    fast_runs, base_runs, rss_runs, off_runs, on_runs = [], [], [], [], []
    for _ in range(RUNS):
        rate, size, rss = run(ours_factory(), n, checkpoints)
        fast_runs.append(rate)
        rss_runs.append(rss)
        base_runs.append(run(baseline, args.baseline_sample)[0])
        off_runs.append(run(clicks_off(), n)[0])
        on_runs.append(run(clicks_on(), n)[0])
        print(
            f"  run: {rate:,.0f} msgs/s ({size / n / 1024:.1f} KB each), "
            f"baseline {base_runs[-1]:,.0f} msgs/s, with click links "
            f"{off_runs[-1]:,.0f} msgs/s, per subscriber {on_runs[-1]:,.0f} msgs/s, peak RSS "
            + ", ".join(f"{v:.1f} MB after {k:,}" for k, v in rss.items()),
            flush=True,
        )
    fast, base = statistics.median(fast_runs), statistics.median(base_runs)
    off, on = statistics.median(off_runs), statistics.median(on_runs)
    # The first run's checkpoints: later runs only ever see the peak so far.
    rss_first = rss_runs[0]
    result = {
        "benchmark": "render_personalised_mime",
        "recipients": n,
        "html_bytes": len(variant.html.encode()),
        "text_bytes": len(variant.text.encode()),
        "message_bytes": len(a.raw),
        "messages_per_s": round(fast),
        "baseline_emailmessage_per_s": round(base, 1),
        "baseline_sample": args.baseline_sample,
        "ratio": round(fast / base, 1),
        "rss_mb_after_10k": round(rss_first[checkpoints[0]], 1),
        "rss_mb_after_all": round(rss_first[n], 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "runs": RUNS,
        "target_messages_per_s": 50_000,
        "clicks_per_subscriber_off_per_s": round(off),
        "clicks_per_subscriber_on_per_s": round(on),
        "per_subscriber_ratio": round(on / off, 3),
    }
    print(
        f"{len(variant.html.encode()) / 1000:.1f} KB HTML: {fast:,.0f} messages/s "
        f"(EmailMessage: {base:,.0f}/s, {fast / base:,.0f}x), peak RSS {rss_mb():.1f} MB; "
        f"with click links {off:,.0f}/s, per subscriber {on:,.0f}/s ({on / off:.2f}x)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
