"""Page ledes on real pages: ``../shared/corpora/article-pages/`` (181 pages with human-checked
article bodies), measured as ``bench/lede_rate.py`` measures them.

The lede agrees with a page's checked body when the first 12 normalised words of the first
paragraph of at least 80 characters are the same (``lede_words``). Ours must agree on at least
95 % of the pages, and never less often than trafilatura alone in the same run. The pages are
read in worker processes, one per core (about 10 s on two).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from tests.conftest import CORPORA

PAGES = CORPORA / "article-pages"
TARGET = 0.95


@pytest.fixture(scope="module")
def lede_rate() -> ModuleType:
    if not (PAGES / "ground-truth.json").is_file():
        pytest.skip(f"article pages corpus not found at {PAGES}")
    return importlib.import_module("bench.lede_rate")


def test_lede_words_normalise_as_the_metric_says(lede_rate: ModuleType) -> None:
    long = "“Hello,  WORLD!” — it's   a test of the normalisation, with more words after twelve."
    assert lede_rate.lede_words(["Too short.", long]) == (
        "hello", "world", "its", "a", "test", "of", "the", "normalisation", "with", "more",
        "words", "after",
    )  # fmt: skip
    assert lede_rate.lede_words(["Short.", "Also short."]) == ()


def test_ledes_agree_with_checked_bodies_on_real_pages(lede_rate: ModuleType) -> None:
    rates = lede_rate.lede_rates(PAGES)
    assert rates["pages"] == 181
    assert rates["lede_rate"] >= TARGET, rates
    assert rates["lede_rate"] >= rates["trafilatura_lede_rate"], rates
