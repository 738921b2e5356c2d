"""`ops run -p`: parameters are checked against the flow's model before any run exists; the API refuses too."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from typer.testing import CliRunner

from engine.cli import app
from flows.compliance.audit.flow import compliance_audit
from registry import RiskCategory, session
from tests import factories


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, ["run", *args])


def test_an_unknown_parameter_is_refused_naming_it_and_the_known_ones(registry_db: str) -> None:
    result = _run("compliance-audit", "-p", "bogus=1")
    assert result.exit_code == 2
    assert ("unknown parameter 'bogus' for compliance-audit; known: evidence_window_days, evidence_window_minutes, "
            "framework, period, preview, signoff_days") in result.output


def test_a_process_without_parameters_refuses_any(registry_db: str) -> None:
    result = _run("deadline-sweep", "-p", "limit=5")
    assert result.exit_code == 2
    assert "unknown parameter 'limit' for deadline-sweep; it takes no parameters" in result.output


@pytest.mark.parametrize(("process", "given", "says"), [
    ("compliance-audit", "period=bogus", "invalid parameter 'period' for compliance-audit: String should match"),
    ("compliance-audit", "evidence_window_days=many", "invalid parameter 'evidence_window_days' for compliance-audit: "
                                                      "Input should be a valid integer"),
    ("vendor-review", 'thresholds={"preferred": 90, "excellent": 99}', "invalid parameter 'thresholds.excellent' for "
                                                                       "vendor-review: Extra inputs are not permitted"),
    ("purchase-approval", "approval_days=3", "invalid parameter 'request_id' for purchase-approval: Field required"),
])
def test_a_value_that_does_not_validate_is_refused_with_the_models_message(registry_db: str, process: str,
                                                                          given: str, says: str) -> None:
    result = _run(process, "-p", given)
    assert result.exit_code == 2 and says in result.output, result.output


def _deployment() -> UUID:
    registered: Any = compliance_audit.to_deployment(name="compliance-audit")  # what `ops run` names
    return UUID(str(registered.apply()))


def _runs(deployment_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return list(found)


def test_checked_values_reach_the_run_as_the_model_reads_them(prefect_api: str, registry_db: str) -> None:
    deployment_id = _deployment()
    before = len(_runs(deployment_id))
    assert _run("compliance-audit", "-p", "bogus=1").exit_code == 2
    assert _run("compliance-audit", "-p", "period=bogus").exit_code == 2
    assert len(_runs(deployment_id)) == before, "a refused run was never created"
    with session() as db:
        name = factories.framework(db, manager=factories.person(db), owners=[]).name
    result = _run("compliance-audit", "-p", f"framework={name}", "-p", "period=2026-Q4", "-p",
                  "evidence_window_days=3", "-p", "preview=true")
    assert result.exit_code == 0, result.output
    created = [run for run in _runs(deployment_id) if run.name in result.output]
    assert [run.parameters for run in created] == [{"framework": name, "period": "2026-Q4",
                                                    "evidence_window_days": 3, "preview": True}]


def test_a_name_the_registry_does_not_hold_is_refused_naming_it_and_the_known_ones(registry_db: str) -> None:
    with session() as db:
        name = factories.framework(db, manager=factories.person(db), owners=[]).name
    result = _run("compliance-audit", "-p", "framework=Informaton Security")
    assert result.exit_code == 2
    assert f"framework 'Informaton Security' does not exist (known: {name})" in result.output
    result = _run("emergency-drill", "-p", "facility=NOPE")
    assert result.exit_code == 2 and "facility 'NOPE' does not exist (known: none)" in result.output
    with session() as db:
        db.add(RiskCategory(code="CYB", name="Cyber", appetite="Medium"))
        db.commit()
    result = _run("risk-review", "-p", "category=CBY")
    assert result.exit_code == 2 and "risk category 'CBY' does not exist (known: CYB)" in result.output
    result = _run("risk-review", "-p", "risk_code=CYB-1")
    assert result.exit_code == 2 and "risk 'CYB-1' does not exist (known: none)" in result.output


def test_the_prefect_api_refuses_a_run_with_an_unknown_parameter_naming_it(prefect_api: str, registry_db: str) -> None:
    from prefect.client.orchestration import get_client

    deployment_id = _deployment()
    with get_client(sync_client=True) as client, pytest.raises(httpx.HTTPStatusError) as refused:
        client.create_flow_run_from_deployment(deployment_id, parameters={"period": "2026-Q4", "bogus": 1})
    assert refused.value.response.status_code == 409
    assert "Additional properties are not allowed ('bogus' was unexpected)" in refused.value.response.text
