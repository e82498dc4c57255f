"""The settings schema and its loader.

Settings come from one TOML file plus environment overrides named ``DIGEST__SECTION__KEY``
(double underscores separate levels). Secrets (passwords, API keys, the signing key) are read
only from the environment. Everything is validated once, at start, and every problem is reported
with its key path, so a bad file fails fast and says where.

Relative paths in the file (``data_dir``, a source's ``path``) are relative to the file itself.

The package: ``base`` (the shared base model and secret marker), ``content`` (publication,
sources, sections, digests, rendering), ``delivery`` (providers and retries), ``web`` (web app,
webhooks, alerts), ``settings`` (the top-level ``Settings``), ``loader`` (TOML and environment)
and ``reference`` (the generated JSON schema and Markdown reference).
"""

from digest.config.base import ENV_PREFIX, KEY_RE, SECRET, Key
from digest.config.content import (
    DigestSettings,
    HttpSettings,
    PublicationSettings,
    RenderSettings,
    ScheduleSettings,
    SectionSettings,
    SourceSettings,
)
from digest.config.delivery import (
    CAMPAIGN_PROVIDERS,
    REMOTE_PROVIDERS,
    ApiSettings,
    DeliverySettings,
    ListmonkSettings,
    MailchimpSettings,
    MailgunSettings,
    OutboxSettings,
    PostmarkSettings,
    RetrySettings,
    SendGridSettings,
    SmtpSettings,
)
from digest.config.loader import env_overrides, load_settings, parse_settings
from digest.config.reference import json_schema, reference_markdown
from digest.config.settings import Settings, StoreSettings
from digest.config.web import AlertSettings, WebhookSettings, WebSettings

__all__ = [
    "CAMPAIGN_PROVIDERS",
    "ENV_PREFIX",
    "KEY_RE",
    "REMOTE_PROVIDERS",
    "SECRET",
    "AlertSettings",
    "ApiSettings",
    "DeliverySettings",
    "DigestSettings",
    "HttpSettings",
    "Key",
    "ListmonkSettings",
    "MailchimpSettings",
    "MailgunSettings",
    "OutboxSettings",
    "PostmarkSettings",
    "PublicationSettings",
    "RenderSettings",
    "RetrySettings",
    "ScheduleSettings",
    "SectionSettings",
    "SendGridSettings",
    "Settings",
    "SmtpSettings",
    "SourceSettings",
    "StoreSettings",
    "WebSettings",
    "WebhookSettings",
    "env_overrides",
    "json_schema",
    "load_settings",
    "parse_settings",
    "reference_markdown",
]
