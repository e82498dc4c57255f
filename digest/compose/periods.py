"""Periods: the window an edition covers, named in the digest's own timezone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim

Period = Literal["daily", "weekly", "monthly", "cron"]


def period_key(now: datetime, period: Period, timezone: str, cron: str = "") -> str:
    """``2026-11-28`` (daily), ``2026-W48`` (ISO week), ``2026-11`` (monthly), or for
    ``cron`` the scheduled time that opened the current window (``2026-11-30T0700``), all in
    ``timezone``.

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
    if period == "cron":
        if not cron:
            raise ValueError("a cron period needs the cron line")
        # CronSim in reverse excludes its start: start one second later so that a run at
        # exactly the scheduled time opens the new window.
        start = local.replace(microsecond=0) + timedelta(seconds=1)
        opened = next(CronSim(cron, start, reverse=True))
        return opened.strftime("%Y-%m-%dT%H%M")
    return local.strftime("%Y-%m")


def edition_id(digest_key: str, period: str) -> str:
    return f"{digest_key}-{period}"
