from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.settings import Settings


def test_production_refuses_the_embedded_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_SECRET_KEY", raising=False)
    monkeypatch.setenv("OPS_MODE", "production")
    with pytest.raises(ValidationError, match="OPS_SECRET_KEY must be set"):
        Settings()
    monkeypatch.setenv("OPS_SECRET_KEY", "a-real-secret-from-the-vault")
    with pytest.raises(ValidationError, match="OPS_TRAIL_KEY must be set"):
        Settings()
    monkeypatch.setenv("OPS_TRAIL_KEY", "too-short")
    with pytest.raises(ValidationError, match="OPS_TRAIL_KEY must be set"):
        Settings()
    monkeypatch.setenv("OPS_TRAIL_KEY", "a-trail-key-from-the-vault-of-64-characters-0123456789abcdef0123")
    assert Settings().mode == "production"


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_SECRET_KEY", "hunter2-key")
    monkeypatch.setenv("OPS_MAIL_URL", "mailtos://ops:hunter2-password@smtp.example.org?from=ops@example.org")
    shown = repr(Settings()) + str(Settings().model_dump())
    assert "hunter2" not in shown


def test_every_setting_is_described() -> None:
    assert all(field.description for field in Settings.model_fields.values())
