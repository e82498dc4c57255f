"""Where messages go: the provider choice with each provider's settings, the outbox,
batching and sending rate, and how transient failures are retried."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from digest.config.base import SECRET, _Section


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
    envelope_ahead: bool = Field(
        default=True,
        description="With PIPELINING, send each message's envelope in the same write as the "
        "body before it (one round trip a message); false: only after that body's reply, for "
        "a server that mishandles commands right after the end of data.",
    )


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


class MailchimpSettings(ApiSettings):
    """Mailchimp owns the list: each edition variant becomes one campaign for an audience."""

    base_url: str = Field(
        default="",
        description="API root; empty: `https://<server_prefix>.api.mailchimp.com/3.0`.",
    )
    api_key: SecretStr = Field(
        default=SecretStr(""),
        description="Marketing API key, ending in `-<datacenter>` (env only: "
        "DIGEST__DELIVERY__MAILCHIMP__API_KEY).",
        json_schema_extra=SECRET,
    )
    server_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9]*$",
        description="Datacenter, e.g. `us21`; empty: the API key's suffix after its last `-`.",
    )
    list_id: str = Field(default="", description="The audience (list) id campaigns go to.")
    segments: dict[str, int] = Field(
        default_factory=dict,
        description="Saved segment or tag id per variant: `all` for the full edition, the "
        'section keys joined by `+` (sorted) for a variant, e.g. `{ "tech+world" = 42 }`. '
        "Only variants named here besides `all` get a campaign.",
    )
    schedule_minutes: int = Field(
        default=0,
        ge=0,
        description="0: each campaign is sent as soon as it is handed over. Otherwise it is "
        "scheduled this many minutes after the hand-over, rounded up to the next quarter hour "
        "(Mailchimp schedules only at :00, :15, :30 and :45 UTC).",
    )


class ListmonkSettings(ApiSettings):
    """listmonk owns the list: each edition variant becomes one campaign for its lists."""

    base_url: str = Field(
        default="", description="Where listmonk answers, e.g. `https://lists.example.org`."
    )
    api_user: str = Field(default="", description="API user (Admin → Users → API user).")
    token: SecretStr = Field(
        default=SecretStr(""),
        description="The API user's token (env only: DIGEST__DELIVERY__LISTMONK__TOKEN).",
        json_schema_extra=SECRET,
    )
    list_ids: list[int] = Field(
        default_factory=list, description="Lists the full edition's campaign goes to."
    )
    lists: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Lists per variant (section keys joined by `+`, sorted); only variants "
        "named here get a campaign besides the full edition.",
    )
    schedule_minutes: int = Field(
        default=0,
        ge=0,
        description="0: each campaign starts as soon as it is handed over. Otherwise listmonk "
        "is given `send_at` this many minutes after the hand-over and the campaign is "
        "`scheduled`.",
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
# These hand over whole editions: the provider owns the list and sends each recipient's copy.
CAMPAIGN_PROVIDERS = ("mailchimp", "listmonk")


class DeliverySettings(_Section):
    provider: Literal[
        "outbox", "smtp", "postmark", "sendgrid", "mailgun", "mailchimp", "listmonk", "memory"
    ] = Field(
        default="outbox",
        description="Where messages go; `mailchimp` and `listmonk` hand each edition over as "
        "campaigns to a list kept there.",
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
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Flow runs of the `deliver-shard` deployment that send one edition "
        "together, each on any worker of the work pool with its own `sessions` (PostgreSQL "
        "only); 1: the edition run sends it alone.",
    )
    claim_ttl: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description="Seconds a sending run's claim on its ledger rows lasts unless renewed "
        "(a heartbeat renews it); once out, another run settles a dead one's rows.",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    postmark: PostmarkSettings = Field(default_factory=PostmarkSettings)
    sendgrid: SendGridSettings = Field(default_factory=SendGridSettings)
    mailgun: MailgunSettings = Field(default_factory=MailgunSettings)
    mailchimp: MailchimpSettings = Field(default_factory=MailchimpSettings)
    listmonk: ListmonkSettings = Field(default_factory=ListmonkSettings)
