"""Configuration: every problem named by its key path; secrets only from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digest.config import (
    env_overrides,
    json_schema,
    load_settings,
    parse_settings,
    reference_markdown,
)
from digest.errors import ConfigError
from tests.conftest import ROOT, base_config


def test_example_config_is_valid() -> None:
    s = load_settings(ROOT / "config" / "example.toml", environ={})
    assert set(s.sections) == {"diplomacy-watch", "qiosk", "analysis"}
    assert s.digests["weekly"].schedule.timezone == "America/New_York"
    assert s.delivery.provider == "outbox"
    assert s.database_url == f"sqlite:///{ROOT / 'var' / 'digest.db'}"
    for src in s.sources.values():
        assert s.resolve(src.path).is_file()


def _problems(data: dict, **env: str) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        parse_settings(data, source="pub.toml", environ=env)
    assert "pub.toml" in str(info.value)
    return info.value.problems


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["publication"]["from_email"] = "not-an-address"
    data["sections"]["qiosk"]["titel"] = "typo"
    data["digests"]["weekly"]["schedule"]["timezone"] = "Mars/Olympus"
    data["digests"]["weekly"]["max_items"] = 0
    paths = {p for p, _ in _problems(data)}
    assert {
        "publication.from_email",
        "sections.qiosk.titel",
        "digests.weekly.schedule.timezone",
        "digests.weekly.max_items",
    } <= paths


def test_cross_references_are_checked(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["sections"]["qiosk"]["sources"] = ["nowhere"]
    data["digests"]["weekly"]["sections"].append("sport")
    problems = dict(_problems(data))
    assert "unknown source 'nowhere'" in problems["sections.qiosk.sources"]
    assert "unknown section 'sport'" in problems["digests.weekly.sections"]


def test_bad_cron_and_source_location(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["digests"]["weekly"]["schedule"]["cron"] = "every monday"
    data["sources"]["qiosk"] = {"url": "ftp://example.org/feed"}
    data["sources"]["analysis"] = {"url": "https://x", "path": "y"}
    paths = {p for p, _ in _problems(data)}
    assert {"digests.weekly.schedule.cron", "sources.qiosk", "sources.analysis"} <= paths


def test_secrets_only_from_environment(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["delivery"] = {"provider": "smtp", "smtp": {"password": "hunter2"}}
    problems = dict(_problems(data, DIGEST__SECRET_KEY="k"))
    assert "DIGEST__DELIVERY__SMTP__PASSWORD" in problems["delivery.smtp.password"]
    data["delivery"]["smtp"].pop("password")
    s = parse_settings(
        data,
        environ={"DIGEST__DELIVERY__SMTP__PASSWORD": "hunter2", "DIGEST__SECRET_KEY": "k"},
    )
    assert s.delivery.smtp.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)


def test_real_provider_needs_a_signing_key(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["delivery"] = {"provider": "smtp"}
    assert "secret_key" in dict(_problems(data))


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    env = {
        "DIGEST__DELIVERY__BATCH_SIZE": "250",
        "DIGEST__DIGESTS__WEEKLY__SECTIONS": '["qiosk"]',
        "OTHER": "ignored",
    }
    assert env_overrides(env) == {
        "delivery": {"batch_size": "250"},
        "digests": {"weekly": {"sections": ["qiosk"]}},
    }
    s = parse_settings(base_config(tmp_path), environ=env)
    assert s.delivery.batch_size == 250 and s.digests["weekly"].sections == ["qiosk"]
    problems = dict(_problems(base_config(tmp_path), DIGEST__DELIVERY__BATCH_SIZE="lots"))
    assert "delivery.batch_size" in problems


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[publication\nname = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad, environ={})
    assert str(bad) in str(info.value) and info.value.problems[0][0] == "(syntax)"


def test_reference_doc_is_generated_and_current() -> None:
    doc = reference_markdown()
    assert "`digests.<key>.schedule.cron`" in doc and "*env only*" in doc
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == doc, "docs/configuration.md is stale: run `make docs`"


def test_json_schema_lists_the_sections() -> None:
    schema = json_schema()
    assert {"publication", "sources", "sections", "digests"} <= set(schema["properties"])


def test_a_single_cross_reference_problem_names_its_key(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["digests"]["weekly"]["cards_per_section"] = 9
    assert dict(_problems(data)) == {
        "digests.weekly.cards_per_section": "larger than max_per_section"
    }


@pytest.mark.parametrize(
    ("provider", "variable", "extra"),
    [
        ("postmark", "DIGEST__DELIVERY__POSTMARK__TOKEN", {}),
        ("sendgrid", "DIGEST__DELIVERY__SENDGRID__API_KEY", {}),
        (
            "mailgun",
            "DIGEST__DELIVERY__MAILGUN__API_KEY",
            {"mailgun": {"domain": "mg.example.org"}},
        ),
    ],
)
def test_http_providers_need_their_credentials_clean(
    tmp_path: Path, provider: str, variable: str, extra: dict[str, Any]
) -> None:
    data = base_config(tmp_path)
    data["delivery"] = {"provider": provider, **extra}
    env = {"DIGEST__SECRET_KEY": "k"}
    with pytest.raises(ConfigError) as missing:
        parse_settings(data, environ=env)
    assert variable in str(missing.value)
    # A key with a line break inside (two pasted lines) is refused here, naming the key, never
    # quoting it (white space around it is refused too: see the test below).
    with pytest.raises(ConfigError) as messy:
        parse_settings(data, environ={**env, variable: "SG.secret-\nvalue"})
    assert variable.lower().split("__", 1)[1].replace("__", ".") in str(messy.value)
    assert "line break" in str(messy.value) and "secret-" not in str(messy.value)
    assert parse_settings(data, environ={**env, variable: "SG.secret-value"}).delivery.provider == (
        provider
    )


def test_mailgun_needs_a_domain(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["delivery"] = {"provider": "mailgun"}
    env = {"DIGEST__SECRET_KEY": "k", "DIGEST__DELIVERY__MAILGUN__API_KEY": "key-1"}
    with pytest.raises(ConfigError, match=r"delivery.mailgun.domain"):
        parse_settings(data, environ=env)


@pytest.mark.parametrize(
    "value", [" s3cret-value", "s3cret-value ", "s3cret-value\n", "\ts3cret-value"]
)
@pytest.mark.parametrize(
    "variable",
    [
        "DIGEST__SECRET_KEY",
        "DIGEST__DELIVERY__SMTP__PASSWORD",
        "DIGEST__WEB__EDITOR_TOKEN",
        "DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY",
    ],
)
def test_a_secret_with_white_space_around_it_is_refused(
    tmp_path: Path, variable: str, value: str
) -> None:
    problems = _problems(base_config(tmp_path), **{variable: value})
    key = variable.removeprefix("DIGEST__").lower().replace("__", ".")
    assert [p for p, _ in problems] == [key]
    assert variable in problems[0][1] and "s3cret" not in str(problems)
    assert parse_settings(base_config(tmp_path), environ={variable: value.strip()})


def test_a_value_of_the_wrong_type_is_refused_with_its_key_path(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["render"] = {"paragraphs": True, "utm": "yes", "teaser_chars": "450"}
    data["delivery"] = {"batch_size": 500.0, "rate": "fast"}
    data["sources"]["qiosk"]["local"] = 1
    data["digests"]["weekly"]["max_items"] = 12.5
    data["web"] = {"editor_addresses": "ed@example.org"}
    problems = dict(_problems(data))
    assert set(problems) == {
        "render.paragraphs",
        "render.utm",
        "render.teaser_chars",
        "delivery.batch_size",
        "delivery.rate",
        "sources.qiosk.local",
        "digests.weekly.max_items",
        "web.editor_addresses",
    }
    assert "integer" in problems["render.paragraphs"] and "boolean" in problems["render.utm"]
    # A whole number is a fine float.
    data = base_config(tmp_path)
    data["delivery"] = {"rate": 10, "batch_size": 500}
    assert parse_settings(data, environ={}).delivery.rate == 10.0


def test_environment_overrides_are_converted_to_each_key_type(tmp_path: Path) -> None:
    env = {
        "DIGEST__DELIVERY__BATCH_SIZE": " 250 ",
        "DIGEST__DELIVERY__RATE": "2.5",
        "DIGEST__RENDER__UTM": "false",
        "DIGEST__RENDER__PARAGRAPHS": "3",
        "DIGEST__SOURCES__QIOSK__LOCAL": "true",
        "DIGEST__SOURCES__QIOSK__FETCH_PAGES": "false",
        "DIGEST__DIGESTS__WEEKLY__APPROVAL_TIMEOUT_HOURS": "2",
        "DIGEST__WEB__EDITOR_ADDRESSES": '["ed@example.org"]',
        "DIGEST__PUBLICATION__NAME": "123",
        "DIGEST__HTTP": '{"retries": 4}',
    }
    s = parse_settings(base_config(tmp_path), environ=env)
    assert (s.delivery.batch_size, s.delivery.rate) == (250, 2.5)
    assert (s.render.utm, s.render.paragraphs) == (False, 3)
    assert (s.sources["qiosk"].local, s.sources["qiosk"].fetch_pages) == (True, False)
    assert s.digests["weekly"].approval_timeout_hours == 2.0
    assert s.web.editor_addresses == ["ed@example.org"] and s.publication.name == "123"
    assert s.http.retries == 4
    problems = dict(
        _problems(
            base_config(tmp_path),
            DIGEST__RENDER__UTM="maybe",
            DIGEST__DELIVERY__RATE="fast",
            DIGEST__HTTP='{"retries": 1.5}',
        )
    )
    assert set(problems) == {"render.utm", "delivery.rate", "http.retries"}


def test_reference_types_read_as_words() -> None:
    doc = reference_markdown()
    assert "Annotated[" not in doc and "FieldInfo(" not in doc and "Literal[" not in doc
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ")[1]
        for line in doc.splitlines()
        if line.startswith("| `")
    }
    assert rows["sections.<key>.sources"] == "list of strings"
    assert rows["digests.<key>.max_items"] == "integer"
    assert rows["delivery.smtp.security"] == 'one of: "starttls", "tls", "none"'
    assert rows["sources.<key>.fetch_pages"] == "true/false (optional)"
