"""`digest web`: the command an operator runs, started as a process and asked over HTTP."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _digest_web(config: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """`digest web` on 127.0.0.1:``port``, its output (stdout and stderr) in one text pipe;
    interrupted (by its PID) when the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST__")}
    command = [sys.executable, "-m", "digest.cli", "web", "--config", str(config)]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_digest_web_serves_the_app(example_config: Path) -> None:
    port = _free_port()
    with _digest_web(example_config, port) as proc:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kw: object) -> None:
        return None


def test_digest_web_prints_a_login_url_for_the_editors(example_config: Path) -> None:
    port = _free_port()
    with _digest_web(example_config, port) as proc:
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        out = proc.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
        url, seen = "", []
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
                continue
            found = re.search(r"http://\S+/editor/login\?token=\S+", seen[-1])
            url = found.group(0) if found else ""
        assert url.startswith(f"http://127.0.0.1:{port}/editor/login?token="), "".join(seen)
        assert len(url.partition("token=")[2]) >= 40  # secrets.token_urlsafe(32)

        editions = f"http://127.0.0.1:{port}/editions"
        while True:  # until uvicorn listens
            try:
                urllib.request.urlopen(editions, timeout=1)
                raise AssertionError("the editor pages answered without the secret")
            except urllib.error.HTTPError as e:
                assert e.code == 401
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "".join(seen)
                time.sleep(0.1)
        try:
            urllib.request.build_opener(_NoRedirect).open(url, timeout=5)
            raise AssertionError("the login URL did not redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 303 and e.headers["Location"] == "/editions"
            cookie = e.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
        signed_in = urllib.request.Request(editions, headers={"Cookie": cookie.split(";")[0]})
        with urllib.request.urlopen(signed_in, timeout=5) as r:
            assert r.status == 200 and b"Editions" in r.read()
        # The access log keeps the secret out: only the banner shows it.
        while not any("/editor/login?token=…" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        assert "".join(seen).count(url.partition("token=")[2]) == 1
