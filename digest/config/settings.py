"""The top-level ``Settings`` of one publication: the data folder and database, the signing
keys, every section of the file, the checks across them, and the locations derived from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator

from digest.config.base import ENV_PREFIX, SECRET, Key, _secret_paths, _Section
from digest.config.content import (
    DigestSettings,
    HttpSettings,
    PublicationSettings,
    RenderSettings,
    SectionSettings,
    SourceSettings,
)
from digest.config.delivery import CAMPAIGN_PROVIDERS, REMOTE_PROVIDERS, DeliverySettings
from digest.config.web import AlertSettings, AnalyticsSettings, WebhookSettings, WebSettings


class StoreSettings(_Section):
    url: str = Field(
        default="",
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user@host/db. "
        "Empty: a SQLite file `digest.db` in `data_dir`.",
    )


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
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)

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
                # Caught here, not in a request whose error message would quote it; never
                # stripped, since a value that is not what the provider issued is a mistake.
                env = ENV_PREFIX + "__".join(p.upper() for p in path)
                problems.append(
                    f"{'.'.join(path)}: has white space at either end or control characters "
                    f"(a line break pasted with it?): set {env} to the value alone"
                )
        needs = {
            "postmark": [("token", self.delivery.postmark.token)],
            "sendgrid": [("api_key", self.delivery.sendgrid.api_key)],
            "mailgun": [("api_key", self.delivery.mailgun.api_key)],
            "mailchimp": [("api_key", self.delivery.mailchimp.api_key)],
            "listmonk": [("token", self.delivery.listmonk.token)],
        }
        for name, value in needs.get(provider, []):
            if not value.get_secret_value():
                env = f"{ENV_PREFIX}DELIVERY__{provider.upper()}__{name.upper()}"
                problems.append(f"delivery.{provider}.{name}: required (set {env})")
        if provider == "mailgun" and not self.delivery.mailgun.domain:
            problems.append("delivery.mailgun.domain: required with the mailgun provider")
        problems.extend(_campaign_problems(self.delivery))
        if provider in CAMPAIGN_PROVIDERS:
            problems.extend(_per_subscriber_problems(self))
        if self.delivery.shards > 1 and not self.database_url.startswith("postgresql"):
            problems.append(
                f"delivery.shards: {self.delivery.shards} shards need a shared PostgreSQL "
                "store (store.url = postgresql+psycopg://...), as SQLite is one machine's: "
                "set shards = 1 and raise delivery.sessions instead"
            )
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
        """The web app's public address: ``web.base_url``, else ``publication.links_base_url``,
        else ``publication.url``. Every link to the app (in emails, artifacts) starts with it."""
        return self.web.base_url or self.publication.links_base_url or self.publication.url

    def editions_url(self, edition_id: str = "") -> str:
        """The editors' page of ``edition_id`` on the web app (or, without one, their list of
        editions), at :attr:`links_base`."""
        url = f"{self.links_base}/editions"
        return f"{url}/{quote(edition_id, safe='')}" if edition_id else url

    def per_subscriber_clicks(self, digest: str) -> bool:
        """Whether the click links of ``digest`` name each subscriber: click tracking on, and
        its ``per_subscriber_clicks`` (or, unset, ``analytics.per_subscriber``) on."""
        found = self.digests.get(digest)
        if not (found and found.click_tracking):
            return False
        chosen = found.per_subscriber_clicks
        return self.analytics.per_subscriber if chosen is None else chosen

    @property
    def verifying_keys(self) -> list[str]:
        """Keys a link may be signed with, oldest first; the last one signs new links."""
        old = [k for k in self.old_secret_keys.get_secret_value().split(",") if k]
        return [*old, self.signing_key]

    @property
    def signing_key(self) -> str:
        """The token key; a fixed development key stands in only for local providers."""
        return self.secret_key.get_secret_value() or "insecure-development-key"


def _campaign_problems(delivery: DeliverySettings) -> list[str]:
    """What a campaign provider needs besides its secret: where the list is."""
    problems = []
    if delivery.provider == "mailchimp":
        mc = delivery.mailchimp
        if not mc.list_id:
            problems.append("delivery.mailchimp.list_id: required with the mailchimp provider")
        key = mc.api_key.get_secret_value()
        if not (mc.base_url or mc.server_prefix or "-" in key):
            problems.append(
                "delivery.mailchimp.server_prefix: required when the API key has no "
                "`-<datacenter>` suffix"
            )
    if delivery.provider == "listmonk":
        lm = delivery.listmonk
        if not lm.base_url:
            problems.append("delivery.listmonk.base_url: required with the listmonk provider")
        if not lm.api_user:
            problems.append("delivery.listmonk.api_user: required with the listmonk provider")
        if not lm.list_ids:
            problems.append("delivery.listmonk.list_ids: at least one list id is required")
    return problems


def _per_subscriber_problems(settings: Settings) -> list[str]:
    """Per-subscriber clicks with a campaign provider: refused, since the provider owns the list
    and builds every copy itself, so no copy can carry a subscriber's own click links."""
    out = []
    for key, dg in settings.digests.items():
        if settings.per_subscriber_clicks(key):
            where = (
                "analytics.per_subscriber"
                if dg.per_subscriber_clicks is None
                else f"digests.{key}.per_subscriber_clicks"
            )
            out.append(
                f"{where}: not possible with delivery.provider = "
                f"{settings.delivery.provider!r} (it owns the list and makes each copy, so "
                f"links cannot name our subscribers; digest {key!r}); turn it off, clicks are "
                "still counted per article"
            )
    return out
