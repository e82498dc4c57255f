"""Email addresses as the store keeps them: one check and one normal form for every way in
(sign-up, CSV import, the command line).

Callers that speak to a person translate :class:`InvalidAddress` into their own words (the
sign-up page's sentence, the importer's per-row problem); the reason is email-validator's.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """Not a valid email address. ``address`` is what was given (white space stripped),
    ``reason`` why it is refused."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.reason = reason


def normalise_email(raw: str) -> str:
    """The address in its normal form (syntax checked, domain lower-cased, Unicode NFKC), as the
    store keeps it. The domain is not looked up. Raises InvalidAddress.

    NFKC folds compatibility characters into the ones they stand for (fullwidth ``ｂｏｂ`` and
    ``＠``, the ligature ``ﬁ``), so one person cannot hold two subscriptions that look the same."""
    address = raw.strip()
    try:
        compatible = unicodedata.normalize("NFKC", address)
        return validate_email(compatible, check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise InvalidAddress(address, str(e)) from None
