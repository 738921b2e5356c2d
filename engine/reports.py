"""Reports as files: rendered from a template, kept under the data directory, identified by their SHA-256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.settings import get_settings
from engine.templates import render_page


@dataclass(frozen=True)
class SavedReport:
    path: Path
    sha256: str


def save_report(filename: str, template: str, context: dict[str, Any]) -> SavedReport:
    """Render `template` into data_dir/reports/`filename`; the hash is what the trail and sign-offs refer to."""
    html = render_page(template, context)
    path = get_settings().data_dir.resolve() / "reports" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return SavedReport(path=path, sha256=hashlib.sha256(html.encode()).hexdigest())
