"""The HTTP ends of the publication: the web app (links, sign-up, editor pages), the
providers' bounce and complaint webhooks coming in, and the failed-run alert webhook going out."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from digest.config.base import SECRET, _Section


class WebSettings(_Section):
    """The web app: unsubscribe and preference pages, sign-up, provider webhooks."""

    base_url: str = Field(
        default="",
        description="Public base URL of the web app; links in emails are this plus the app's "
        "routes (`/u/…`, `/p/…`). Empty: `publication.links_base_url`, else `publication.url`.",
    )
    host: str = Field(default="127.0.0.1", description="Address `digest web` listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port `digest web` listens on.")
    link_max_age_days: int = Field(
        default=120,
        ge=60,
        description="How long unsubscribe and preference links work (at least 60 days).",
    )
    confirm_max_age_days: int = Field(
        default=7, ge=1, description="How long a sign-up's confirmation link works."
    )
    signups_per_hour: int = Field(
        default=5, ge=1, description="Sign-ups one IP address may make per hour."
    )
    editor_token: SecretStr = Field(
        default=SecretStr(""),
        description="The editors' secret for the edition pages (basic-auth password, bearer "
        "token, or once at `/editor/login?token=…` for a session cookie; env only: "
        "DIGEST__WEB__EDITOR_TOKEN). Unset: `digest web` on a loopback address makes one for "
        "its process and prints the login URL, good only from that machine (no proxy).",
        json_schema_extra=SECRET,
    )
    editor_addresses: list[str] = Field(
        default_factory=list,
        description="Addresses a test of an edition may be sent to from the editors' page.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")


class WebhookSettings(_Section):
    """Bounce and complaint events from the HTTP providers (see the README)."""

    soft_bounce_limit: int = Field(
        default=3, ge=1, description="Soft bounces after which an address is suppressed."
    )
    soft_bounce_window_days: int = Field(
        default=30,
        ge=1,
        description="Soft bounces count towards the limit only when each comes within this "
        "many days of the one before; a longer gap starts the count again.",
    )
    max_age_seconds: int = Field(
        default=86_400,
        ge=30,
        description="Signed events older than this are refused. Providers retry a failed "
        "delivery for hours with its first signature (SendGrid up to 24 h), so keep it that "
        "long; replays are refused anyway by event id (and Mailgun's token), never applied twice.",
    )
    sendgrid_public_key: str = Field(
        default="",
        description="SendGrid's Event Webhook verification key (base64 DER or PEM, public).",
    )
    postmark_username: str = Field(default="", description="Basic-auth user Postmark sends.")
    postmark_password: SecretStr = Field(
        default=SecretStr(""),
        description="Basic-auth password (env only: DIGEST__WEBHOOKS__POSTMARK_PASSWORD).",
        json_schema_extra=SECRET,
    )
    mailgun_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Mailgun's webhook signing key (env only: "
        "DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY).",
        json_schema_extra=SECRET,
    )


class AlertSettings(_Section):
    """Alerts on failed runs: `digest serve` sets up a Prefect automation that calls a webhook
    when a run of the gather, edition or run flow fails or crashes."""

    webhook_url: str = Field(
        default="",
        description="URL (http or https) the Prefect server POSTs an alert to when a flow run "
        "fails or crashes: one line for people (the flow, the run, the error message, a link "
        "to the run in Prefect's UI) in the field the chat service reads (see `format`). Set "
        "up by `digest serve`; empty: no alerts.",
    )
    format: Literal["slack", "discord", "teams", "json"] = Field(
        default="slack",
        description="The alert's body. `slack`: the line in `text`, as Slack, Mattermost and "
        "Rocket.Chat incoming webhooks read it, plus the run's facts as JSON fields "
        "(`flow_run`, `flow_run_id`, `flow`, `state`, `message`, `url`: the link, null when "
        "neither the Prefect server nor `digest serve` knows a UI URL); `json`: the same "
        "fields, `text` unescaped; `discord`: the line in `content`; `teams`: a MessageCard "
        "for a Teams incoming webhook, with a button to the run.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+\S*$", v):
            raise ValueError("must be an http(s) URL")
        return v


# Link scanners and preview fetchers announce themselves in their User-Agent more often than not.
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "bot",
    "preview",
    "scanner",
    "safelinks",
    "headless",
)


class AnalyticsSettings(_Section):
    """Click analytics (with `[digests.<key>] click_tracking = true`): what is counted."""

    per_subscriber: bool = Field(
        default=False,
        description="Record clicks per subscriber, in digests with `click_tracking` (a digest's "
        "`per_subscriber_clicks` overrides this): each subscriber's copy carries links signed "
        "with their id, the footer says in plain words that clicks are recorded, editors see "
        "only unique clickers per article, and a subscriber's records are deleted when they "
        "unsubscribe or are suppressed. Off: no link carries anything personal. Not with "
        "`mailchimp` or `listmonk` (the provider owns the list).",
    )
    scanner_window_seconds: int = Field(
        default=60,
        ge=0,
        description="Clicks before the edition was sent, or within this many seconds after, "
        "are taken for link scanners and prefetchers and not counted as readers.",
    )
    scanner_agents: list[str] = Field(
        default_factory=lambda: list(SCANNER_AGENTS),
        description="User-Agent fragments (case-insensitive) of link scanners; their requests "
        "are not counted as readers.",
    )
