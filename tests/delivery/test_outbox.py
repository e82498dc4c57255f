"""OutboxProvider: .eml files written atomically, idempotently, under safe names."""

from __future__ import annotations

import email
import os
from pathlib import Path

import pytest

from digest.delivery import outbox
from digest.delivery.outbox import OutboxProvider, safe_name, write_previews
from digest.errors import PermanentDeliveryError
from digest.models import SendStatus

from . import EDITION, assert_one_per_message, make_message


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_writes_one_parseable_eml_per_message(tmp_path: Path) -> None:
    messages = [make_message(f"r{i}@example.org", n=i, key=f"k{i}") for i in range(3)]
    with OutboxProvider(tmp_path / "outbox") as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert all(r.status is SendStatus.SUBMITTED for r in results)
    assert [r.provider_id for r in results] == [f"{EDITION}/k{i}.eml" for i in range(3)]
    for message, result in zip(messages, results, strict=True):
        data = (tmp_path / "outbox" / result.provider_id).read_bytes()
        assert data == message.raw
        parsed = email.message_from_bytes(data)
        assert parsed["To"] == message.recipient
        assert parsed["Message-ID"] == message.message_id
    # Atomic writes leave no temp files behind.
    assert _all_files(tmp_path / "outbox") == [f"{EDITION}/k{i}.eml" for i in range(3)]


def test_same_key_twice_overwrites(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path)
    first = make_message("old@example.org", key="same")
    second = make_message("new@example.org", key="same")
    (r1,) = provider.send([first])
    (r2,) = provider.send([second])
    assert r1.provider_id == r2.provider_id
    assert (tmp_path / r2.provider_id).read_bytes() == second.raw
    assert _all_files(tmp_path) == [r2.provider_id]


def test_unsafe_keys_and_edition_ids_stay_inside_the_outbox(tmp_path: Path) -> None:
    provider = OutboxProvider(tmp_path / "out")
    messages = [
        make_message(key="weekly-2026-W48/17"),
        make_message(key="weekly-2026-W48:17"),  # would collide with the one above if only replaced
        make_message(key="../../etc/passwd", edition_id=".."),
        make_message(key="ünïcode key"),
    ]
    results = provider.send(messages)
    ids = [r.provider_id for r in results]
    assert all(r.status is SendStatus.SUBMITTED for r in results)
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith(f"{EDITION}/weekly-2026-W48_17-") and ids[0].endswith(".eml")
    for pid in ids:
        path = (tmp_path / "out" / pid).resolve()
        assert path.is_relative_to((tmp_path / "out").resolve())
        assert path.is_file()
        name = path.name
        assert not name.startswith(".") and all(c.isalnum() or c in "._-" for c in name)
        assert name.isascii()
    assert not (tmp_path / "etc").exists()


def test_safe_name_is_stable_and_leaves_safe_names_alone() -> None:
    assert safe_name("weekly-2026-W48.3_a") == "weekly-2026-W48.3_a"
    assert safe_name("a/b") == safe_name("a/b") != safe_name("a:b")
    assert safe_name("..").startswith("_.-")
    long = safe_name("x" * 300)
    assert len(long) < 140 and long != safe_name("x" * 299)


def test_failed_write_is_a_transient_result_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def flaky_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second message's file
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(outbox.os, "fsync", flaky_fsync)
    messages = [make_message(n=i, key=f"k{i}") for i in range(3)]
    results = OutboxProvider(tmp_path).send(messages)
    assert_one_per_message(messages, results)
    assert [r.status for r in results] == [
        SendStatus.SUBMITTED,
        SendStatus.TRANSIENT,
        SendStatus.SUBMITTED,
    ]
    assert "No space left" in results[1].reason
    assert _all_files(tmp_path) == [f"{EDITION}/k0.eml", f"{EDITION}/k2.eml"]


def test_unusable_outbox_raises_before_the_batch(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermanentDeliveryError, match="outbox"):
        OutboxProvider(blocker / "outbox").send([make_message()])
    assert OutboxProvider(blocker).send([]) == []


def test_write_previews(tmp_path: Path) -> None:
    folder = write_previews(tmp_path, EDITION, "<h1>Héllo</h1>", "Héllo\n")
    assert folder == tmp_path / EDITION
    assert (folder / "index.html").read_text(encoding="utf-8") == "<h1>Héllo</h1>"
    assert (folder / "digest.txt").read_text(encoding="utf-8") == "Héllo\n"
    write_previews(tmp_path, EDITION, "<h1>v2</h1>", "v2\n")
    assert (folder / "index.html").read_text(encoding="utf-8") == "<h1>v2</h1>"
    assert _all_files(tmp_path) == [f"{EDITION}/digest.txt", f"{EDITION}/index.html"]
