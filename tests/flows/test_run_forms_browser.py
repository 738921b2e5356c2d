"""The Prefect UI's Run form of every deployment, as operations staff fill it: in Chromium, against a real Prefect
server (with its UI) and every deployment registered by `ops serve`.

One field per parameter at the top of the form (no nested "params" box), a number typed without choosing a type
first (no int/None toggle), the registry's frameworks and facilities and the known drill kinds and periods as
dropdowns, and a submitted form reaches the run as given.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from engine.deployments import PROJECT_ROOT, specs
from engine.stack import stop_process_group
from registry import DrillProgram, Risk, RiskCategory, RiskMatrix, session
from registry.risk import DEFAULT_MATRIX
from tests import factories
from tests.browser import chromium
from tests.conftest import Gateway, free_port
from tests.flows.conftest import start_serving

SHOTS = Path(os.environ.get("OPS_TEST_SCREENSHOTS", "/tmp/run-forms"))


@pytest.fixture
def prefect_ui(tmp_path: Path) -> Iterator[str]:
    """`prefect server start` with its UI (the test harness's server has none): its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"{base}/api",
           "PREFECT_UI_ENABLED": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    log = (tmp_path / "prefect-server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "prefect-server.log").read_text()[-3000:]
            time.sleep(0.3)
        yield base
    finally:
        stop_process_group(process)
        log.close()


def _organisation() -> dict[str, Any]:
    with session() as db:
        manager = factories.person(db)
        frameworks = [factories.framework(db, manager=manager, owners=[manager]).name for _ in range(2)]
        site = factories.facility(db, occupants=[factories.person(db)])
        db.add(DrillProgram(facility_id=site.id or 0, kind="it_outage_tabletop", title="IT outage tabletop",
                            cadence="0 9 1 1 *"))
        matrix = db.exec(select(RiskMatrix).where(RiskMatrix.code == DEFAULT_MATRIX)).one()
        cyber = RiskCategory(code="CYB", name="Cyber", appetite="Medium")
        db.add(cyber)
        db.flush()
        db.add(Risk(code="CYB-01", title="Ransomware", category_id=cyber.id or 0, owner_id=manager.id or 0,
                    matrix_id=matrix.id or 0, inherent_likelihood=4, inherent_impact=5, residual_likelihood=3,
                    residual_impact=4))
        db.commit()
        return {"frameworks": frameworks, "facility": site.code}


def _deployments(api: str) -> dict[str, dict[str, Any]]:
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    return {d["name"]: d for d in found}


def _runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    """The deployment's runs a person asked for: the scheduler's own (a quarterly deployment just registered gets
    its next three) may be created while a form is open, and are not the run its Submit made."""
    runs = httpx.post(f"{api}/flow_runs/filter", timeout=10,
                      json={"deployments": {"id": {"any_": [deployment_id]}}}).json()
    return [run for run in runs if not run["auto_scheduled"]]


def _property(page: Any, title: str) -> Any:
    """The form's field labelled `title` (with or without "(Optional)" after it)."""
    label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{re.escape(title)}( \(Optional\))?$"))
    return page.locator(".schema-form-property").filter(has=label).first


def _choose(page: Any, title: str, value: str) -> list[str]:
    """Pick `value` from the dropdown labelled `title`; the values it offered."""
    # The select opens on the keyboard (as a person tabbing through the form opens it) or a real click.
    _property(page, title).locator(".p-select-button__control").focus()
    page.keyboard.press("ArrowDown")
    options = page.get_by_role("option")
    options.first.wait_for()
    offered = [text.strip() for text in options.all_inner_texts()]
    options.filter(has_text=re.compile(rf"^\s*{re.escape(value)}\s*$")).first.click()
    return offered


def _switch_on(page: Any, title: str) -> None:
    switch = _property(page, title).get_by_role("switch")
    was = switch.get_attribute("aria-checked")
    switch.focus()
    page.keyboard.press("Space")
    page.wait_for_timeout(200)
    if switch.get_attribute("aria-checked") == was:
        switch.click()
        page.wait_for_timeout(200)
    assert switch.get_attribute("aria-checked") != was, f"{title}: the switch did not move"


def _submitted(page: Any, api: str, deployment: dict[str, Any], before: int) -> dict[str, Any]:
    """Submit the open form; the run it created. The UI validates the form on the server before it creates the
    run, which on a loaded machine takes seconds: a click the form did not take (it is still open, with no run
    made) is given once more, and a run only counts once the API holds it."""
    form_url = page.url
    page.get_by_role("button", name="Submit").click()
    deadline = time.monotonic() + 90
    retry_at = time.monotonic() + 30
    while len(runs := _runs(api, deployment["id"])) <= before:
        if time.monotonic() > retry_at and page.url == form_url:
            page.screenshot(path=str(SHOTS / f"{deployment['name']}-not-submitted.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()
            retry_at = deadline
        assert time.monotonic() < deadline, f"{deployment['name']}: the form was not submitted " \
                                             f"(still at {page.url}; see {SHOTS})"
        time.sleep(0.3)
    return max(runs, key=lambda run: run["created"])


def _labels(properties: dict[str, Any], required: list[str]) -> list[str]:
    """The labels a form of these properties shows, in order; a group's (score weights) after its own."""
    shown = []
    for key, prop in sorted(properties.items(), key=lambda item: item[1].get("position", 0)):
        shown.append(f"{prop['title']}{'' if key in required else ' (Optional)'}")
        shown += _labels(prop.get("properties", {}), prop.get("required", []))
    return shown


def _open(page: Any, ui: str, deployment: dict[str, Any]) -> None:
    page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run", wait_until="networkidle")
    page.locator(".schema-form-property").first.wait_for()


@pytest.mark.browser
def test_every_run_form_is_flat_filled_and_offers_the_registrys_values(
        gateway: Gateway, prefect_ui: str, tmp_path: Path) -> None:
    org = _organisation()
    api = f"{prefect_ui}/api"
    served = start_serving(api, tmp_path / "serve.log")
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        held = _deployments(api)
        assert set(held) == {s.name for s in specs()}
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.set_viewport_size({"width": 1280, "height": 1400})
            for name, deployment in sorted(held.items()):
                schema = deployment["parameter_openapi_schema"]
                if not schema["properties"]:
                    continue
                _open(page, prefect_ui, deployment)
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                # One field per parameter, at the top, in order: no "params" box around them; "(Optional)" only
                # on a field that may stay empty (its description says what empty means).
                labels = page.locator(".schema-form-property__label").all_inner_texts()
                ordered = sorted(schema["properties"].items(), key=lambda item: item[1]["position"])
                assert labels == _labels(schema["properties"], schema["required"]), name
                assert all(key in schema["required"] or prop.get("default") == "" for key, prop in ordered), name
                text = page.inner_text("form")
                assert 'Property is type "None"' not in text and "params" not in text.split(), name

            audit = held["compliance-audit"]
            before = len(_runs(api, audit["id"]))
            _open(page, prefect_ui, audit)
            assert sorted(_choose(page, "Framework", org["frameworks"][1])) == sorted(org["frameworks"])
            _property(page, "Evidence window in minutes (trial runs)").locator("input").fill("2")  # no toggle first
            _switch_on(page, "Preview")
            page.screenshot(path=str(SHOTS / "compliance-audit-filled.png"), full_page=True)
            run = _submitted(page, api, audit, before)
            assert run["parameters"] == {"framework": org["frameworks"][1], "period": "", "evidence_window_days": 5,
                                         "evidence_window_minutes": 2, "signoff_days": 3, "preview": True}

            drill = held["emergency-drill"]
            before = len(_runs(api, drill["id"]))
            _open(page, prefect_ui, drill)
            assert _choose(page, "Facility", org["facility"]) == [org["facility"]]
            assert sorted(_choose(page, "Kind of drill", "it_outage_tabletop")) == ["fire_evacuation",
                                                                                  "it_outage_tabletop"]
            _property(page, "Acknowledgement window (minutes)").locator("input").fill("0.5")
            _switch_on(page, "Preview")
            page.screenshot(path=str(SHOTS / "emergency-drill-filled.png"), full_page=True)
            run = _submitted(page, api, drill, before)
            assert {k: run["parameters"][k] for k in ("facility", "kind", "window_minutes", "preview")} == {
                "facility": org["facility"], "kind": "it_outage_tabletop", "window_minutes": 0.5, "preview": True}

            risks = held["risk-review"]  # the register's risks and categories, an empty first choice: every one due
            before = len(_runs(api, risks["id"]))
            _open(page, prefect_ui, risks)
            assert _choose(page, "Risk code", "CYB-01") == ["", "CYB-01"]
            assert _choose(page, "Category code", "") == ["", "CYB"]
            _switch_on(page, "Preview")
            page.screenshot(path=str(SHOTS / "risk-review-filled.png"), full_page=True)
            run = _submitted(page, api, risks, before)
            assert {k: run["parameters"][k] for k in ("risk_code", "category", "preview")} == {
                "risk_code": "CYB-01", "category": "", "preview": True}

            review = held["vendor-review"]  # a form with groups (score weights, thresholds), sent as it opened
            before = len(_runs(api, review["id"]))
            _open(page, prefect_ui, review)
            _switch_on(page, "Preview")
            run = _submitted(page, api, review, before)
            assert run["parameters"]["weights"] == {"on_time": 0.35, "fill": 0.3, "quality": 0.25, "price": 0.1}

            report = held["operations-report-monthly"]
            before = len(_runs(api, report["id"]))
            _open(page, prefect_ui, report)
            assert "this-month" in _choose(page, "Period", "this-month")
            _switch_on(page, "E-mail the distribution list")  # off: a report nobody is sent
            page.screenshot(path=str(SHOTS / "operations-report-monthly-filled.png"), full_page=True)
            run = _submitted(page, api, report, before)
            assert run["parameters"] == {"period": "this-month", "given_period": "", "send": False}
    finally:
        stop_process_group(served.process)
