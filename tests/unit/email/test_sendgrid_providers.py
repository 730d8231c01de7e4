"""The provider a run uses follows the settings, decided in flows/email/providers.py alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.email.outbox import OutboxSender
from flows.email.providers import email_sender
from flows.email.sendgrid import SendGridSender
from flows.settings import ConfigError, Settings, load_settings

KEY = "SG." + "k" * 22 + "." + "s" * 43


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "SENDGRID_API_KEY",
        "LEADFLOW_SENDGRID_HOST",
        "LEADFLOW_SENDGRID_SANDBOX",
        "LEADFLOW_SENDGRID_MAX_WAIT_SECONDS",
        "LEADFLOW_SENDGRID_RETRY_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_no_key_writes_to_the_local_outbox() -> None:
    settings = Settings()
    sender = email_sender(settings)
    assert isinstance(sender, OutboxSender)
    assert sender.provider == "outbox"
    assert sender.outbox_dir == settings.outbox_dir


def test_a_key_sends_through_sendgrid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    sender = email_sender(Settings())
    assert isinstance(sender, SendGridSender)
    assert sender.provider == "sendgrid"
    assert sender.host == "https://api.sendgrid.com"
    assert not sender.sandbox
    assert (sender.policy.max_wait_seconds, sender.policy.retry_seconds) == (60, 120)


def test_host_sandbox_and_bounds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.setenv("LEADFLOW_SENDGRID_HOST", "http://127.0.0.1:8089/")
    monkeypatch.setenv("LEADFLOW_SENDGRID_SANDBOX", "true")
    monkeypatch.setenv("LEADFLOW_SENDGRID_MAX_WAIT_SECONDS", "5")
    monkeypatch.setenv("LEADFLOW_SENDGRID_RETRY_SECONDS", "30")
    sender = email_sender(Settings())
    assert isinstance(sender, SendGridSender)
    assert sender.provider == "sendgrid-sandbox"
    assert sender.host == "http://127.0.0.1:8089"
    assert (sender.policy.max_wait_seconds, sender.policy.retry_seconds) == (5, 30)


def test_the_key_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    settings = Settings()
    assert KEY not in repr(settings) + str(settings.model_dump())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADFLOW_SENDGRID_HOST", "api.sendgrid.com"),
        ("LEADFLOW_SENDGRID_HOST", "https://api.sendgrid.com/v3"),
        ("LEADFLOW_SENDGRID_MAX_WAIT_SECONDS", "-1"),
        ("LEADFLOW_SENDGRID_RETRY_SECONDS", "two minutes"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
