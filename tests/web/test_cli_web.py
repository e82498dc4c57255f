"""`digest web`: the command an operator runs, started as a process and asked over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_digest_web_serves_the_app(example_config: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST__")}
    command = [sys.executable, "-m", "digest.cli", "web", "--config", str(example_config)]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.1)
        assert body == b'{"ok":true}'
        # A link that was never signed by this publication is refused, with a page that says so.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/u/not-a-token")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("a forged link was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and e.headers["Referrer-Policy"] == "no-referrer"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_digest_web_refuses_a_public_address_without_a_signing_key(example_config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST__")}
    command = [sys.executable, "-m", "digest.cli", "web", "--config", str(example_config)]
    done = subprocess.run(
        [*command, "--host", "0.0.0.0", "--port", str(_free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DIGEST__SECRET_KEY" in done.stdout + done.stderr
