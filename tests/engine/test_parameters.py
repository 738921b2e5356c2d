"""engine.parameters: a process's Parameters model as the Run form's top-level fields, the registry's names as
dropdowns, and the deployment registered again when those names change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from prefect.exceptions import ParameterBindError, ParameterTypeError
from pydantic import BaseModel, ConfigDict, Field

from engine import deployments, parameters
from engine.parameters import OneOf, form_schema
from registry import session
from tests import factories


class _Toggled(BaseModel):
    minutes: int | None = Field(None, title="Minutes", description="A field the UI would draw as a type toggle.")


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid")
    framework: Annotated[str, OneOf("framework")] = Field("Information Security", title="Framework",
                                                          description="The framework.")
    kind: Annotated[str, OneOf("drill kind", only=False)] = Field("fire_evacuation", title="Kind",
                                                                  description="The kind.")
    days: int = Field(5, ge=1, title="Days", description="How long.")


def test_a_field_that_may_be_none_is_refused_when_the_form_is_built() -> None:
    with pytest.raises(AssertionError, match="_Toggled.minutes has several types"):
        form_schema(_Toggled)


def test_the_form_is_the_models_fields_at_the_top_with_the_registrys_values_as_dropdowns() -> None:
    plain = form_schema(_Form).model_dump_for_openapi()
    assert list(plain["properties"]) == ["framework", "kind", "days"]
    assert plain["properties"]["days"] == {"default": 5, "minimum": 1, "title": "Days", "description": "How long.",
                                           "type": "integer", "position": 2}
    assert plain["additionalProperties"] is False and plain["type"] == "object"
    offered = form_schema(_Form, {"framework": ["ISO 27001", "SOC 2"], "drill kind": ["it_outage"]}).properties
    assert offered["framework"]["enum"] == ["ISO 27001", "SOC 2"]
    assert "default" not in offered["framework"], "a default the registry does not hold is for the person to pick"
    assert offered["kind"]["enum"] == ["it_outage", "fire_evacuation"], "an ad-hoc kind stays offered"


class _Optional(BaseModel):
    risk_code: Annotated[str, OneOf("risk")] = Field("", title="Risk", description="Empty: every risk due.")


def test_an_empty_choice_that_means_something_is_offered_first_and_stays_the_default() -> None:
    offered = form_schema(_Optional, {"risk": ["CYB-01", "OPS-01"]}).properties["risk_code"]
    assert offered["enum"] == ["", "CYB-01", "OPS-01"] and offered["default"] == ""
    assert parameters.unknown_value(_Optional, {"risk_code": ""}, {"risk": ["CYB-01"]}) is None
    assert parameters.unknown_value(_Optional, {"risk_code": "CYB-1"}, {"risk": ["CYB-01"]}) == \
        "risk 'CYB-1' does not exist (known: CYB-01)"


def test_a_name_the_registry_does_not_hold_is_named_with_the_known_ones() -> None:
    known = {"framework": ["ISO 27001", "SOC 2"], "drill kind": []}
    assert parameters.unknown_value(_Form, {"framework": "ISO 2700"}, known) == \
        "framework 'ISO 2700' does not exist (known: ISO 27001, SOC 2)"
    assert parameters.unknown_value(_Form, {"framework": "SOC 2", "kind": "flood"}, known) is None


def test_a_process_flow_takes_the_fields_and_refuses_a_bad_value_before_its_body(prefect_api: str) -> None:
    from engine import runs

    @runs.process_flow("parameters-probe")
    def probe(params: _Form) -> int:
        """A flow of the test's own form: what its body receives is the validated model."""
        return params.days

    assert isinstance(probe, parameters.ProcessFlow)
    assert probe(days=7) == 7
    with pytest.raises(ParameterTypeError, match="greater than or equal to 1"):
        probe(days=0)
    with pytest.raises(ParameterBindError, match="unexpected keyword argument 'params'"):
        probe(params={"days": 7})  # the old shape: one nested box


def test_a_new_framework_changes_every_deployments_version(registry_db: str) -> None:
    before = deployments.code_fingerprint()
    assert deployments.code_fingerprint() == before
    with session() as db:
        factories.framework(db, manager=factories.person(db), owners=[])
    assert deployments.code_fingerprint() != before, "its dropdown would keep offering the old frameworks"


def test_the_dropdowns_ops_up_notes_give_ops_serve_the_same_versions(registry_db: str, tmp_path: Path) -> None:
    """`ops up` hands `ops serve` the dropdown values it read (engine.stack.note_choices): the versions must be the
    ones serve would compute from the registry, else every start would register every deployment again."""
    from engine.choices import choices
    from engine.stack import note_choices, noted_choices

    with session() as db:
        factories.framework(db, manager=factories.person(db), owners=[])
    ready = tmp_path / "registry-ready"
    assert noted_choices(ready) is None  # nothing noted: serve reads the registry itself
    note_choices(ready, choices())
    assert deployments.code_fingerprint(noted_choices(ready)) == deployments.code_fingerprint()
    (ready.with_name(f"{ready.name}.choices.json")).write_text("{half written")
    assert noted_choices(ready) is None


def test_the_code_fingerprint_does_not_import_prefect(registry_db: str) -> None:
    """ops serve hashes the dropdowns' values before the Prefect server answers, which needs the CPU meanwhile."""
    probe = ("import sys; from engine import deployments; deployments.code_fingerprint(); "
             "print('prefect' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=deployments.PROJECT_ROOT, env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr
