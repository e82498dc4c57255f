"""Page ledes: how often ``extract_page`` starts where a human-checked article body starts.

Over ``../shared/corpora/article-pages/`` (real pages, each with the article body a person
checked), the lede agreement is the share of pages where the first 12 normalised words of the
first paragraph of at least 80 characters are the same in our lede (``extract_page``'s
paragraphs, with room for the whole body as the checked body is whole) and in the checked body
(``lede_words`` defines it once). The baseline, measured in the same run, is trafilatura alone
with the settings that do best on these pages: the paragraphs of its body with
``favor_precision`` (comments, tables, images and links left out; its plain-text output, which
counts headlines as paragraphs, agrees less often).

Pages are split by a hash of their id: the rules were chosen on the even half, so the odd half
(``held_out_*``) is the figure for pages the rules were not chosen on. Other real pages, not in
shared/, measure the same thing.

Run: ``.venv/bin/python bench/lede_rate.py`` (``--pages DIR`` for another set in the same
layout, ``--show`` to print each page that disagrees). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import regex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAGES = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "article-pages"
LEDE_WORDS = 12
MIN_PARAGRAPH = 80
_PUNCTUATION = regex.compile(r"\p{P}+")


def lede_words(paragraphs: Iterable[str]) -> tuple[str, ...]:
    """The first 12 words of the first paragraph of at least 80 characters, normalised:
    casefolded, punctuation stripped, whitespace collapsed. Empty when no paragraph is that
    long."""
    for paragraph in paragraphs:
        if len(paragraph.strip()) >= MIN_PARAGRAPH:
            return tuple(_PUNCTUATION.sub("", paragraph.casefold()).split()[:LEDE_WORDS])
    return ()


def held_out(page_id: str) -> bool:
    """Whether a page belongs to the held-out half (odd hash of its id)."""
    return int(hashlib.sha256(page_id.encode()).hexdigest(), 16) % 2 == 1


def our_lede(html: bytes, url: str) -> list[str]:
    from digest.gather.pages import PageError, extract_page

    try:
        return list(extract_page(html, url=url, max_paragraphs=100).paragraphs)
    except PageError:
        return []


def trafilatura_lede(html: bytes, url: str) -> list[str]:
    import trafilatura

    from digest.text import clean_line

    document = trafilatura.bare_extraction(
        html,
        url=url,
        favor_precision=True,
        include_comments=False,
        include_tables=False,
        include_images=False,
        include_links=False,
        with_metadata=False,
    )
    body = getattr(document, "body", None)
    if body is None:
        return []
    found = (clean_line("".join(e.itertext())) for e in body.iter("p", "item"))
    return [text for text in found if text]


def _page(job: tuple[str, str, str]) -> dict[str, Any]:
    page_id, path, url = job
    html = gzip.decompress(Path(path).read_bytes())
    start = time.perf_counter()
    ours = our_lede(html, url)
    seconds = time.perf_counter() - start
    return {"id": page_id, "ours": ours, "trafilatura": trafilatura_lede(html, url), "s": seconds}


def page_results(
    pages_dir: Path, ids: Iterable[str] | None = None, workers: int | None = None
) -> list[dict[str, Any]]:
    """Per page: its id, URL, our lede, trafilatura's and the checked body, as paragraphs."""
    truth = json.loads((pages_dir / "ground-truth.json").read_text("utf-8"))
    chosen = sorted(truth if ids is None else ids)
    jobs = [(i, str(pages_dir / "html" / f"{i}.html.gz"), truth[i]["url"]) for i in chosen]
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    if workers == 1:
        results = [_page(job) for job in jobs]
    else:
        # forkserver: no copy of the caller's threads or locks (a test session has some).
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(_page, jobs, chunksize=4))
    for result in results:
        result["url"] = truth[result["id"]]["url"]
        result["truth"] = truth[result["id"]]["articleBody"].split("\n")
    return results


def _rate(results: list[dict[str, Any]], key: str) -> float:
    agree = sum(lede_words(r[key]) == lede_words(r["truth"]) for r in results)
    return round(agree / len(results), 4) if results else 0.0


def lede_rates(pages_dir: Path = PAGES, workers: int | None = None) -> dict[str, Any]:
    """Lede agreement of ``extract_page`` and of trafilatura alone over a set of pages."""
    results = page_results(Path(pages_dir), workers=workers)
    held = [r for r in results if held_out(r["id"])]
    return {
        "lede_rate": _rate(results, "ours"),
        "trafilatura_lede_rate": _rate(results, "trafilatura"),
        "pages": len(results),
        "held_out_lede_rate": _rate(held, "ours"),
        "held_out_trafilatura_lede_rate": _rate(held, "trafilatura"),
        "held_out_pages": len(held),
        "slowest_page_seconds": round(max((r["s"] for r in results), default=0.0), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=Path, default=PAGES)
    parser.add_argument("--show", action="store_true", help="print each page that disagrees")
    args = parser.parse_args()
    if args.show:
        for r in page_results(args.pages):
            ours, truth = lede_words(r["ours"]), lede_words(r["truth"])
            if ours != truth:
                held = "held-out" if held_out(r["id"]) else "chosen-on"
                print(f"{r['id'][:12]} ({held}) {r['url']}")
                print(f"  ours:  {' '.join(ours)}\n  truth: {' '.join(truth)}")
    start = time.perf_counter()
    rates = lede_rates(args.pages)
    print(
        f"lede agreement over {rates['pages']} pages: ours {rates['lede_rate']:.1%}, "
        f"trafilatura alone {rates['trafilatura_lede_rate']:.1%}; held-out half "
        f"({rates['held_out_pages']} pages): ours {rates['held_out_lede_rate']:.1%}, "
        f"trafilatura {rates['held_out_trafilatura_lede_rate']:.1%} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
