"""Without Chromium every browser test skips for one stated reason that says how to enable them; CI fails instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from engine.deployments import PROJECT_ROOT

BROWSER_TESTS = [
    "tests/engine/test_inbox.py::test_the_inbox_shows_a_mails_inline_chart_as_a_mail_client_would",
    "tests/flows/test_operations_report.py::test_the_html_report_shows_its_charts_in_chromium",
    "tests/flows/test_signoff_browser.py::test_manager_approves_in_chromium_and_the_waiting_run_completes",
]
REASON = "Debian's chromium is not installed at /nonexistent (apt-get install chromium); browser tests skipped"


def _pytest_without_chromium(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["OPS_TEST_CHROMIUM"] = "/nonexistent"
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-rsf", "-p", "no:cacheprovider", *BROWSER_TESTS],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_every_browser_test_skips_for_the_same_reason_without_chromium(ci: bool) -> None:
    run = _pytest_without_chromium(ci)
    summary = run.stdout.strip().splitlines()[-1]  # "3 skipped, 1 warning in 1.00s"
    assert f"chromium: {REASON}" in run.stdout, "the run's header says why, before anything runs"
    if ci:
        assert run.returncode == 1 and re.search(r"\b3 errors\b", summary), run.stdout
        assert run.stdout.count(f"Failed: {REASON} (CI runs every test)") == 3, run.stdout
    else:
        assert run.returncode == 0 and re.search(r"\b3 skipped\b", summary), run.stdout
        assert re.search(rf"SKIPPED \[3\] tests/conftest.py:\d+: {re.escape(REASON)}", run.stdout), run.stdout
        # Skipped before any fixture: no Prefect server or `ops serve` started for a test that cannot run.
        seconds = re.search(r" in ([\d.]+)s", summary)
        assert seconds and float(seconds.group(1)) < 8, summary
