"""`digest gather` on 100 real feeds served on loopback: the peak RSS of each of its processes.

The real feeds are the shared test corpus (``../shared/corpora/realfeeds`` beside the project;
BENCH_REALFEEDS names another folder): 100 feed bodies as their sites served them, 25 MB. They
are served from 127.0.0.1 with ETags, by a process of their own, and a config lists them (one
source each, article pages not fetched: their links lead off this machine). The command runs as
a user runs it, ``python -m digest.cli gather``, twice: cold (a fresh store), then warm (every
source answers 304). It starts its temporary Prefect API server, as it does without
PREFECT_API_URL (Prefect's home is a fresh folder).

The figures: the wall time of each run, and the peak RSS (``VmHWM``, sampled from ``/proc``
every 20 ms while each process lives) of the command and of every process under it. The sum
that gathering is held to (under 250 MB) is over the command and its parse workers; the
temporary Prefect API server is listed apart (Prefect's, some 200 MB, the same whatever is
gathered), and the total with it is printed too. The baseline, measured in the same run, is
plain ``feedparser.parse`` over the same bodies, serially. Without the corpus this prints why
and exits 0. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gather import ProcessPeaks
from bench.support import child, run_as

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = Path(
    os.environ.get("BENCH_REALFEEDS") or PROJECT.parent / "shared" / "corpora" / "realfeeds"
)


def feeds(folder: Path) -> dict[str, bytes]:
    """The corpus's feed bodies by the path they are served at (LICENSE and notes left out)."""
    return {
        f"/{p.name}": p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.isupper() and not p.name.endswith((".md", ".txt"))
    }


def _serve_in_child() -> None:
    """The feed server's process: serves the corpus, says its port on stdout, ends when its
    stdin closes."""
    from bench.gather import serve

    httpd = serve(feeds(CORPUS), content_type="application/xml")  # no charset was kept
    print(httpd.server_address[1], flush=True)
    sys.stdin.read()
    httpd.shutdown()


def _baseline_in_child() -> None:
    """Serial plain feedparser over the corpus: its seconds on stdout."""
    import feedparser

    bodies = list(feeds(CORPUS).values())
    start = time.perf_counter()
    for body in bodies:
        feedparser.parse(body)
    print(time.perf_counter() - start, flush=True)


def write_config(folder: Path, base: str, paths: list[str]) -> Path:
    sources = "".join(
        f'[sources.r{n:03d}]\nurl = "{base}{path}"\nlocal = true\nfetch_pages = false\n\n'
        for n, path in enumerate(paths)
    )
    keys = ", ".join(f'"r{n:03d}"' for n in range(len(paths)))
    config = folder / "gather.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\n\n'
        '[publication]\nname = "Bench"\nurl = "https://bench.example.org"\n'
        'from_email = "digest@bench.example.org"\npostal_address = "1 Bench Street"\n\n'
        f"{sources}"
        f'[sections.all]\ntitle = "All"\nsources = [{keys}]\n\n'
        '[digests.weekly]\ntitle = "Weekly"\nsections = ["all"]\n'
        'schedule = { cron = "0 7 * * MON" }\n'
    )
    return config


def gather_once(config: Path, env: dict[str, str]) -> tuple[float, ProcessPeaks, str]:
    """One ``digest gather``: its wall time, the peaks of its processes and its output."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest.cli", "gather", "--config", str(config)],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with ProcessPeaks(root=proc.pid) as peaks:
        out, _ = proc.communicate()
    took = time.perf_counter() - start
    for pid, name in list(peaks.names.items()):
        if "flows.temporary_api" in name:
            peaks.apart[pid] = "temporary Prefect API server"
    if proc.returncode != 0:
        raise SystemExit(f"digest gather exited {proc.returncode}:\n{out}")
    return took, peaks, out


def main() -> int:
    if not CORPUS.is_dir():
        print(f"gather_real: skipped, no real feeds at {CORPUS} (the shared corpora folder)")
        print(json.dumps({"benchmark": "gather_real", "skipped": f"no corpus at {CORPUS}"}))
        return 0
    paths = list(feeds(CORPUS))
    megabytes = sum(p.stat().st_size for p in CORPUS.iterdir() if f"/{p.name}" in paths) / 1e6
    server = child(__file__, "serve")
    assert server.stdin and server.stdout
    try:
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        baseline = subprocess.run(
            [sys.executable, __file__, "baseline"], capture_output=True, text=True, check=True
        )
        serial = float(baseline.stdout)
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), base, paths)
            env = {
                **os.environ,
                "PYTHONPATH": str(PROJECT),
                "PREFECT_HOME": str(Path(tmp) / "prefect"),
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            env.pop("PREFECT_API_URL", None)
            runs = {name: gather_once(config, env) for name in ("cold", "warm")}
    finally:
        server.stdin.close()
        server.wait()

    result: dict[str, object] = {
        "benchmark": "gather_real",
        "feeds": len(paths),
        "megabytes": round(megabytes, 1),
        "serial_feedparser_s": round(serial, 3),
    }
    for name, (took, peaks, out) in runs.items():
        said = [line for line in out.splitlines() if line.startswith("all:")]
        print(f"{name}: {took:.1f} s; {said[-1] if said else out.strip()}")
        for row in peaks.table():
            apart = "" if row["summed"] else "  (not summed)"
            print(f"  pid {row['pid']}: peak {row['peak_mb']} MB  {row['role']}{apart}")
        total = sum(peaks.peaks.values())
        result[f"{name}_s"] = round(took, 2)
        result[f"{name}_peak_rss_mb"] = round(peaks.summed(), 1)
        result[f"{name}_peak_rss_with_api_server_mb"] = round(total, 1)
        result[f"{name}_peak_rss_command_mb"] = round(peaks.peaks.get(peaks.root, 0.0), 1)
        print(
            f"  {name}: peak RSS {peaks.summed():.0f} MB summed over the command and its parse"
            f" workers; {total:.0f} MB with the temporary Prefect API server"
        )
    result["targets"] = {"peak_rss_mb": 250}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_as({"serve": _serve_in_child, "baseline": _baseline_in_child}, main)
