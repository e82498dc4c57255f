"""Delivery: hand finished messages to whatever sends them.

This package owns the *provider* port and its adapters. It knows nothing of the ledger, the
store or Prefect: the deliver stage gives a provider a batch of
:class:`~digest.models.OutgoingMessage` and gets back one :class:`~digest.models.SendResult`
per message, which it records. Nor does it know the render stage: a message's
:class:`~digest.models.BodyTemplate` carries its bodies already cut at the personal tokens, and
``OutgoingMessage.tokens`` their values, so a provider that substitutes per recipient needs no
token syntax of its own.

- ``base``: the :class:`~digest.delivery.base.Provider` protocol, its contract, and helpers
  that build results.
- ``memory``: an in-memory fake with scripted failures, shared by tests and ``--dry-run``.
- ``outbox``: writes ``.eml`` files (and edition previews) to a folder; the offline default.
- ``smtp``: submits to an SMTP server over one reused connection.

Adapters never import one another; the one factory that turns settings into a provider lives
outside this package.
"""
