"""The form a control owner answers from the evidence request's link."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from engine.forms import UploadedFile, register_form


@register_form("attestation")
class Attestation(BaseModel):
    model_config = ConfigDict(title="Control attestation")

    result: Literal["pass", "fail"] = Field(
        title="Result", description="Does the control operate as described for this period?",
        json_schema_extra={"widget": "radio", "labels": {"pass": "Operating (pass)", "fail": "Not operating (fail)"}},
    )
    note: str = Field(
        "", title="Note", description="What you checked, or what is wrong.", max_length=4000,
        json_schema_extra={"widget": "textarea"},
    )
    evidence_url: HttpUrl | None = Field(None, title="Evidence link", description="Where the evidence is kept.")
    evidence_file: UploadedFile | None = Field(
        None, title="Evidence file", description="Or upload it (kept with its SHA-256).",
        json_schema_extra={"widget": "file"},
    )

    @model_validator(mode="after")
    def _pass_needs_evidence(self) -> Attestation:
        if self.result == "pass" and self.evidence_url is None and self.evidence_file is None:
            raise ValueError("A pass needs evidence: give a link or upload a file.")
        return self
