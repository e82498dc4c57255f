"""What the publication is and how its editions are made: the publisher, how sources are
fetched, the sources, the sections, the digests with their schedules, and the rendering."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field, field_validator, model_validator

from digest.config.base import Key, _Section


def _check_cron(v: str) -> str:
    try:
        CronSim(v, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"not a valid cron line: {e}") from e
    return v


class PublicationSettings(_Section):
    """Who sends the digest, and what the law and the mail clients need to see."""

    name: str = Field(description="The publication's name, shown in the header and From.")
    url: str = Field(description="The publication's home page (https://…).")
    from_email: str = Field(description="Address in the From header, on your sending domain.")
    from_name: str = Field(default="", description="Display name in From; defaults to `name`.")
    reply_to: str = Field(default="", description="Optional Reply-To address.")
    postal_address: str = Field(
        description="The postal address printed in every email's footer (CAN-SPAM, GDPR)."
    )
    links_base_url: str = Field(
        default="",
        description="Base URL of the web app serving unsubscribe and preference links; "
        "defaults to `url`.",
    )
    unsubscribe_mailto: str = Field(
        default="",
        description="Address for mailto unsubscribe in List-Unsubscribe; empty: no mailto.",
    )
    logo_url: str = Field(default="", description="Optional https URL of a logo for the header.")
    lang: str = Field(default="en", description="Language of the email (BCP 47), e.g. `en`.")

    @field_validator("url", "links_base_url", "logo_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/") if v else v

    @field_validator("from_email", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _email(cls, v: str) -> str:
        if v and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v):
            raise ValueError(f"{v!r} is not an email address")
        return v


class HttpSettings(_Section):
    """How sources are fetched."""

    user_agent: str = Field(
        default="newsletter-digest/0.1 (+https://github.com/newsletter-digest/newsletter-digest)",
        description="User-Agent sent with every request.",
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(default=15.0, gt=0, description="Seconds between bytes.")
    total_timeout: float = Field(default=30.0, gt=0, description="Seconds for a whole fetch.")
    max_bytes: int = Field(default=5_000_000, gt=0, description="Cap on a decoded body.")
    max_redirects: int = Field(default=5, ge=0, description="Redirect hops followed.")
    retries: int = Field(default=2, ge=0, description="Retries of a transient fetch failure.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Fetches at once, at most.")
    parse_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes parsing big feeds beside the gathering process (which parses too "
        "when they are all busy); 0: one fewer than the cores, 1: none (the fetching threads "
        "parse).",
    )
    per_host: int = Field(
        default=1, ge=1, le=16, description="Fetches at once to any one host, at most."
    )
    max_feed_items: int = Field(
        default=500,
        ge=0,
        description="Items read from one feed per gather, at most: the newest (a warning says "
        "how many were left out); 0: no cap. A feed of 40,000 items takes a minute and "
        "hundreds of MB to read in full.",
    )
    max_page_fetches: int = Field(
        default=20,
        ge=0,
        description="Article pages fetched per source and run to complete thin items; 0: none.",
    )


class SourceSettings(_Section):
    """A feed. Give `url` (http/https) or `path` (a local file, relative to this config)."""

    url: str = Field(default="", description="Feed URL (http or https).")
    path: str = Field(default="", description="A feed file on disk instead of a URL.")
    title: str = Field(default="", description="Human name of the source, for reports.")
    local: bool = Field(
        default=False,
        description="Allow this source on a loopback or private address (tests, an intranet): "
        "its own origin (scheme, host, port) only; links and redirects elsewhere are checked "
        "as public fetches.",
    )
    backfill_pages: int = Field(
        default=0,
        ge=0,
        le=100,
        description="On the source's first gather, also read this many older pages of the "
        "feed (CMSs page feeds, e.g. 30 items a page).",
    )
    page_param: str = Field(
        default="page",
        description="Query parameter naming a feed page (`page` as in `?page=2`; WordPress "
        "uses `paged`).",
    )
    fetch_pages: bool | None = Field(
        default=None,
        description="When an item has only a title and a link, fetch its page for the lede "
        "and image (with the same safe fetch). Unset: on for `url` sources, off for `path`.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> SourceSettings:
        if bool(self.url) == bool(self.path):
            raise ValueError("give exactly one of `url` or `path`")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("`url` must start with http:// or https://")
        return self


class SectionSettings(_Section):
    """A part of the publication: which sources feed it and which of their items belong."""

    title: str = Field(description="Heading shown in the email.")
    sources: list[Key] = Field(min_length=1, description="Keys of `[sources.*]` feeding it.")
    kicker: str = Field(
        default="",
        description="Kicker above each teaser; may use {category} (the first category that is "
        "not the section's own). Empty: the section title.",
    )
    kicker_categories: list[str] = Field(
        default_factory=list,
        description="Categories that may fill {category} in the kicker (case-insensitively); "
        "empty: any real category (never a number, id, slug or `Uncategorized`).",
    )
    title_prefix: str = Field(default="", description="Keep only items whose title starts so.")
    strip_title_prefix: bool = Field(
        default=False,
        description='Show card titles without `title_prefix` ("Diplomacy Watch: Talks resume" '
        'reads "Talks resume" under the section\'s heading).',
    )
    title_regex: str = Field(default="", description="Keep only items whose title matches.")
    authors: list[str] = Field(
        default_factory=list, description="Keep only items by one of these authors."
    )
    exclude_title_regex: str = Field(
        default="", description="Drop items whose title matches (e.g. `^Podcast:`)."
    )
    categories: list[str] = Field(
        default_factory=list, description="Keep only items with one of these categories."
    )
    exclude_categories: list[str] = Field(
        default_factory=list, description="Drop items with any of these categories."
    )
    gather_cron: str = Field(
        default="0 * * * *", description="When `digest serve` gathers this section (cron, UTC)."
    )

    @field_validator("gather_cron")
    @classmethod
    def _gather_cron(cls, v: str) -> str:
        return _check_cron(v)

    @field_validator("title_regex", "exclude_title_regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        if v:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from e
        return v


class ScheduleSettings(_Section):
    cron: str = Field(description="When the edition goes out, as a cron line, e.g. `0 7 * * MON`.")
    timezone: str = Field(default="UTC", description="IANA timezone of the cron line and period.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown timezone {v!r}") from e
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return _check_cron(v)


class DigestSettings(_Section):
    """One newsletter: which sections, how often, how big."""

    title: str = Field(description="Name of the digest, e.g. `The Weekly Dispatch`.")
    sections: list[Key] = Field(min_length=1, description="Section keys, in the email's order.")
    schedule: ScheduleSettings
    period: Literal["daily", "weekly", "monthly", "cron"] = Field(
        default="weekly",
        description="The window one edition covers (its id's suffix); `cron`: from one "
        "scheduled time to the next.",
    )
    subject: str = Field(
        default="{digest}: {lead_title}",
        description="Subject template; fields {digest}, {publication}, {lead_title}, {period}, "
        "{count}.",
    )
    preheader: str = Field(
        default="{count} new pieces, starting with {lead_title}",
        description="Preheader template (the grey line after the subject); same fields.",
    )
    max_per_section: int = Field(default=5, ge=1, description="Items per section, at most.")
    cards_per_section: int = Field(
        default=3, ge=1, description="Items shown as full cards; the rest as headlines only."
    )
    max_items: int = Field(default=15, ge=1, description="Items per edition, at most.")
    min_items: int = Field(default=1, ge=1, description="Fewer new items: no edition.")
    max_age_days: int = Field(
        default=14, ge=0, description="Ignore articles older than this; 0 = no limit."
    )
    approval: Literal["auto", "required"] = Field(
        default="auto", description="`required` waits for an editor before sending."
    )
    approval_timeout_hours: float = Field(
        default=24,
        gt=0,
        description='With `approval = "required"`: how long an edition run waits for an '
        "editor's decision.",
    )
    approval_timeout_action: Literal["skip", "send"] = Field(
        default="skip",
        description="No decision in time: `skip` marks the edition skipped and sends nothing "
        "(an editor may still approve it); `send` approves and sends it.",
    )
    click_tracking: bool = Field(
        default=False,
        description="Send article links through signed redirects on the web app (`/c/…`) and "
        "count clicks per edition and article, aggregated (see `[analytics]`). Off by default: "
        "the links then depend on `digest web` answering at `web.base_url`.",
    )
    per_subscriber_clicks: bool | None = Field(
        default=None,
        description="With `click_tracking`: record which subscriber clicked which article "
        "(each copy's links carry the subscriber's signed id, and the footer says so). "
        "Unset: as `analytics.per_subscriber`.",
    )


class RenderSettings(_Section):
    max_html_bytes: int = Field(
        default=90_000,
        gt=0,
        description="Fail a render whose HTML is bigger (Gmail clips at ~102 KB).",
    )
    paragraphs: int = Field(default=2, ge=1, description="Lede paragraphs per teaser card.")
    teaser_chars: int = Field(default=450, ge=40, description="Character budget of a teaser.")
    utm: bool = Field(default=True, description="Add UTM parameters to article links.")
    image_width_param: str = Field(
        default="",
        description="Query parameter through which the CMS resizes images (the seed's takes "
        "`width`); empty: images are sized by attributes only.",
    )
    utm_source: str = Field(default="newsletter", description="utm_source value.")
