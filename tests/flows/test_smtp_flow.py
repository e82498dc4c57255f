"""The edition flow delivering over SMTP to a real server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import parse_settings
from digest.models import NewSubscriber
from digest.store import Store
from tests.conftest import base_config, write_toml
from tests.delivery.test_smtp import smtp_server

pytestmark = pytest.mark.flows

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def test_smtp_delivery_and_a_safe_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import run_flow

    monkeypatch.setenv("DIGEST__SECRET_KEY", "test-signing-key")
    with smtp_server() as server:
        data = base_config(tmp_path / "var")
        data["delivery"] = {
            "provider": "smtp",
            "batch_size": 3,
            # Leave retries to the next run (a run would otherwise wait for them).
            "retry": {"wait": 0, "base_delay": 60},
            "smtp": {"host": "127.0.0.1", "port": server.controller.port, "security": "none"},
        }
        cfg = write_toml(tmp_path / "pub.toml", data)
        settings = parse_settings(data, environ={"DIGEST__SECRET_KEY": "k"})
        store = Store.open(settings.database_url)
        people = [
            NewSubscriber(email="zoe@example.org", name="Zoë Müller"),
            NewSubscriber(email="ana@example.org", name="Ana Lima"),
            NewSubscriber(email="bounce@example.org"),
            NewSubscriber(email="later@example.org"),
            NewSubscriber(email="qiosk-only@example.org", sections=frozenset({"qiosk"})),
        ]
        store.import_subscribers(people, now=NOW)

        first = run_flow(str(cfg), "weekly", NOW)
        assert (first["submitted"], first["permanent"], first["transient"]) == (3, 1, 1), first[
            "failures"
        ]
        assert "550" in " ".join(first["failures"]) and "451" in " ".join(first["failures"])
        # 550 5.1.1 (no such user) is a hard bounce: the address is suppressed.
        assert first["suppressed"] == 1
        assert "bounce@example.org" not in {s.email for s in store.active_subscribers()}
        # Several batches (batch_size 3), one SMTP connection for the whole run.
        assert len(server.handler.peers) == 1

        arrived = {
            r.rcpt_tos[0]: email.message_from_bytes(r.content, policy=email.policy.default)
            for r in server.handler.received
        }
        assert set(arrived) == {"zoe@example.org", "ana@example.org", "qiosk-only@example.org"}
        zoe = arrived["zoe@example.org"]
        assert zoe["To"].addresses[0].display_name == "Zoë Müller"
        assert zoe["Message-ID"] == f"<{first['edition_id']}.1@meridian.example.org>"
        assert zoe["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = zoe.get_body(("html",)).get_content()
        text = zoe.get_body(("plain",)).get_content()
        assert "Hello Zoë Müller," in text and "Zoë Müller" in html
        # Personal links differ per subscriber; the compiled body is otherwise the same.
        ana_html = arrived["ana@example.org"].get_body(("html",)).get_content()
        assert html != ana_html
        # The subscriber who chose QiOSK gets that section only.
        only = arrived["qiosk-only@example.org"].get_body(("plain",)).get_content()
        assert "QiOSK" in only and "Diplomacy Watch:" not in only

        # The server recovers; a re-run sends only the transient failure, nobody twice.
        server.handler.accept_later = True
        second = run_flow(str(cfg), "weekly", NOW + timedelta(hours=1))
        assert second["submitted_now"] == 1 and second["submitted"] == 4
        assert second["edition_status"] == "sent"
        counts = Counter(r.rcpt_tos[0] for r in server.handler.received)
        assert counts["later@example.org"] == 1 and max(counts.values()) == 1
        assert "bounce@example.org" not in counts
        assert store.delivery_counts(first["edition_id"])["failed"] == 1
        store.close()
