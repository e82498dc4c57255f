"""What a provider's webhook request is read into: events reduced to what the audience needs, the
counts a request answers with, and the refusal of a request."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from digest.errors import PermanentError

Provider = Literal["sendgrid", "postmark", "mailgun"]
Kind = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "ignored"]


class WebhookRefused(PermanentError):
    """A webhook request was not accepted; ``status`` is the HTTP status to answer with (401:
    not authenticated, or the provider is not configured; 400: the body cannot be read).
    Messages never quote a secret."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event, reduced to what the audience needs."""

    provider: Provider
    event_id: str
    email: str
    kind: Kind
    reason: str = ""
    delivery: str | None = None  # the ledger key the message was sent with, when given back


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """Counts for one request: ``received`` = ``applied`` + ``duplicates`` + ``ignored``."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
