"""Teasers on real feeds: how many cards a subscriber would find clean, against a naive cut.

Every entry of every feed in ``../shared/corpora/realfeeds/`` (or the folder given as the first
argument) is parsed as gather parses it (``parse_feed``) and made into a teaser as compose makes
it (``make_teaser``, 2 paragraphs, 450 characters). A checker written here, apart from the code
under test, then says whether the teaser is clean:

- a headline-only item is clean (a title and a link, nothing that can be wrong);
- a card is clean when its text has no tag and no raw entity, no furniture (``[…]``, "The post
  … appeared first on …", "Continue reading", "Read more", …), at least 40 characters, fits the
  budget, does not open by repeating the title, and ends at a sentence end or an ellipsis.

The clean rate is the mean over feeds of each feed's share of clean teasers (every feed counts
the same; one feed of 900 entries would otherwise outweigh the other 99); the rate per entry and
the share of items that stay cards are printed beside it, so that a rule making everything a
headline would show. The naive baseline, measured on the same entries: the summary (else the
content) with its tags stripped, entities decoded and cut at a word within the budget with an
ellipsis; no text makes a headline-only item.

The feeds are split by their file name's hash (even / odd last hex digit) so that rules can be
designed on one half and checked on the other; both halves are printed. The page ledes over
``../shared/corpora/article-pages/`` (second argument) come from ``bench/lede_rate.py``.

Last line: one JSON object with ``clean_rate``, ``naive_clean_rate``, ``lede_rate`` and
``trafilatura_lede_rate``.
"""

from __future__ import annotations

import html
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.compose.teasers import make_teaser  # noqa: E402
from digest.config import SectionSettings  # noqa: E402
from digest.errors import FeedError  # noqa: E402
from digest.gather.feeds import parse_feed  # noqa: E402
from digest.models import Article, Teaser  # noqa: E402

FEEDS = ROOT.parent / "shared" / "corpora" / "realfeeds"
PAGES = ROOT.parent / "shared" / "corpora" / "article-pages"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
PARAGRAPHS = 2
BUDGET = 450
MIN_CHARS = 40
SECTION = SectionSettings(title="News", sources=["feed"], kicker="News | {category}")

# The checker's own patterns: deliberately not the code under test's.
TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")
ENTITY = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]{1,31});")
FURNITURE = re.compile(
    r"\[\s*(…|\.{3}|&hellip;|more)\s*\]|\(more…\)|\bappeared first on\b|\bfirst appeared on\b",
    re.IGNORECASE,
)
# A more-link: a sentence that opens with one of these and is the text's last, or points on.
MORE = re.compile(
    r"^(continue reading|keep reading|read more|read the (full|rest)|more\s*[…→»]|weiterlesen"
    r"|lire la suite|leer más|leia mais)",
    re.IGNORECASE,
)
SENTENCES = re.compile(r"(?<=[.!?…])\s+|(?=…)")
# Sentence-final punctuation (Latin, CJK, Arabic, Devanagari...), then closing quotes/brackets.
ENDS = re.compile(r"[.!?…。！？؟।‼⁉][\"'”’»)\]】」』\u200f]*$")


def _graphemes(text: str) -> int:
    # Combining marks and joiners do not count as characters of their own.
    return sum(
        1
        for ch in text
        if not unicodedata.combining(ch) and ch not in "\u200d\ufe0f" and ch not in "\u200c"
    )


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def problems(title: str, paragraphs: tuple[str, ...]) -> list[str]:
    """What is wrong with a card showing ``paragraphs`` under ``title``; [] when clean."""
    found = []
    text = " ".join(paragraphs)
    if not text.strip():
        return ["empty card"]
    if TAG.search(text):
        found.append("tag")
    if ENTITY.search(text):
        found.append("raw entity")
    sentences = [s.strip(" …") for s in SENTENCES.split(text) if s.strip(" …")]
    if FURNITURE.search(text) or any(
        MORE.match(s) and (i == len(sentences) - 1 or re.search("[→»›]", s))
        for i, s in enumerate(sentences)
    ):
        found.append("furniture")
    if _graphemes(text) < MIN_CHARS:
        found.append("too short")
    if _graphemes("".join(paragraphs)) > BUDGET:
        found.append("over budget")
    if title and _fold(paragraphs[0]) == _fold(title):
        found.append("repeats the title")
    if not ENDS.search(paragraphs[-1].rstrip()):
        found.append("ends mid-sentence")
    return found


def naive(article: Article) -> tuple[str, ...]:
    """Tags stripped, entities decoded, cut at a word within the budget (with an ellipsis)."""
    source = article.summary_html or article.content_html
    text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", source)).split())
    if len(text) > BUDGET:
        text = text[: BUDGET - 1].rsplit(" ", 1)[0] + "…"
    return (text,) if text else ()


@dataclass
class Tally:
    feeds: int = 0
    feed_clean: float = 0.0  # sum over feeds of each feed's share of clean teasers
    feed_naive: float = 0.0
    entries: int = 0
    clean: int = 0
    naive_clean: int = 0
    cards: int = 0
    why: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def rate(self) -> float:
        """The mean over feeds of each feed's share of clean teasers (every feed counts the
        same: one feed of 900 entries must not outweigh the other 99)."""
        return self.feed_clean / self.feeds if self.feeds else 0.0

    def naive_rate(self) -> float:
        return self.feed_naive / self.feeds if self.feeds else 0.0

    def entry_rate(self) -> float:
        return self.clean / self.entries if self.entries else 0.0


def teaser_for(article: Article) -> Teaser:
    return make_teaser(
        article,
        section_key="news",
        section=SECTION,
        max_paragraphs=PARAGRAPHS,
        budget=BUDGET,
    )


def measure(feeds_dir: Path) -> dict[str, Tally]:
    """Tallies over the feeds of ``feeds_dir``: ``"all"``, ``"even"`` and ``"odd"`` hashes."""
    tallies = {"all": Tally(), "even": Tally(), "odd": Tally()}
    for path in sorted(feeds_dir.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name == "LICENSE":
            continue
        try:
            parsed = parse_feed(
                path.read_bytes(), source="feed", url="https://feeds.example/", now=NOW
            )
        except FeedError:
            continue
        half = tallies["odd" if _half(path.name) else "even"]
        if not parsed.articles:
            continue
        clean = naive_clean_count = 0
        for article in parsed.articles:
            teaser = teaser_for(article)
            wrong = problems(teaser.title, teaser.paragraphs) if teaser.full else []
            plain = naive(article)
            naive_clean = not plain or not problems(article.title, plain)
            clean += not wrong
            naive_clean_count += naive_clean
            for tally in (tallies["all"], half):
                tally.entries += 1
                tally.cards += teaser.full
                tally.clean += not wrong
                tally.naive_clean += naive_clean
                for what in wrong:
                    tally.why[what] += 1
                    tally.examples.setdefault(what, []).append(
                        f"{path.name}: {' ¶ '.join(teaser.paragraphs)[-160:]}"
                    )
        for tally in (tallies["all"], half):
            tally.feeds += 1
            tally.feed_clean += clean / len(parsed.articles)
            tally.feed_naive += naive_clean_count / len(parsed.articles)
    return tallies


def _half(name: str) -> int:
    try:
        return int(name[-1], 16) % 2
    except ValueError:
        return sum(name.encode()) % 2


def _lede_rates(pages_dir: Path) -> dict[str, float | None]:
    # Page ledes are measured by bench/lede_rate.py (one definition of the metric).
    from bench.lede_rate import lede_rates

    rates = lede_rates(pages_dir)
    return {k: rates.get(k) for k in ("lede_rate", "trafilatura_lede_rate")}


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    args = [a for a in argv[1:] if a != "-v"]
    feeds_dir = Path(args[0]) if args else FEEDS
    pages_dir = Path(args[1]) if len(args) > 1 else PAGES
    tallies = measure(feeds_dir)
    whole = tallies["all"]
    for half, label in (("even", "even hashes"), ("odd", "odd hashes (held out)")):
        part = tallies[half]
        print(
            f"{label:>22}: {part.feeds:3d} feeds, clean {part.rate():.3f}, "
            f"naive {part.naive_rate():.3f}"
        )
    print(
        f"{'all':>22}: {whole.feeds:3d} feeds, clean {whole.rate():.3f}, "
        f"naive {whole.naive_rate():.3f}; per entry: {whole.entries} entries, "
        f"clean {whole.entry_rate():.3f}, cards {whole.cards / max(whole.entries, 1):.3f}"
    )
    for what, count in whole.why.most_common():
        print(f"  {what}: {count}")
        if verbose:
            for example in whole.examples[what][:8]:
                print(f"      {example}")
    figures: dict[str, float | None] = {
        "clean_rate": round(whole.rate(), 4),
        "naive_clean_rate": round(whole.naive_rate(), 4),
    }
    figures.update(_lede_rates(pages_dir))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
