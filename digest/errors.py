"""The error tree.

Every error says whether trying again can help (``retryable``), so orchestration can retry
transient failures and stop at permanent ones, and every message names the ids involved.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error the project raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        hint = "a retry may help" if self.retryable else "a retry will not help"
        return f"{self.message} ({hint})"


class TransientError(DigestError):
    """Something outside us failed in a way that may pass: network, 5xx, SMTP 4xx, a lock."""

    retryable = True


class PermanentError(DigestError):
    """Trying again with the same input fails the same way."""

    retryable = False


class StoreUnusable(PermanentError):
    """The store cannot be opened where the settings put it: a data folder that cannot be made,
    a file that is not a database. The operator's to fix; the message says what and where."""


class ConfigError(PermanentError):
    """The configuration is invalid. ``problems`` lists ``(key path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration\n{lines}")

    def __str__(self) -> str:
        return self.message


class FetchError(DigestError):
    """Fetching a source or page failed. Subclasses decide whether a retry helps."""


class TransientFetchError(FetchError, TransientError):
    """Timeouts, connection failures, 408, 429 and 5xx."""


class PermanentFetchError(FetchError, PermanentError):
    """4xx, refused addresses and schemes, bodies over the size cap."""


class FeedError(PermanentError):
    """The bytes of a feed could not be turned into articles (malformed or hostile XML)."""


class RenderError(PermanentError):
    """An edition could not be rendered into an acceptable email."""


class DeliveryError(DigestError):
    """A provider failed as a whole (not per message)."""


class TransientDeliveryError(DeliveryError, TransientError):
    """The provider is unreachable or overloaded; the batch can be tried again."""


class PermanentDeliveryError(DeliveryError, PermanentError):
    """The provider refused the batch (bad credentials, bad request)."""


class DeliveryLocked(TransientError):
    """Another run is delivering the same edition right now."""


class NothingNew(DigestError):
    """Composition found too few new articles; no edition, no email. Not a failure."""

    retryable = False


class EditionStateError(PermanentError):
    """An action on an edition its status does not allow, or that lost a race to another
    decision. ``status`` is the edition's status in the store now (``""``: there is none),
    ``action`` what was refused, ``expected`` the status the caller had seen (if it said)."""

    def __init__(
        self, edition_id: str, status: str, action: str, *, expected: str = "", allowed: str = ""
    ) -> None:
        self.edition_id = edition_id
        self.status = status
        self.action = action
        self.expected = expected
        # People's words for the statuses (``digest.models.edition_state``: the value, spaced).
        status, expected = status.replace("_", " "), expected.replace("_", " ")
        allowed = allowed.replace("_", " ")
        if not status:
            message = f"edition {edition_id}: no such edition; {action} refused"
        elif expected and expected != status:
            message = (
                f"edition {edition_id} is {status} now, no longer {expected}: "
                f"{action} refused (another decision came first)"
            )
        elif status == "rejected":
            message = (
                f"edition {edition_id} is rejected, and a rejection is final: {action} refused"
            )
        elif status in ("sending", "sent"):
            message = (
                f"edition {edition_id} is {status}; it can no longer be changed: {action} refused"
            )
        else:
            message = f"edition {edition_id} is {status}: {action} refused (allowed from {allowed})"
        super().__init__(message)
