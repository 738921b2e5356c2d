"""Processes declare themselves; the engine finds them by walking flows/ (as Apprise finds its plugins).

Each `flows/<domain>/<process>/__init__.py` holds one `PROCESS = Process(...)`. Importing a declaration must stay
cheap (no Prefect): the gateway, `ops import` and `ops demo` discover processes without importing any flow.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlmodel import Session

from engine.importer import ImportKind, register_kind

if TYPE_CHECKING:
    from engine.periods import Period
    from engine.settings import Settings
    from registry import HumanStep

FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"
_PACKAGE = "flows"


@dataclass(frozen=True)
class Due:
    """One obligation a process puts on the calendar: what falls due, whose it is, when."""

    kind: str
    what: str
    owner_id: int | None
    due_at: datetime


Obligations = Callable[[Session, datetime], Iterable[Due]]
"""(session, horizon) → what falls due before the horizon (overdue included)."""


SectionBuild = Callable[[Session, "Period"], "dict[str, Any] | None"]
"""(session, period) → what the section shows, or None when there is nothing to report for the period."""


@dataclass(frozen=True)
class Section:
    """A part of the operations report a process contributes, rendered after the report's own parts.

    `template` is a partial under templates/ (e.g. finance/budget_variance/report_section.html) rendered with the
    dict `build` returns as `section` (and the report's `period`); `build` lives in a cheap module of the process
    (no Prefect), as the declaration does; it reads, it writes nothing. A `figures` entry of the dict, a list of
    (name, value) or (name, value, unit), goes into the report's CSV, one row each under the section `key`.
    `key` names the section in the CSV and the HTML (an id): unique, and none of the report's own.
    """

    key: str
    title: str
    template: str
    build: SectionBuild


@dataclass(frozen=True)
class Applier:
    """What an answered step of `subject_type` changes, applied the moment it is answered.

    The gateway calls `apply(db, step)` right after it records the answer (in a unit of its own, after the answer
    committed); the sweep calls it again for every step `unapplied(db)` names (the gateway failed after
    recording, the process died in between). `apply` is idempotent: True if it changed something, False if the
    step's answer had taken effect already (or the step is not one it moves). `unapplied(db)` returns the ids of
    the answered steps whose answer has not taken effect yet, read cheaply (from the few unfinished rows, by an
    index), because the sweep runs it every minute.
    """

    subject_type: str
    apply: Callable[[Session, HumanStep], bool]
    unapplied: Callable[[Session], Iterable[int]]


@dataclass(frozen=True)
class LoopStep:
    """Work of a process the engine loop (engine/loop.py) does as a function call, never as a flow run: `run()`
    every `every(settings)` seconds, in whichever process holds the loop's lease (a drill dispatcher looking for
    the programmes that came round). `run` imports what it needs when called: a declaration stays cheap."""

    name: str
    every: Callable[[Settings], float]
    run: Callable[[], object]


@dataclass(frozen=True)
class Process:
    """What the engine knows of a process: everything else is the process's own."""

    name: str
    """The flow's name and its deployments' prefix in prefect.yaml, e.g. compliance-audit."""
    title: str
    actor: str
    """Who the audit trail says acted when the process changes something."""
    forms: tuple[type[BaseModel], ...] = ()
    """The forms its people answer from a link (each registered with engine.forms.register_form)."""
    imports: tuple[ImportKind, ...] = ()
    """The CSV kinds `ops import` accepts for it."""
    obligations: Obligations | None = None
    demo: str | None = None
    """The story `ops demo <name>` plays for it: demo/stories/<name>.py."""
    sections: tuple[Section, ...] = ()
    """Its parts of the operations report."""
    appliers: tuple[Applier, ...] = ()
    """What its steps' answers change the moment they are answered, by subject_type."""
    loop_steps: tuple[LoopStep, ...] = ()
    """What the engine loop does for it every few minutes (a run started only when there is something to do)."""
    flows: tuple[str, ...] = ("flow",)
    """Its flow modules inside the package (a dispatcher that starts due occasions is a flow of its own)."""
    package: str = field(default="", compare=False)
    """Set by discovery: the dotted package, e.g. flows.compliance.audit."""

    @property
    def folder(self) -> str:
        """The package's path below flows/, e.g. compliance/audit; templates/ mirrors it."""
        return self.package.removeprefix(f"{_PACKAGE}.").replace(".", "/")


class DeclarationProblem(RuntimeError):
    pass


def _packages() -> list[str]:
    found = []
    for domain in sorted(pkgutil.iter_modules([str(FLOWS_DIR)]), key=lambda m: m.name):
        if not domain.ispkg or domain.name.startswith("_"):
            continue
        for process in sorted(pkgutil.iter_modules([str(FLOWS_DIR / domain.name)]), key=lambda m: m.name):
            if process.ispkg and not process.name.startswith("_"):
                found.append(f"{_PACKAGE}.{domain.name}.{process.name}")
    return found


@lru_cache
def discover() -> dict[str, Process]:
    """Every declared process by name; their forms and import kinds registered."""
    processes: dict[str, Process] = {}
    for package in _packages():
        declared = getattr(importlib.import_module(package), "PROCESS", None)
        if not isinstance(declared, Process):
            raise DeclarationProblem(f"{package} declares no PROCESS = Process(...) in its __init__.py")
        if declared.name in processes:
            raise DeclarationProblem(f"process {declared.name!r} is declared twice: {processes[declared.name].package}"
                                     f" and {package}")
        process = Process(**{**declared.__dict__, "package": package})
        for kind in process.imports:
            register_kind(kind)
        processes[process.name] = process
    check_declarations(processes.values())
    return processes


def check_declarations(declared: Iterable[Process]) -> None:
    """What no two processes may both declare: a report section's key, the subject_type an applier moves (whose
    applier would the gateway call?)."""
    sections: dict[str, str] = {}
    subjects: dict[str, str] = {}
    for process in declared:
        for section in process.sections:
            if (other := sections.setdefault(section.key, process.name)) != process.name or \
                    sum(s.key == section.key for s in process.sections) > 1:
                raise DeclarationProblem(f"report section {section.key!r} is declared by both {other} and "
                                         f"{process.name}")
        for applier in process.appliers:
            if (other := subjects.setdefault(applier.subject_type, process.name)) != process.name or \
                    sum(a.subject_type == applier.subject_type for a in process.appliers) > 1:
                raise DeclarationProblem(f"answers to {applier.subject_type!r} steps are applied by both {other} "
                                         f"and {process.name}")


def process(name: str) -> Process:
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(f"no process {name!r}; known: {', '.join(sorted(discover()))}") from None


def obligations(db: Session, horizon: datetime) -> list[tuple[Process, Due]]:
    """What every process has falling due before `horizon`, soonest first."""
    found = [(p, due) for p in discover().values() if p.obligations is not None for due in p.obligations(db, horizon)]
    return sorted(found, key=lambda pair: pair[1].due_at)
