from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


_TRAIL_KEY_FROM_DOTENV = "a-trail-key-only-in-the-dotenv-file-0123456789abcdef0123456789ab"


@pytest.mark.parametrize("first", ["engine.settings", "registry"])
def test_the_trail_signs_with_the_settings_key_whichever_is_imported_first(tmp_path: Path, first: str) -> None:
    """The registry's fallback reads only the environment; the settings also read .env. A trail that missed the
    hand-over would sign with the development key file instead of the key configured in .env."""
    (tmp_path / ".env").write_text(f"OPS_TRAIL_KEY={_TRAIL_KEY_FROM_DOTENV}\n")
    second = "registry" if first == "engine.settings" else "engine.settings"
    script = (f"import {first}, {second}\n"
              "from registry import trail\n"
              "key, key_file, checkpoints = trail._trail_settings()\n"
              "print(key.decode() if key else None)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPS_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _TRAIL_KEY_FROM_DOTENV


def test_the_command_line_starts_without_importing_the_registry() -> None:
    """`ops up` starts its Prefect server before anything slow: the registry's tables cost half a second."""
    script = ("import sys, engine.cli, engine.stack\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'registry'))")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
