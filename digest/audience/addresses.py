"""Email addresses as the store keeps them: one check and one normal form for every way in
(sign-up, CSV import, the command line).

Callers that speak to a person translate :class:`InvalidAddress` into their own words (the
sign-up page's sentence, the importer's per-row problem); the reason is email-validator's.
"""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, ValidatedEmail, validate_email

# RFC 5322's dot-atom of plain ASCII: a local part email-validator takes as it is.
_ATEXT = r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+"
_PLAIN_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")
# Local parts email-validator lower-cases (RFC 2142's role mailboxes): left to it.
# fmt: off
_ROLE_MAILBOXES = frozenset({
    "info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster",
    "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
})
# fmt: on
# The longest address, in UTF-8 bytes (RFC 5321, as email-validator checks it).
_MAX_LENGTH = 254


class InvalidAddress(ValueError):
    """Not a valid email address. ``address`` is what was given (white space stripped),
    ``reason`` why it is refused."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.reason = reason


def _validated(address: str) -> ValidatedEmail:
    try:
        compatible = unicodedata.normalize("NFKC", address)
        return validate_email(compatible, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidAddress(address, str(e)) from None


def normalise_email(raw: str) -> str:
    """The address in its normal form (syntax checked, domain lower-cased, Unicode NFKC), as the
    store keeps it. The domain is not looked up. Raises InvalidAddress.

    NFKC folds compatibility characters into the ones they stand for (fullwidth ``ｂｏｂ`` and
    ``＠``, the ligature ``ﬁ``), so one person cannot hold two subscriptions that look the same."""
    return str(_validated(raw.strip()).normalized)


class AddressNormaliser:
    """``normalise_email`` for a long list: the same answers, the domain's check done once.

    Checking the part after the ``@`` is most of email-validator's work, and a list has few
    domains. An address whose local part is plain ASCII (a dot-atom, no role mailbox that
    email-validator lower-cases) and whose domain was seen valid is put together from the two
    parts, its lengths checked as email-validator checks them; any other goes to
    ``normalise_email``. At most ``domains`` domains are remembered."""

    def __init__(self, domains: int = 10_000) -> None:
        self._limit = domains
        # The domain as given → (NFKC, normal form, IDNA ASCII form).
        self._domains: dict[str, tuple[str, str, str]] = {}

    def __call__(self, raw: str) -> str:
        address = raw.strip()
        local, at, domain = address.partition("@")
        plain = (
            bool(at)
            and "@" not in domain
            and _PLAIN_LOCAL.match(local) is not None
            and local.lower() not in _ROLE_MAILBOXES
        )
        known = self._domains.get(domain) if plain else None
        if known is not None:
            compatible, normal, ascii_domain = known
            result = f"{local}@{normal}"
            if (
                max(
                    len(f"{local}@{compatible}".encode()),
                    len(result.encode()),
                    len(local) + 1 + len(ascii_domain),
                )
                <= _MAX_LENGTH
            ):
                return result
        valid = _validated(address)
        if plain and len(self._domains) < self._limit and valid.local_part == local:
            self._domains[domain] = (
                unicodedata.normalize("NFKC", domain),
                str(valid.domain),
                str(valid.ascii_domain),
            )
        return str(valid.normalized)
