"""What spam filters make of the email: Debian's SpamAssassin, local rules only (``-L``: no DNS
blocklists, no network at all), scores the demo publication's message as ``make demo`` builds it
(the sample feeds gathered, the week's edition composed, rendered, and one subscriber's copy made
by the compiled message template) and the golden test edition's.

SpamAssassin keeps its state under ``$HOME``; each run gets a fresh one in ``tmp_path``.
"""

from __future__ import annotations

import email
import re
import subprocess
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

from digest.config import Settings, load_settings
from digest.factory import open_store
from digest.models import Edition, Subscriber
from digest.render import render_variant
from digest.steps.compose import compose
from digest.steps.gather import gather_sources
from digest.steps.messages import personal_message
from tests.render import make_settings, weekly_edition

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
READER = Subscriber(id=1, email="reader@example.org", name="Ada Reader")
# A plain, honest newsletter with List-Id and List-Unsubscribe scores at or below this.
MAX_SCORE = 0.5


def demo_edition(config: Path) -> tuple[Settings, Edition]:
    """The example publication's edition of the week, from its bundled sample feeds."""
    settings = load_settings(config)
    store = open_store(settings)
    try:
        reports = gather_sources(settings, store, list(settings.sources), now=NOW)
        assert [r.error for r in reports if r.status == "failed"] == []
        edition = compose(settings, store, "weekly", now=NOW).edition
    finally:
        store.close()
    assert edition is not None
    return settings, edition


def message_bytes(settings: Settings, edition: Edition) -> bytes:
    """One subscriber's copy, built as a delivery builds it."""
    variant = render_variant(edition, settings)
    return personal_message(settings, edition, variant, READER, now=NOW).raw


def spam_status(binary: str, message: bytes, home: Path) -> tuple[float, list[str]]:
    """SpamAssassin's score of ``message`` and the rules that hit, local tests only."""
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [binary, "-t", "-L"],
        input=message,
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    checked: Message = email.message_from_bytes(done.stdout)
    # The header is folded after a comma of its rule list; unfolded, the list is one word.
    status = re.sub(r",\s+", ",", " ".join(str(checked["X-Spam-Status"] or "").split()))
    found = re.search(r"\bscore=(-?\d+(?:\.\d+)?)\b.*?\btests=([A-Z0-9_,]*)", status)
    assert found, f"no X-Spam-Status score in SpamAssassin's output: {status!r}"
    return float(found[1]), [t for t in found[2].split(",") if t]


def _report(output: tuple[float, list[str]]) -> str:
    return f"score {output[0]} over {MAX_SCORE}; rules hit: {', '.join(output[1])}"


def test_demo_message_scores_at_most_half_a_point(
    spamassassin: str, example_config: Path, tmp_path: Path
) -> None:
    settings, edition = demo_edition(example_config)
    result = spam_status(spamassassin, message_bytes(settings, edition), tmp_path / "home")
    assert result[0] <= MAX_SCORE, _report(result)
    assert "HTML_FONT_LOW_CONTRAST" not in result[1]


def test_golden_edition_message_scores_at_most_half_a_point(
    spamassassin: str, tmp_path: Path
) -> None:
    # Non-ASCII, right-to-left text, an editor's note, a narrow and two wide images.
    result = spam_status(
        spamassassin, message_bytes(make_settings(), weekly_edition()), tmp_path / "home"
    )
    assert result[0] <= MAX_SCORE, _report(result)
