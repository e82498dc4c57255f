"""The one place where settings become adapters: store, fetcher, provider, campaign provider."""

from __future__ import annotations

from digest.config import CAMPAIGN_PROVIDERS, Settings
from digest.delivery.base import Provider
from digest.delivery.campaigns.base import CampaignProvider
from digest.errors import PermanentDeliveryError
from digest.gather.http import Fetcher
from digest.store import Store


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url)


def make_fetcher(settings: Settings) -> Fetcher:
    return Fetcher(settings.http)


def make_provider(settings: Settings, *, dry_run: bool = False) -> Provider:
    """The configured provider; ``dry_run`` swaps in the in-memory one."""
    name = "memory" if dry_run else settings.delivery.provider
    if name == "memory":
        from digest.delivery.memory import MemoryProvider

        # A dry run's messages are built to be counted, not kept: its memory stays bounded.
        return MemoryProvider(keep=not dry_run)
    if name == "outbox":
        from digest.delivery.outbox import OutboxProvider

        return OutboxProvider(settings.outbox_path)
    if name == "smtp":
        from digest.delivery.smtp import SmtpProvider

        return SmtpProvider(settings.delivery.smtp)
    if name == "postmark":
        from digest.delivery.postmark import PostmarkProvider

        return PostmarkProvider(settings.delivery.postmark, settings.delivery.retry)
    if name == "sendgrid":
        from digest.delivery.sendgrid import SendGridProvider

        return SendGridProvider(settings.delivery.sendgrid, settings.delivery.retry)
    if name == "mailgun":
        from digest.delivery.mailgun import MailgunProvider

        return MailgunProvider(settings.delivery.mailgun, settings.delivery.retry)
    if name in CAMPAIGN_PROVIDERS:
        raise PermanentDeliveryError(
            f"provider {name} owns the list and takes whole editions as campaigns; it cannot "
            "send single messages (test sends, confirmations): configure another provider for "
            "those"
        )
    raise ValueError(f"unknown provider {name!r}")


def make_campaign_provider(settings: Settings) -> CampaignProvider | None:
    """The configured provider when it owns the list (Mailchimp, listmonk); else None."""
    name, delivery = settings.delivery.provider, settings.delivery
    if name == "mailchimp":
        from digest.delivery.campaigns.mailchimp import MailchimpCampaigns

        return MailchimpCampaigns(delivery.mailchimp, settings.publication, delivery.retry)
    if name == "listmonk":
        from digest.delivery.campaigns.listmonk import ListmonkCampaigns

        return ListmonkCampaigns(delivery.listmonk, settings.publication, delivery.retry)
    return None
