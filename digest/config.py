"""The settings schema and its loader.

Settings come from one TOML file plus environment overrides named ``DIGEST__SECTION__KEY``
(double underscores separate levels). Secrets (passwords, API keys, the signing key) are read
only from the environment. Everything is validated once, at start, and every problem is reported
with its key path, so a bad file fails fast and says where.

Relative paths in the file (``data_dir``, a source's ``path``) are relative to the file itself.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

from digest.errors import ConfigError

ENV_PREFIX = "DIGEST__"
KEY_RE = r"^[a-z0-9][a-z0-9_-]*$"
Key = Annotated[str, Field(pattern=KEY_RE, description="A short lower-case identifier.")]
# Marks a field that may only come from the environment.
SECRET: JsonDict = {"secret": True}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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


class StoreSettings(_Section):
    url: str = Field(
        default="",
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db. "
        "Empty: a SQLite file `digest.db` in `data_dir`.",
    )


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
        description="Processes parsing big feeds in parallel; 0: one per core, 1: no pool.",
    )
    per_host: int = Field(
        default=1, ge=1, le=16, description="Fetches at once to any one host, at most."
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
        description="Allow this source on a loopback or private address (tests, an intranet).",
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
    title_prefix: str = Field(default="", description="Keep only items whose title starts so.")
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
        description="No decision in time: `skip` leaves the edition a draft and sends nothing; "
        "`send` approves and sends it.",
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


class OutboxSettings(_Section):
    dir: str = Field(default="", description="Folder for .eml files; empty: `data_dir`/outbox.")


class SmtpSettings(_Section):
    host: str = Field(default="localhost", description="SMTP server host.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="`starttls` (587), `tls` (implicit, 465) or `none`."
    )
    username: str = Field(default="", description="SMTP user; empty: no AUTH.")
    password: SecretStr = Field(
        default=SecretStr(""),
        description="SMTP password (env only: DIGEST__DELIVERY__SMTP__PASSWORD).",
        json_schema_extra=SECRET,
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per SMTP command.")


class ApiSettings(_Section):
    """What every HTTP provider shares."""

    base_url: str = Field(default="", description="API root.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds per API request.")


class PostmarkSettings(ApiSettings):
    base_url: str = Field(default="https://api.postmarkapp.com", description="API root.")
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Server API token (env only: DIGEST__DELIVERY__POSTMARK__TOKEN).",
        json_schema_extra=SECRET,
    )
    message_stream: str = Field(
        default="broadcast", description="Message stream; digests belong on a broadcast stream."
    )


class SendGridSettings(ApiSettings):
    base_url: str = Field(default="https://api.sendgrid.com", description="API root.")
    api_key: SecretStr = Field(
        default=SecretStr(""),
        description="API key with Mail Send access (env only: "
        "DIGEST__DELIVERY__SENDGRID__API_KEY).",
        json_schema_extra=SECRET,
    )


class MailgunSettings(ApiSettings):
    base_url: str = Field(
        default="https://api.mailgun.net", description="API root (EU: https://api.eu.mailgun.net)."
    )
    domain: str = Field(default="", description="Sending domain, e.g. `mg.example.org`.")
    api_key: SecretStr = Field(
        default=SecretStr(""),
        description="Private API key (env only: DIGEST__DELIVERY__MAILGUN__API_KEY).",
        json_schema_extra=SECRET,
    )


class RetrySettings(_Section):
    """How transient failures are tried again: exponential backoff with full jitter."""

    attempts: int = Field(
        default=5, ge=1, le=50, description="Tries per message before it is reported as given up."
    )
    base_delay: float = Field(
        default=30.0, ge=0, description="Seconds before the first retry; doubles each time."
    )
    max_delay: float = Field(
        default=3600.0, ge=0, description="Cap on one wait, Retry-After included (seconds)."
    )
    wait: float = Field(
        default=300.0,
        ge=0,
        description="How long one run waits for retries that come due; what is due later is "
        "left to the next run (seconds).",
    )
    request_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Tries of one API request that answered 429, 5xx or not at all.",
    )


REMOTE_PROVIDERS = ("smtp", "postmark", "sendgrid", "mailgun")


class DeliverySettings(_Section):
    provider: Literal["outbox", "smtp", "postmark", "sendgrid", "mailgun", "memory"] = Field(
        default="outbox", description="Where messages go."
    )
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Messages per batch.")
    sessions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Parallel sending sessions, each in its own process (SMTP connections, "
        "API requests in flight).",
    )
    rate: float = Field(
        default=0.0,
        ge=0,
        description="Messages per second at most, all sessions together; 0: no cap.",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    postmark: PostmarkSettings = Field(default_factory=PostmarkSettings)
    sendgrid: SendGridSettings = Field(default_factory=SendGridSettings)
    mailgun: MailgunSettings = Field(default_factory=MailgunSettings)


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
        description="The editors' secret for the edition pages (basic-auth password or bearer "
        "token; env only: DIGEST__WEB__EDITOR_TOKEN). Unset: editor pages answer on loopback "
        "only.",
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
        description="URL (http or https) the Prefect server POSTs a JSON alert to when a flow "
        "run fails or crashes: the run's name and id, the flow, the state, its message and a "
        "link to the run in the UI (null without a UI URL). Set up by `digest serve`; "
        "empty: no alerts.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+\S*$", v):
            raise ValueError("must be an http(s) URL")
        return v


class Settings(_Section):
    """The whole configuration of one publication."""

    data_dir: str = Field(
        default="var", description="Folder for the database and outbox, relative to this file."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key signing unsubscribe and preference tokens (env only: "
        "DIGEST__SECRET_KEY). Required for real providers.",
        json_schema_extra=SECRET,
    )
    old_secret_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Earlier signing keys, comma-separated, still accepted in links (key "
        "rotation; env only: DIGEST__OLD_SECRET_KEYS).",
        json_schema_extra=SECRET,
    )
    publication: PublicationSettings
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    sources: dict[Key, SourceSettings] = Field(min_length=1)
    sections: dict[Key, SectionSettings] = Field(min_length=1)
    digests: dict[Key, DigestSettings] = Field(min_length=1)
    render: RenderSettings = Field(default_factory=RenderSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    # Set by the loader, not by the file: where relative paths start.
    base_dir: Path = Field(default=Path("."), exclude=True, json_schema_extra={"internal": True})

    @model_validator(mode="after")
    def _references(self) -> Settings:
        problems = []
        for key, section in self.sections.items():
            for src in section.sources:
                if src not in self.sources:
                    problems.append(f"sections.{key}.sources: unknown source {src!r}")
        for key, dg in self.digests.items():
            for sec in dg.sections:
                if sec not in self.sections:
                    problems.append(f"digests.{key}.sections: unknown section {sec!r}")
            if dg.cards_per_section > dg.max_per_section:
                problems.append(f"digests.{key}.cards_per_section: larger than max_per_section")
        provider = self.delivery.provider
        if provider in REMOTE_PROVIDERS and not self.secret_key.get_secret_value():
            problems.append(
                "secret_key: required with a real provider; set DIGEST__SECRET_KEY in the "
                "environment"
            )
        for path in _secret_paths(Settings):
            value: Any = self
            for part in path:
                value = getattr(value, part)
            secret = value.get_secret_value()
            if secret != secret.strip() or not secret.isprintable():
                # Caught here, not in a request whose error message would quote it.
                problems.append(
                    f"{'.'.join(path)}: has spaces at either end or control characters "
                    "(a line break pasted with it?)"
                )
        needs = {
            "postmark": [("token", self.delivery.postmark.token)],
            "sendgrid": [("api_key", self.delivery.sendgrid.api_key)],
            "mailgun": [("api_key", self.delivery.mailgun.api_key)],
        }
        for name, value in needs.get(provider, []):
            if not value.get_secret_value():
                env = f"{ENV_PREFIX}DELIVERY__{provider.upper()}__{name.upper()}"
                problems.append(f"delivery.{provider}.{name}: required (set {env})")
        if provider == "mailgun" and not self.delivery.mailgun.domain:
            problems.append("delivery.mailgun.domain: required with the mailgun provider")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Derived locations -------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_path / 'digest.db'}"

    @property
    def outbox_path(self) -> Path:
        return (
            self.resolve(self.delivery.outbox.dir)
            if self.delivery.outbox.dir
            else (self.data_path / "outbox")
        )

    @property
    def links_base(self) -> str:
        return self.web.base_url or self.publication.links_base_url or self.publication.url

    @property
    def verifying_keys(self) -> list[str]:
        """Keys a link may be signed with, oldest first; the last one signs new links."""
        old = [k for k in self.old_secret_keys.get_secret_value().split(",") if k]
        return [*old, self.signing_key]

    @property
    def signing_key(self) -> str:
        """The token key; a fixed development key stands in only for local providers."""
        return self.secret_key.get_secret_value() or "insecure-development-key"


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of fields that may only come from the environment (dict levels skipped)."""
    out = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("secret"):
            out.append((*prefix, name))
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_secret_paths(ann, (*prefix, name)))
    return out


def _env_value(raw: str) -> Any:
    raw = raw.strip()
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``DIGEST__A__B=value`` variables (keys lower-cased)."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = _env_value(value)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def _problems(e: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and the reference)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if not err["loc"] and err["type"] == "value_error":
            # Cross-reference checks of the whole file name their own key paths.
            for part in msg.split("; "):
                path, _, m = part.partition(": ")
                out.append((path, m) if m else (loc, part))
            continue
        out.append((loc, msg))
    return out


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate a settings mapping merged with environment overrides; raise ConfigError."""
    environ = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    for path in _secret_paths(Settings):
        if _get(data, path):
            env = ENV_PREFIX + "__".join(p.upper() for p in path)
            problems.append(
                (".".join(path), f"secrets are read only from the environment; set {env}")
            )
    merged = _merge(dict(data), env_overrides(environ))
    merged.pop("base_dir", None)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(source, problems + _problems(e)) from None
    if problems:
        raise ConfigError(source, problems)
    return settings.model_copy(update={"base_dir": (base_dir or Path(".")).resolve()})


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate a TOML file. Raises ConfigError naming the file and keys."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [("(file)", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [("(file)", f"cannot read: {e}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [("(syntax)", str(e))]) from None
    return parse_settings(data, source=str(p), base_dir=p.parent, environ=environ)


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()


def reference_markdown() -> str:
    """Every key with its type, default and meaning, generated from the models."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `digest/config.py` by `digest config reference`; do not edit by hand.",
        "Every key can be overridden from the environment as `DIGEST__<PATH>` with `__` between",
        "levels, e.g. `DIGEST__DELIVERY__SMTP__HOST`. Keys marked *env only* must come from there.",
        "",
    ]

    def type_name(ann: Any) -> str:
        text = getattr(ann, "__name__", None) or str(ann)
        text = str(ann) if "[" in str(ann) else text
        return text.replace("typing.", "").replace("pydantic.types.", "")

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows = []
        nested: list[tuple[str, type[BaseModel]]] = []
        for name, f in model.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if extra.get("internal"):
                continue
            ann = f.annotation
            key = f"{prefix}{name}"
            args = getattr(ann, "__args__", ())
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((key, ann))
                continue
            if args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
                nested.append((f"{key}.<key>", args[-1]))
                continue
            if f.is_required():
                default = "*required*"
            elif f.default_factory is not None:
                default = f"`{f.default_factory()!r}`"  # type: ignore[call-arg]
            elif isinstance(f.default, SecretStr):
                default = "*env only*"
            else:
                default = f"`{f.default!r}`"
            desc = (f.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | `{type_name(ann)}` | {default} | {desc} |")
        title = prefix.rstrip(".") or "(top level)"
        lines.append(f"## `{title}`")
        if model.__doc__ and model is not Settings:
            lines.append("")
            lines.append(" ".join(model.__doc__.split()))
        lines.append("")
        if rows:
            lines.extend(["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows])
            lines.append("")
        for key, sub in nested:
            walk(sub, key + ".")

    walk(Settings, "")
    return "\n".join(lines).rstrip() + "\n"
