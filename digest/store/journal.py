"""The send journal: each provider answer written down the moment it is known.

The ledger is updated once per batch (one transaction, not one per message). Between the
provider's answer and that transaction, a crash would forget which messages went out, and a
re-run would send them again. So every answer is first appended to a journal file, one line
per message, before the next message is attempted; the write goes to the operating system at
once (no buffering in this process), so it survives the process being killed (``kill -9``),
though not the machine losing power.

When a run starts delivering an edition (holding its lock), it replays the journals earlier
runs left behind into the ledger, for rows still ``sending``, before it gives the rest back to
the queue. What is then sent twice is only what was in flight when the crash came: at most one
message per SMTP session, one request per API session.

Files live under ``<data_dir>/journal/<edition id>/``, one per sending process. A run that
finishes deletes its own. For runs of one edition on several machines, ``data_dir`` must be on
storage they share, or a crash on one machine is replayed only by a re-run on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path

from digest.models import SendResult, SendStatus

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def edition_dir(root: Path, edition_id: str) -> Path:
    return root / _UNSAFE.sub("_", edition_id)


class Journal:
    """An append-only file of ``(delivery id, result)`` lines for one edition and process."""

    def __init__(self, root: Path, edition_id: str) -> None:
        folder = edition_dir(root, edition_id)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )

    def write(self, delivery_id: int, result: SendResult) -> None:
        """Append one answer; an ``os.write`` of one short line, so a kill never half-writes
        anything but the last line (which :func:`replay` skips)."""
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        line: dict[str, object] = {"d": delivery_id, "s": result.status.value, "k": result.key}
        if result.provider_id:
            line["p"] = result.provider_id
        if result.reason:
            line["r"] = result.reason
        if result.bounce:
            line["b"] = 1
        if result.retry_after is not None:
            line["a"] = result.retry_after
        os.write(self._fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())

    def close(self, *, remove: bool) -> None:
        """Close the file; ``remove`` once every answer in it is in the ledger."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# Which answer stands when a row has several (it was retried, perhaps by another process):
# a row is tried again only after a transient failure, so a final answer is the last one.
_RANK = {SendStatus.TRANSIENT: 0, SendStatus.PERMANENT: 1, SendStatus.SUBMITTED: 2}


def replay(root: Path, edition_id: str) -> dict[int, SendResult]:
    """Every answer the journals of ``edition_id`` hold, one per row: submitted or permanent
    over transient, whatever the order of the files (each process writes its own)."""
    out: dict[int, SendResult] = {}
    folder = edition_dir(root, edition_id)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            try:
                line = json.loads(raw)
                delivery_id = int(line["d"])
                result = SendResult(
                    key=str(line["k"]),
                    status=SendStatus(line["s"]),
                    provider_id=str(line.get("p", "")),
                    reason=str(line.get("r", "")),
                    bounce=bool(line.get("b", 0)),
                    retry_after=line.get("a"),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that message counts as in flight
            known = out.get(delivery_id)
            if known is None or _RANK[result.status] >= _RANK[known.status]:
                out[delivery_id] = result
    return out


def discard(root: Path, edition_id: str) -> None:
    """Remove the edition's journals once their answers are in the ledger."""
    folder = edition_dir(root, edition_id)
    if not folder.is_dir():
        return
    for path in folder.glob("*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()
