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


def slug(text: str) -> str:
    """`text` as a file or artifact name: lower case, every run of other characters than letters and digits a
    hyphen ("Information Security" → "information-security")."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def report_path(filename: str) -> Path:
    """Where data_dir/reports/`filename` lives (folders created); `filename` may hold subfolders."""
    path = get_settings().data_dir.resolve() / "reports" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_report(filename: str, template: str, context: dict[str, Any]) -> SavedReport:
    """Render `template` into data_dir/reports/`filename`; the hash is what the trail and sign-offs refer to."""
    html = render_page(template, context)
    path = report_path(filename)
    path.write_text(html, encoding="utf-8")
    _seal_trail()
    return SavedReport(path=path, sha256=hashlib.sha256(html.encode()).hexdigest())


def _seal_trail() -> None:
    """Every report checkpoints the trail's head outside the registry: rows deleted after it are then found."""
    from registry import session, trail

    with session() as db:
        trail.checkpoint(db)


def save_pdf(filename: str, html: str, *, base_dir: Path | None = None) -> SavedReport:
    """Print `html` to a PDF at data_dir/reports/`filename`, paged as its CSS says (`@page { size: A4 }`).

    Relative references (chart images, a stylesheet) resolve against `base_dir`, by default the PDF's own
    folder, so one HTML file beside its images reads the same in a browser and in print.
    """
    import weasyprint  # ~0.4 s to import: only processes that print pay for it

    path = report_path(filename)
    base = f"{(base_dir or path.parent).resolve().as_uri()}/"

    class _BesideTheReport(weasyprint.URLFetcher):  # type: ignore[misc]
        """A report prints what lies beside it or what it carries itself (a data: URI, such as an embedded chart);
        it never reaches the network or elsewhere on disk."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            if not url.startswith((base, "data:")):
                raise ValueError(f"{url} is outside the report folder {base}")
            return super().fetch(url, headers)

    pdf = weasyprint.HTML(string=html, base_url=base, url_fetcher=_BesideTheReport()).write_pdf()
    assert pdf is not None  # write_pdf returns the bytes when given no target
    path.write_bytes(pdf)
    return SavedReport(path=path, sha256=hashlib.sha256(pdf).hexdigest())
