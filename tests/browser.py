"""Headless Chromium for the browser tests: one place finds it, one reason skips them, one launch.

Mark a test `@pytest.mark.browser`; tests/conftest.py checks for Chromium before any fixture is set up (so a skip
costs nothing), skips with `MISSING` when it is absent, and fails instead when CI is set. Playwright drives
Debian's `chromium` package through `executable_path` (its own browser download does not work here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

DEFAULT = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def executable() -> str:
    """OPS_TEST_CHROMIUM when set (a test points it elsewhere to see the skip), else chromium on PATH."""
    return os.environ.get("OPS_TEST_CHROMIUM") or shutil.which("chromium") or DEFAULT


def missing() -> str | None:
    """Why the browser tests cannot run here, with how to enable them; None when Chromium is there."""
    path = executable()
    if Path(path).is_file() and os.access(path, os.X_OK):
        return None
    return f"Debian's chromium is not installed at {path} (apt-get install chromium); browser tests skipped"


@contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """A fresh headless Chromium with its own profile directory, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=executable(), headless=True,
                                                        args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
