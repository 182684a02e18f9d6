"""The runbook's `notify:` section: what it accepts, its defaults, its webhook URLs as secrets
that must be set before the run starts (exit 2 naming file and line, never the value)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from support import line_no, runbook_error

from resync.model.errors import RunbookError
from resync.model.notify import NOTIFY_EVENTS, NotifySettings, WebhookSettings
from resync.model.runbook import load_runbook
from resync.model.secrets import MASK
from resync.notify.build import notifier_for, webhook_urls
from resync.run.runner import require_secrets, runbook_secrets

REPLICA = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-replica.yaml"
NOTIFY = """
notify:
  webhooks: [{url_env: CHAT_WEBHOOK_URL}, {url: "https://hooks.example.test/T1/B2/literal"}]
  command: cat > /dev/null
  events: [failure, overrun]
"""


def with_notify(tmp_path: Path, section: str = NOTIFY) -> Path:
    path = tmp_path / "runbook.yaml"
    path.write_text(REPLICA.read_text() + section)
    return path


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DB1_PASSWORD", "DB2_PASSWORD", "REPL_PASSWORD"):
        monkeypatch.setenv(name, f"pw-{name}")


def test_defaults_send_every_event_with_a_short_timeout_and_three_retries() -> None:
    settings = NotifySettings(command="true")
    assert settings.events == NOTIFY_EVENTS == ("start", "refused", "phase", "success",
                                                 "failure", "overrun")
    assert (settings.timeout, settings.retries) == (5.0, 3)


@pytest.mark.parametrize("hook", [{}, {"url_env": "A", "url": "https://x.test/"}])
def test_a_webhook_has_exactly_one_url_source(hook: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="exactly one of url_env"):
        WebhookSettings.model_validate(hook)


@pytest.mark.parametrize(("bad", "why"), [
    ({"command": "x", "events": ["started"]}, "literal_error"),
    ({"command": "x", "events": []}, "too_short"),
    ({"webhooks": [{"url": "ftp://x.test/"}]}, "string_pattern_mismatch"),
    ({"command": "x", "timeout": 0}, "greater_than"),
    ({}, "needs webhooks or a command"),
])
def test_bad_settings_are_refused(bad: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError) as info:
        NotifySettings.model_validate(bad)
    assert why in str(info.value) or why in {e["type"] for e in info.value.errors()}


def test_the_section_loads_into_the_runbook(tmp_path: Path) -> None:
    rb = load_runbook(with_notify(tmp_path)).model
    assert rb.notify is not None
    assert rb.notify.events == ("failure", "overrun")
    assert rb.notify.webhooks[0].url_env == "CHAT_WEBHOOK_URL"


def test_an_unset_url_env_stops_the_run_before_anything_naming_its_line(
        tmp_path: Path, passwords: None) -> None:
    path = with_notify(tmp_path)
    loaded = load_runbook(path)
    with pytest.raises(RunbookError) as info:
        require_secrets(loaded)
    line = line_no(path.read_text(), "CHAT_WEBHOOK_URL")
    assert info.value.exit_code == 2
    assert f"{path}:{line}" in str(info.value) and "CHAT_WEBHOOK_URL is not set" in str(info.value)


def test_an_url_env_that_is_no_url_is_refused_without_its_value(
        tmp_path: Path, passwords: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_WEBHOOK_URL", "not-a-url-but-secret")
    with pytest.raises(RunbookError) as info:
        require_secrets(load_runbook(with_notify(tmp_path)))
    assert "does not hold an http:// or https:// URL" in str(info.value)
    assert "not-a-url-but-secret" not in str(info.value)


def test_webhook_urls_are_secrets_masked_like_passwords(
        tmp_path: Path, passwords: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_WEBHOOK_URL", "https://hooks.example.test/T9/B9/from-env")
    loaded = load_runbook(with_notify(tmp_path))
    labels = [label for label, _ in webhook_urls(loaded)]
    assert labels == ["webhook $CHAT_WEBHOOK_URL", "webhook 2 (notify.webhooks[1].url)"]
    revealed = {s.reveal() for s in runbook_secrets(loaded)}
    assert {"https://hooks.example.test/T9/B9/from-env",
            "https://hooks.example.test/T1/B2/literal"} <= revealed
    assert all(str(url) == MASK for _, url in webhook_urls(loaded))

    notifier = notifier_for(loaded, runbook_secrets(loaded))
    assert notifier is not None
    try:
        assert [s.label for s in notifier.sinks] == [*labels, "notify command"]
        assert notifier.events == {"failure", "overrun"}
    finally:
        notifier.close()


def test_a_runbook_without_notify_has_no_notifier(passwords: None) -> None:
    assert notifier_for(load_runbook(REPLICA), []) is None


def test_a_typo_in_the_section_names_its_line(tmp_path: Path) -> None:
    path = with_notify(tmp_path, "notify:\n  command: x\n  retry: 3\n")
    err = runbook_error(path)
    assert f"{path}:{line_no(path.read_text(), 'retry: 3')}" in str(err)
