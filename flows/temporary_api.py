"""The Prefect API of a command run without PREFECT_API_URL: a temporary server that dies with
the command, however the command ends.

Prefect's ephemeral mode starts such a server itself (a uvicorn subprocess) on first use and
stops it at exit; a command killed with SIGKILL never gets there, and the server (some 200 MB)
lives on, re-parented. So the commands that run flows start the same server themselves, before
any flow: Prefect's app factory (``prefect.server.api.server:create_app``) in uvicorn, the UI
off, the ephemeral server's services, this process's Prefect settings. It serves a socket this
process bound (an unused loopback port, no race for it) and holds a *lifeline*, as the sending
workers do (:func:`digest.steps.lifeline.die_with_parent`): a pipe whose only writing end this
process holds, whose end-of-file stops the server at once, plus a parent-death signal on Linux.
The command points PREFECT_API_URL at it while it runs, then lets Prefect's log and event
workers send what they hold and stops it.

With PREFECT_API_URL set (a Prefect server, Prefect Cloud, a test harness), or ephemeral mode
turned off, nothing is started.

Start it from the main thread: the parent-death signal follows the thread that started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from digest.errors import TransientError

APP = "prefect.server.api.server:create_app"
# Seconds to wait for the server at least, whatever PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
# says (20 by default, which Prefect counts loosely): a first start creates Prefect's database,
# which takes half a minute on a busy machine. A server that fails to start is seen at once.
MIN_STARTUP_WAIT = 60.0


class ApiServerError(TransientError):
    """The temporary Prefect API server did not start."""


@contextmanager
def temporary_api(starting: Callable[[], None] | None = None) -> Iterator[str | None]:
    """Yield the Prefect API's URL for the command's flows: the configured one, or a temporary
    server's that ends with this block (or with this process, if it is killed). ``starting``
    is called just before a temporary server starts (it takes seconds: say so)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        yield settings.api.url
        return
    if starting is not None:
        starting()
    server = _Server(
        settings.to_environment_variables(exclude_unset=True),
        max(float(settings.server.ephemeral.startup_timeout_seconds), MIN_STARTUP_WAIT),
    )
    try:
        with _api_url(server.url):
            try:
                yield server.url
            finally:
                _drain_prefect_workers()
    finally:
        server.stop()


@contextmanager
def _api_url(url: str) -> Iterator[None]:
    """PREFECT_API_URL for this process (every thread, and processes it starts) meanwhile; no
    UI URL, as in Prefect's ephemeral mode (the server has no UI and ends with the command, so
    no "View at" link to it)."""
    from prefect.context import refresh_global_settings_context

    values = {"PREFECT_API_URL": url, "PREFECT_UI_URL": ""}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    refresh_global_settings_context()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        refresh_global_settings_context()


def _drain_prefect_workers() -> None:
    """Let Prefect's background workers send the logs and events they hold while the server is
    still there (Prefect's own test harness does the same before stopping its server)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with suppress(Exception):  # nothing to send, or a worker never started
            worker.drain_all(timeout=5)


class _Server:
    """The server process, started healthy or not at all."""

    def __init__(self, prefect_env: dict[str, str], timeout: float) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        lifeline_r, self._lifeline = os.pipe()
        # Where this process found the project, for the server's ``python -m``.
        project = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **prefect_env,
            "PYTHONPATH": path,
        }
        env.pop("PREFECT_API_URL", None)
        args = [str(os.getpid()), str(lifeline_r), str(listener.fileno())]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, *args],
                env=env,
                pass_fds=(lifeline_r, listener.fileno()),
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            os.close(self._lifeline)
            raise ApiServerError(f"could not start a temporary Prefect API server: {e}") from e
        finally:
            os.close(lifeline_r)
            listener.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    raise ApiServerError(
                        f"the temporary Prefect API server at {self.url} exited with code {code} "
                        "while starting (its messages are above); set PREFECT_API_URL to use "
                        "a running Prefect server instead"
                    )
                with suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(0.1)
        raise ApiServerError(
            f"the temporary Prefect API server at {self.url} did not answer within "
            f"{timeout:.0f} s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, at least "
            f"{MIN_STARTUP_WAIT:.0f}); set "
            "PREFECT_API_URL to use a running Prefect server instead"
        )

    def stop(self) -> None:
        """Stop as Prefect does (SIGTERM, then SIGKILL after 5 s), then cut the lifeline."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with suppress(OSError):
            os.close(self._lifeline)


def _serve(parent: int, lifeline_fd: int, listener_fd: int) -> None:
    """In the server process: die with ``parent``, then serve Prefect's API on the socket."""
    from multiprocessing.connection import Connection

    from digest.steps.lifeline import die_with_parent

    die_with_parent(parent, Connection(lifeline_fd, writable=False))
    import uvicorn

    listener = socket.socket(fileno=listener_fd)
    config = uvicorn.Config(APP, factory=True, log_level="error", lifespan="on")
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    _serve(*(int(a) for a in sys.argv[1:4]))
