"""A whole list, end to end, as a new user runs it: ``digest subscribers import`` of N subscribers,
then one edition of the bundled example publication sent with ``digest run`` (smtp provider,
4 sessions) to Postfix's ``smtp-sink`` on 127.0.0.1, on SQLite and on PostgreSQL.

In the same run, against the same sink: ``smtp-source -s 4 -d -l 81920`` (4 sessions,
connections reused, 80 KB messages), just before and just after each ``digest run``; the baseline
is their mean. Time: the command's wall time, and the target's "edition start to sent": from the
edition flow's start (composing) to its end (the edition marked sent), read from the timestamps of
the run's flow log, so the command's own start (its temporary Prefect API server) and the gathering
before are left out. Each checkpoint (``--checkpoints``, default 100,000 and N) is a fresh store,
filled from a fresh CSV. Memory: each process's own high-water mark (VmHWM from /proc, sampled
every 200 ms for every process under the command: the command, the fork server and the sending
workers, the temporary Prefect API server), shown per role; the target is about the largest and
about how it grows with the list, not about Prefect's server (a fixed cost of ``digest run``
without PREFECT_API_URL).

PostgreSQL is the throwaway server the tests start (initdb in a temporary folder, loopback only,
fsync off). Needs ``smtp-sink``/``smtp-source`` (Debian: ``apt-get install postfix``) and, for
PostgreSQL, the server binaries. Run: ``.venv/bin/python bench/scale.py --subscribers 100000``
(default 1,000,000: some 10 minutes a store on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import (  # noqa: E402
    SESSIONS,
    TreeRss,
    free_port,
    smtp_source,
    start_sink,
    store_urls,
)

CONFIG = ROOT / "config" / "example.toml"
STORES = ("sqlite", "postgresql")
TARGET_RATIO = 0.75
TARGET_RSS_MB = 250
TARGET_EDITION_S = 480
# Sections chosen, by subscriber number modulo 10: most take everything, some a part (their
# own variant), so the ledger's section filter and several variants are exercised.
CHOICES = {7: "qiosk", 8: "analysis;diplomacy-watch", 9: "analysis"}


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,sections\n")
        for i in range(n):
            f.write(f"reader{i}@example.org,Reader {i},{CHOICES.get(i % 10, '')}\n")


def digest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "digest.cli", *args, "--config", str(CONFIG)]


def environment(data_dir: Path, url: str, port: int, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST__", "PREFECT_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DO_NOT_TRACK": "1",
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DIGEST__SECRET_KEY": "bench-signing-key",
            "DIGEST__DATA_DIR": str(data_dir),
            "DIGEST__STORE__URL": url,
            "DIGEST__DELIVERY__PROVIDER": "smtp",
            "DIGEST__DELIVERY__SESSIONS": str(SESSIONS),
            "DIGEST__DELIVERY__RETRY__WAIT": "0",
            "DIGEST__DELIVERY__SMTP__HOST": "127.0.0.1",
            "DIGEST__DELIVERY__SMTP__PORT": str(port),
            "DIGEST__DELIVERY__SMTP__SECURITY": "none",
            "DIGEST__DELIVERY__SMTP__TIMEOUT": "60",
        }
    )
    return env


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[str, float, TreeRss]:
    """Run ``cmd``; its output, wall time and the memory of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # High-water marks only, five times a second: the kernel keeps each process's peak, so a
    # process seen once is measured to its last sample (only one living less than 200 ms, or
    # growth in its last 200 ms, would be missed), and the sampler takes next to nothing of
    # the machine it measures.
    with TreeRss(proc.pid, every=0.2, pss=False) as rss:
        out, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[2:5])} failed ({proc.returncode}):\n{out[-4000:]}")
    return out, wall, rss


# A line of Prefect's flow log: "12:34:56.789 | INFO    | Flow run 'edition-…' - …".
_FLOW_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+\s*\| Flow run '(edition-[^']+)' - (.*)$"
)


def edition_seconds(text: str) -> float:
    """From the edition flow's start (composing) to its end (every row answered and the
    edition marked sent), from the timestamps of the run's flow log; the issue's "edition
    start to sent", without the command's own start (its temporary Prefect server) and the
    gathering before."""
    start = end = None
    for line in text.splitlines():
        found = _FLOW_LINE.match(line.strip())
        if not found:
            continue
        hours, minutes, seconds, _, said = found.groups()
        at = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if said.startswith("Beginning") and start is None:
            start = at
        elif said.startswith("Finished in state Completed"):
            end = at
    if start is None or end is None:
        sys.exit(f"no start and end of the edition flow in the command's output:\n{text[-4000:]}")
    return (end - start) % 86_400  # past midnight


def figure(pattern: str, text: str, what: str) -> float:
    found = re.search(pattern, text)
    if not found:
        sys.exit(f"no {what} in the command's output:\n{text[-4000:]}")
    return float(found.group(1))


def checkpoint(
    store: str, n: int, url: str, work: Path, port: int, source_messages: int
) -> dict[str, Any]:
    """Import ``n`` subscribers into the empty store at ``url`` and send one edition."""
    data_dir = work / f"{store}-{n}"
    data_dir.mkdir()
    csv = data_dir / "subscribers.csv"
    write_csv(csv, n)
    env = environment(data_dir, url, port, work / "prefect")
    out, import_s, import_rss = run_measured(digest_cmd("subscribers", "import", str(csv)), env)
    added = figure(r"(\d+) added", out, "count of subscribers added")
    if added != n:
        sys.exit(f"{store}, {n}: the import added {added:.0f} of {n}:\n{out[-2000:]}")
    before = smtp_source(port, source_messages)
    out, run_s, run_rss = run_measured(digest_cmd("run"), env)
    after = smtp_source(port, source_messages)
    submitted = figure(r"Submitted\s+(\d+) in all", out, "count submitted")
    sending = figure(r"Elapsed\s+([\d.]+) s sending", out, "sending time")
    recipients = figure(r"Recipients\s+(\d+)", out, "recipient count")
    if submitted != recipients or recipients < 0.5 * n:
        sys.exit(f"{store}, {n}: {submitted:.0f} submitted of {recipients:.0f}:\n{out[-3000:]}")
    rate = submitted / sending
    source = (before + after) / 2
    result = {
        "store": store,
        "subscribers": n,
        "import_s": round(import_s, 1),
        "import_rows_per_s": round(n / import_s, 1),
        "import_peak_rss_mb": import_rss.by_role(),
        "recipients": int(recipients),
        "run_wall_s": round(run_s, 1),
        "edition_to_sent_s": round(edition_seconds(out), 1),
        "sending_s": round(sending, 1),
        "messages_per_s": round(rate, 1),
        "smtp_source_per_s": round(source, 1),
        "smtp_source_runs": [round(before, 1), round(after, 1)],
        "ratio": round(rate / source, 3),
        "run_peak_rss_mb": run_rss.by_role(),
    }
    show(result)
    return result


def show(r: dict[str, Any]) -> None:
    def mb(peaks: dict[str, float]) -> str:
        return ", ".join(f"{role} {v:.0f}" for role, v in sorted(peaks.items()))

    print(
        f"{r['store']} {r['subscribers']:,}: import {r['import_s']:.0f} s "
        f"({r['import_rows_per_s']:,.0f} rows/s; peak MB: {mb(r['import_peak_rss_mb'])}); "
        f"digest run {r['run_wall_s']:.0f} s wall, edition start to sent "
        f"{r['edition_to_sent_s']:.0f} s (target < {TARGET_EDITION_S}), "
        f"{r['recipients']:,} sent in "
        f"{r['sending_s']:.0f} s: {r['messages_per_s']:,.0f} messages/s beside smtp-source "
        f"{r['smtp_source_per_s']:,.0f}/s, ratio {r['ratio']:.2f} (target >= {TARGET_RATIO}); "
        f"peak MB: {mb(r['run_peak_rss_mb'])}",
        flush=True,
    )


def ours_peak(results: list[dict[str, Any]], key: str) -> float:
    """The largest high-water mark of our processes under ``key`` (``import_peak_rss_mb`` or
    ``run_peak_rss_mb``), the Prefect API server left out."""
    return max(v for r in results for role, v in r[key].items() if role != "prefect api server")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument(
        "--checkpoints", help="list sizes to measure at (default: 100000 and --subscribers)"
    )
    parser.add_argument(
        "--source-messages",
        type=int,
        default=50_000,
        help="messages of each smtp-source run (at most the list's size)",
    )
    args = parser.parse_args()
    n = args.subscribers
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if bad := [s for s in stores if s not in STORES]:
        sys.exit(f"--stores: unknown {', '.join(bad)} (known: {', '.join(STORES)})")
    sizes = args.checkpoints or f"{min(100_000, n)},{n}"
    checkpoints = sorted({int(c.replace("_", "")) for c in sizes.split(",") if c.strip()})
    results: list[dict[str, Any]] = []
    port = free_port()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digest-scale-")))
        sink = start_sink(port)
        stack.callback(lambda: (sink.terminate(), sink.wait()))
        for kind in stores:
            with store_urls(kind, work) as url_for:
                for size in checkpoints:
                    messages = min(size, args.source_messages)
                    results.append(checkpoint(kind, size, url_for(size), work, port, messages))
    growth: dict[str, dict[str, float]] = {}
    peaks: dict[str, float] = {}
    for step in ("import", "run"):
        key = f"{step}_peak_rss_mb"
        peaks[step] = ours_peak(results, key)
        for kind in stores:
            mine = [r for r in results if r["store"] == kind]
            ratio = ours_peak(mine[-1:], key) / ours_peak(mine[:1], key)
            growth.setdefault(step, {})[kind] = round(ratio, 3)
        print(
            f"{step}: peak RSS of any of our processes {peaks[step]:.0f} MB "
            f"(target < {TARGET_RSS_MB}); largest at {checkpoints[-1]:,} over largest at "
            f"{checkpoints[0]:,}: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in growth[step].items())
            + " (target within 1.10x)"
        )
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "subscribers": n,
                "checkpoints": checkpoints,
                "sessions": SESSIONS,
                "target_ratio": TARGET_RATIO,
                "peak_rss_mb": peaks,
                "target_rss_mb": TARGET_RSS_MB,
                "target_edition_to_sent_s": TARGET_EDITION_S,
                "rss_growth": growth,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
