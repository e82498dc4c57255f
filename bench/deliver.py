"""Delivery over SMTP at 4 sessions against Postfix's smtp-sink, next to Postfix's smtp-source.

In the same run, against the same ``smtp-sink`` on 127.0.0.1:

- baseline: ``smtp-source -s 4 -d -l 81920 -m 20000`` (4 sessions, connections reused, 80 KB
  messages of filler), the wire's practical limit on this machine;
- ours: the deliver stage sending an ~80 KB edition to 20,000 subscribers over 4 sessions
  (``delivery.sessions = 4``, each a worker process with its own SMTP connection), every
  message personalised (signed unsubscribe and preference links, greeting, To, Message-ID),
  with the ledger written first, claimed batch by batch and every answer recorded and
  journaled: ``prepare_delivery`` + ``deliver`` + ``finish_delivery``, timed together.

Runs alternate (source, ours, source, ours, …) so both see the same machine; medians of 3.
Memory: the peak resident set of the run's own process and of each process under it (the fork
server and the workers it forks, the resource tracker), and the peak of their proportional set
sizes added up (shared pages counted once), sampled from /proc (every 50 ms, the sum every 500 ms).

Needs ``smtp-sink`` and ``smtp-source`` (Debian: ``apt-get install postfix``; the Postfix
daemon itself is not needed and should not be left running). Run:
``.venv/bin/python bench/deliver.py`` (``--recipients N`` for a shorter run; ``--postgres``
for the store on a throwaway PostgreSQL server instead of SQLite).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The project is imported inside ``ours``: worker processes start by importing this file, and
# should pay only for what a worker of a real run imports.

from bench.support import SESSIONS, TreeRss, free_port, smtp_source, start_sink, store_urls

RUNS = 3
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def ours(
    port: int, recipients: int, rss: TreeRss, store_url: str
) -> tuple[float, dict[str, int], float]:
    """Our delivery's messages per second, the ledger's counts, and the edition's HTML size."""
    from bench.render import edition_and_settings
    from digest.config import parse_settings
    from digest.gather.feeds import parse_feed
    from digest.models import NewSubscriber
    from digest.render.variants import render_variants
    from digest.steps.compose import approve
    from digest.steps.deliver import deliver
    from digest.steps.ledger import delivery_lock, finish_delivery, prepare_delivery
    from digest.store import Store

    edition, example = edition_and_settings()
    with tempfile.TemporaryDirectory(prefix="digest-bench-deliver-") as tmp:
        data = example.model_dump(mode="json", exclude={"base_dir"})
        data["data_dir"] = tmp
        data["store"] = {"url": store_url}
        data["delivery"] = {
            "provider": "smtp",
            "sessions": SESSIONS,
            "batch_size": 500,
            "retry": {"wait": 0},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 30},
        }
        for source in data["sources"].values():
            if source.get("path"):
                source["path"] = str(example.resolve(source["path"]))
        settings = parse_settings(data, environ={"DIGEST__SECRET_KEY": "bench-signing-key"})
        store = Store.open(settings.database_url)
        for key, source in settings.sources.items():  # the articles the edition's items name
            path = settings.resolve(source.path)
            feed = parse_feed(path.read_bytes(), source=key, url=path.as_uri(), now=NOW)
            store.save_articles(feed.articles, now=NOW)
        store.save_edition(edition, now=NOW)
        people = [NewSubscriber(email=f"reader{i}@example.org") for i in range(recipients)]
        store.import_subscribers(people, now=NOW)
        edition = approve(store, edition, now=NOW)
        variants = render_variants(settings, edition, store.section_choices())
        html = len(variants[None].html.encode())
        now = NOW + timedelta(minutes=1)
        with rss, delivery_lock(store, edition) as owner:
            started = time.perf_counter()
            prepare_delivery(settings, store, edition, now=now)
            deliver(settings, store, edition, variants, now=now, owner=owner)
            counts = finish_delivery(store, edition, now=now)
            elapsed = time.perf_counter() - started
        store.close()
    return counts["submitted"] / elapsed, counts, html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the store on a throwaway PostgreSQL server (tests/postgres.py), not SQLite",
    )
    args = parser.parse_args()
    kind = "postgresql" if args.postgres else "sqlite"
    with (
        tempfile.TemporaryDirectory(prefix="digest-bench-deliver-") as work,
        store_urls(kind, Path(work)) as url_for,
    ):
        run_all(args, kind, url_for)


def run_all(args: argparse.Namespace, kind: str, url_for: Callable[[int], str]) -> None:
    n = args.recipients
    port = free_port()
    sink = start_sink(port)
    source_rates, our_rates = [], []
    main_rss = worker_rss = total_rss = 0
    try:
        for run in range(1, args.runs + 1):
            source_rates.append(smtp_source(port, n))
            rss = TreeRss()
            rate, counts, html = ours(port, n, rss, url_for(run))
            if counts["submitted"] != n:
                sys.exit(f"run {run}: {counts['submitted']} of {n} submitted: {counts}")
            our_rates.append(rate)
            main_rss = max(main_rss, rss.main)
            worker_rss = max(worker_rss, rss.worker)
            total_rss = max(total_rss, rss.total)
            print(
                f"run {run}: smtp-source {source_rates[-1]:,.0f}/s, ours {rate:,.0f}/s "
                f"(HTML {html / 1000:.1f} KB; run process {rss.main / 1024:.0f} MB, "
                f"largest worker {rss.worker / 1024:.0f} MB, all {rss.total / 1024:.0f} MB)",
                flush=True,
            )
    finally:
        sink.terminate()
        sink.wait()
    source = statistics.median(source_rates)
    mine = statistics.median(our_rates)
    peak = max(main_rss, worker_rss) / 1024
    print(
        f"medians of {args.runs}: smtp-source {source:,.0f} messages/s, "
        f"ours {mine:,.0f} messages/s, "
        f"ratio {mine / source:.2f} (target >= 0.6); peak RSS of any one process {peak:.0f} MB "
        f"(target < 250), of all together {total_rss / 1024:.0f} MB"
    )
    print(
        json.dumps(
            {
                "benchmark": "deliver",
                "recipients": n,
                "sessions": SESSIONS,
                "store": kind,
                "messages_per_s": round(mine, 1),
                "smtp_source_per_s": round(source, 1),
                "ratio": round(mine / source, 3),
                "target_ratio": 0.6,
                "peak_rss_mb": round(peak, 1),
                "run_process_rss_mb": round(main_rss / 1024, 1),
                "largest_worker_rss_mb": round(worker_rss / 1024, 1),
                "all_processes_rss_mb": round(total_rss / 1024, 1),
                "runs": {"ours": [round(r, 1) for r in our_rates], "smtp_source": source_rates},
            }
        )
    )


if __name__ == "__main__":
    main()
