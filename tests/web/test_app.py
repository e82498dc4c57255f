"""The app as ``digest.web.app`` puts it together: health, a friendly 404 for people and JSON
for programs, no API docs, and the webhooks mounted beside the pages.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient


def test_healthz_and_a_friendly_404(client: TestClient):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}
    page = client.get("/nowhere", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Page not found" in page.text
    assert client.get("/nowhere").json() == {"detail": "Not Found"}
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 404


def test_the_webhooks_are_mounted(app: FastAPI, client: TestClient):
    # They refuse an unsigned event, but they are there to refuse it.
    for provider in ("sendgrid", "postmark", "mailgun"):
        assert client.post(f"/webhooks/{provider}", content=b"{}").status_code != 404
    assert app.state.settings and app.state.store and app.state.clock
