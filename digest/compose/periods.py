"""Periods: the window an edition covers, named in the digest's own timezone."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["daily", "weekly", "monthly"]


def period_key(now: datetime, period: Period, timezone: str) -> str:
    """``2026-11-28`` (daily), ``2026-W48`` (ISO week), ``2026-11`` (monthly), in ``timezone``.

    Computing it in the digest's timezone matters: a Monday-morning send in New York is
    still Sunday evening in some zones and already Monday afternoon in others.
    """
    if now.tzinfo is None:
        raise ValueError("period_key needs an aware datetime")
    local = now.astimezone(ZoneInfo(timezone))
    if period == "daily":
        return local.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m")


def edition_id(digest_key: str, period: str) -> str:
    return f"{digest_key}-{period}"
