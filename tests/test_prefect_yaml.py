"""Every deployment in prefect.yaml must load, describe itself and offer a parameter form."""

from __future__ import annotations

from datetime import datetime

import pytest
from croniter import croniter
from prefect.flows import load_flow_from_entrypoint

from engine.deployments import PROJECT_ROOT, runner_deployments, specs

SPECS = specs()


def test_every_flow_module_has_a_deployment() -> None:
    # A flow module is one that defines a flow; rules, data kinds and report helpers beside them are not.
    modules = {str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "flows").rglob("*.py")
               if "\n@flow(" in (text := p.read_text()) or "\n@runs.process_flow(" in text}
    assert modules == {s.entrypoint.split(":")[0] for s in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_entrypoint_loads_with_description_and_parameter_schema(spec: object) -> None:
    from engine.deployments import DeploymentSpec

    assert isinstance(spec, DeploymentSpec)
    flow = load_flow_from_entrypoint(str(PROJECT_ROOT / spec.entrypoint), use_placeholder_flow=False)
    assert flow.description and len(flow.description) > 40, "the docstring is the UI description"
    schema = flow.parameters.model_dump()
    assert schema["type"] == "object"
    # One field per parameter, at the top of the Run form: no nested model box, no type toggle.
    assert all(field.get("title") for field in schema["properties"].values()), "every form field titled"
    assert not [key for key, field in schema["properties"].items() if "$ref" in field or "anyOf" in field]
    for definition in schema.get("definitions", {}).values():
        assert all(field.get("title") for field in definition["properties"].values()), "every form field titled"
    for schedule in spec.schedules:
        assert croniter.is_valid(schedule["cron"]) and schedule.get("timezone")


def test_the_compliance_audit_runs_by_itself_every_quarter() -> None:
    [audit] = [s for s in SPECS if s.name == "compliance-audit"]
    assert audit.schedules == [{"cron": "0 7 1 1,4,7,10 *", "timezone": "Europe/London", "active": True}]


def test_the_vendor_review_runs_quarterly_and_its_contract_notices_daily() -> None:
    by_name = {s.name: s for s in SPECS}
    assert by_name["vendor-review"].schedules[0]["cron"] == "30 7 1 1,4,7,10 *"
    notices = by_name["vendor-contract-notices"]
    assert notices.entrypoint == "flows/supply/vendor_review/notices.py:vendor_contract_notices"
    assert notices.parameters == {}
    assert croniter.match(notices.schedules[0]["cron"], datetime(2026, 11, 25, 6, 30))


def test_runner_deployments_carry_the_schedules() -> None:
    deployments = {d.name: d for d in runner_deployments()}
    assert set(deployments) == {s.name for s in SPECS}
    cron = deployments["compliance-audit"].schedules[0].schedule
    assert cron.cron == "0 7 1 1,4,7,10 *" and cron.timezone == "Europe/London"
    assert deployments["compliance-audit"].enforce_parameter_schema


def test_the_risk_review_runs_quarterly_and_its_dispatcher_daily_in_the_organisations_zone() -> None:
    by_name = {s.name: s for s in SPECS}
    review, dispatch = by_name["risk-review"], by_name["risk-review-dispatch"]
    assert review.schedules == [{"cron": "0 8 1 1,4,7,10 *", "timezone": "Europe/London", "active": True}]
    assert dispatch.entrypoint == "flows/risk/risk_review/dispatch.py:risk_review_dispatch"
    assert croniter.match(dispatch.schedules[0]["cron"], datetime(2026, 12, 2, 6, 45))
    assert dispatch.schedules[0]["timezone"] == "Europe/London"
