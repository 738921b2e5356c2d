"""Forms a person answers from a link: pydantic models, registered by name, rendered by the gateway.

Checks that hold at the moment of answering only — a date not in the past, a person who is in the registry
today, a score on the risk's matrix as the step's details carry it — read `answering(info)` in a validator:

    @model_validator(mode="after")
    def _not_past(self, info: ValidationInfo) -> MyForm:
        if (now := answering(info)) is not None and self.due < now.today:
            raise ValueError(...)

It is the AnswerContext (the step, its details, a registry session, the moment) while the gateway validates what
a person submits, and None everywhere else: engine.answers.answer_of reading a stored answer back (a date that
was in the future when given has passed since; the answer still reads as given), a model built in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationInfo, model_validator

if TYPE_CHECKING:
    from sqlmodel import Session

    from registry import HumanStep

F = TypeVar("F", bound=type[BaseModel])
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class AnswerContext:
    """What an answer is checked against as it is given: the step answered, a session on the registry (read; the
    gateway records the answer in the same transaction) and the moment it is submitted."""

    step: HumanStep
    db: Session
    now: datetime

    @property
    def details(self) -> dict[str, Any]:
        """The step's details, hidden keys ("_scale") included: what the process asked with."""
        return dict(self.step.details or {})

    @property
    def today(self) -> date:
        """The organisation's today at the moment of answering (its time zone)."""
        from engine.periods import today

        return today(self.now)


def answering(info: ValidationInfo) -> AnswerContext | None:
    """The AnswerContext while a person's answer is being validated at the gateway; None when a stored answer is
    read back or a form is built in code, where checks of the moment of answering do not apply."""
    return info.context if isinstance(info.context, AnswerContext) else None


def validate_answer(model: type[M], data: dict[str, Any], context: AnswerContext) -> M:
    """`data` as `model`, validated as a person's answer given in `context` (the gateway's one way to do it)."""
    return model.model_validate(data, context=context)

_FORMS: dict[str, type[BaseModel]] = {}


def register_form(name: str) -> Any:
    """Class decorator: make a form model answerable through the gateway under `name`.

    The model declares its title (`model_config = ConfigDict(title=...)`): what people read wherever the form is
    named (the operations report's latency table), never `name`, which is for the registry.
    """

    def _register(model: F) -> F:
        if not model.model_config.get("title"):
            raise ValueError(f"form {name!r} ({model.__qualname__}) declares no title: give it "
                             "model_config = ConfigDict(title=...), the name people read")
        existing = _FORMS.get(name)
        if existing is not None and existing.__qualname__ != model.__qualname__:
            raise ValueError(f"form {name!r} is already registered by {existing.__qualname__}")
        _FORMS[name] = model
        return model

    return _register


def _discovered() -> dict[str, type[BaseModel]]:
    """The forms, every process's included: a process registers its forms when its declaration is imported."""
    from engine.processes import discover

    discover()
    return _FORMS


def form_names() -> list[str]:
    return sorted(_discovered())


def form_model(name: str) -> type[BaseModel]:
    try:
        return _FORMS[name]
    except KeyError:
        pass
    try:
        return _discovered()[name]
    except KeyError:
        raise KeyError(f"no form registered under {name!r}; known: {sorted(_FORMS)}") from None


def form_title(name: str) -> str:
    """The title people read for the form registered as `name`; a form no longer registered keeps its name."""
    try:
        return str(form_model(name).model_config.get("title") or name)
    except KeyError:
        return name


class UploadedFile(BaseModel):
    """A file the gateway stored content-addressed; the SHA-256 is what the trail keeps."""

    filename: str
    sha256: str
    size: int
    stored_path: str


@register_form("approval")
class Approval(BaseModel):
    model_config = ConfigDict(title="Approval decision")

    comment: str = Field(
        "", title="Comment", description="Required when you reject: it is sent to the people concerned.",
        max_length=4000, json_schema_extra={"widget": "textarea"},
    )
    decision: Literal["approve", "reject"] = Field(
        title="Decision", json_schema_extra={"widget": "buttons", "labels": {"approve": "Approve", "reject": "Reject"}},
    )

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> Approval:
        if self.decision == "reject" and not self.comment.strip():
            raise ValueError("Please say why you reject, in the comment.")
        return self


@register_form("action_done")
class ActionDone(BaseModel):
    """The owner of a corrective action reports it done (engine.findings: the verifier is asked next)."""

    model_config = ConfigDict(title="Corrective action done")

    what_was_done: str = Field(
        title="What was done", description="What you changed, and how it keeps the finding from recurring.",
        max_length=4000, json_schema_extra={"widget": "textarea"},
    )
    evidence_url: HttpUrl | None = Field(None, title="Evidence link", description="Where the evidence is kept.")
    evidence_file: UploadedFile | None = Field(
        None, title="Evidence file", description="Or upload it (kept with its SHA-256).",
        json_schema_extra={"widget": "file"},
    )

    @model_validator(mode="after")
    def _says_what(self) -> ActionDone:
        if not self.what_was_done.strip():
            raise ValueError("Please say what was done.")
        return self


@register_form("action_verification")
class ActionVerification(BaseModel):
    """The verifier's check that a corrective action worked; not effective sends it back to its owner."""

    model_config = ConfigDict(title="Corrective action verification")

    effective: Literal["yes", "no"] = Field(
        title="Effective?", description="Does what was done remove the finding's cause?",
        json_schema_extra={"widget": "radio", "labels": {"yes": "Effective: close it",
                                                         "no": "Not effective: send it back"}},
    )
    comment: str = Field(
        "", title="Comment", description="Required when not effective: it is sent to the owner.", max_length=4000,
        json_schema_extra={"widget": "textarea"},
    )

    @model_validator(mode="after")
    def _send_back_needs_reason(self) -> ActionVerification:
        if self.effective == "no" and not self.comment.strip():
            raise ValueError("Please say what is still missing, in the comment.")
        return self
