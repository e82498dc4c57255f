"""The outbox provider: messages become ``.eml`` files in a folder instead of being sent.

It is the offline default and what an operator inspects before switching to a real provider.
Layout: ``<directory>/<edition>/<key>.eml`` (names made safe by :func:`safe_name`), plus the
edition previews ``index.html`` and ``digest.txt`` written by :func:`write_previews`.

Every file is written atomically (temp file in the same folder, fsync, ``os.replace``), so a
crash leaves either the old file or the new one, never half of one; writing the same key again
replaces the file, which makes re-runs idempotent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from digest.delivery.base import OnResult, ProviderBase, report, submitted, transient
from digest.errors import PermanentDeliveryError, TransientDeliveryError
from digest.models import OutgoingMessage, SendResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# Leaves room for a hash suffix and ".eml" well under the common 255-byte name limit.
_MAX_NAME = 120
# Errors of the folder itself that waiting will not fix.
_PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})

PREVIEW_HTML = "index.html"
PREVIEW_TEXT = "digest.txt"


def safe_name(value: str) -> str:
    """A stable, readable file name for ``value``: unsafe characters become ``_``.

    When anything had to change (or the name is long), a short hash of the original is
    appended, so that distinct keys such as ``a/b`` and ``a:b`` never share a file. A leading
    dot is replaced too: no hidden files, and never ``.`` or ``..``.
    """
    name = _UNSAFE.sub("_", value)
    if name.startswith("."):
        name = "_" + name[1:]
    if name != value or not name or len(name) > _MAX_NAME:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
        name = f"{name[:_MAX_NAME]}-{digest}"
    return name


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the complete new one.

    The temp file is hidden and ends in ``.tmp`` so a leftover from a hard kill is easy to tell
    apart from a finished message.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dirs(folders: Iterable[Path]) -> None:
    """Persist the renames themselves (a file's fsync does not cover its directory entry)."""
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:  # e.g. Windows cannot open a directory; the rename is still atomic
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def write_previews(directory: Path, edition_id: str, html: str, text: str) -> Path:
    """Write an edition's ``index.html`` and ``digest.txt`` into its folder; return the folder."""
    folder = Path(directory) / safe_name(edition_id)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / PREVIEW_HTML, html.encode("utf-8"))
    _atomic_write(folder / PREVIEW_TEXT, text.encode("utf-8"))
    _fsync_dirs([folder])
    return folder


class OutboxProvider(ProviderBase):
    """Writes each message to ``<directory>/<edition>/<key>.eml``.

    ``provider_id`` is the file's path relative to ``directory`` (with ``/``), so an operator
    can find the file from the ledger. Files are created readable by the owner only: they hold
    subscribers' addresses and personal links.
    """

    name = "outbox"
    raw_only = True

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where ``message`` is (or would be) written."""
        return self.directory / safe_name(message.edition_id) / f"{safe_name(message.key)}.eml"

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            # The outbox itself is unusable: nothing of the batch can be attempted.
            error = (
                PermanentDeliveryError if e.errno in _PERMANENT_ERRNOS else TransientDeliveryError
            )
            raise error(f"provider 'outbox': cannot create {self.directory}: {e}") from e
        results: list[SendResult] = []
        touched: set[Path] = set()
        for message in messages:
            path = self.path_for(message)
            try:
                path.parent.mkdir(exist_ok=True)
                _atomic_write(path, message.raw)
            except OSError as e:
                # A full or failing disk says nothing about the recipient: never permanent.
                report(results, transient(message.key, f"cannot write {path}: {e}"), on_result)
                continue
            touched.add(path.parent)
            name = path.relative_to(self.directory).as_posix()
            report(results, submitted(message.key, name), on_result)
        # Sync once per folder and batch rather than per file; results are only returned after.
        _fsync_dirs(touched)
        return results
