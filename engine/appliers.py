"""Answers that take effect the moment they are given: each subject_type's Applier (engine.processes.Applier).

The engine's own (corrective actions, engine.findings) and every discovered process's. The gateway applies an
answer right after recording it; the sweep catches up what each applier names as not yet applied.
"""

from __future__ import annotations

import logging

from engine import findings, processes
from engine.processes import Applier, DeclarationProblem
from engine.work import unit
from registry import HumanStep, StepStatus, session

log = logging.getLogger(__name__)

ENGINE_APPLIERS: tuple[Applier, ...] = (findings.APPLIER,)


def appliers() -> dict[str, Applier]:
    """Every applier by the subject_type it moves; a subject_type two declare is a DeclarationProblem."""
    found: dict[str, Applier] = {}
    declared = [("the engine", a) for a in ENGINE_APPLIERS]
    declared += [(p.name, a) for p in processes.discover().values() for a in p.appliers]
    owners: dict[str, str] = {}
    for owner, applier in declared:
        if applier.subject_type in found:
            raise DeclarationProblem(f"answers to {applier.subject_type!r} steps are applied by both "
                                     f"{owners[applier.subject_type]} and {owner}")
        found[applier.subject_type], owners[applier.subject_type] = applier, owner
    return found


def applies_to(subject_type: str) -> bool:
    return subject_type in appliers()


def apply_answered(step_id: int) -> bool:
    """Apply one answered step in a unit of its own (its messages delivered after the commit); False if nothing
    applies to it, it is not answered, or its answer had taken effect already."""
    with unit() as db:
        step = db.get(HumanStep, step_id)
        if step is None or step.status != StepStatus.answered:
            return False
        applier = appliers().get(step.subject_type)
        return applier is not None and applier.apply(db, step)


def apply_unapplied() -> list[int]:
    """The sweep's catch-up: every answered step an applier names as not yet applied (the gateway failed after
    recording it, or the process died in between); the ids of the steps applied now."""
    owed: list[int] = []
    with session() as db:
        for subject_type, applier in appliers().items():
            try:
                owed += [step_id for step_id in applier.unapplied(db) if step_id]
            except Exception as error:  # one applier's broken query must not stop the others' catch-up
                log.error("answers to %s steps: could not read which are not yet applied: %r", subject_type, error)
                db.rollback()
    applied = []
    for step_id in owed:
        try:
            if apply_answered(step_id):
                applied.append(step_id)
            else:  # named as owed yet nothing to change: unless another got there first, asked again every minute
                log.warning("step %s: its applier names its answer as not yet applied, but applying it changed "
                            "nothing", step_id)
        except Exception as error:  # one answer that cannot take effect must not stop the rest; the next sweep retries
            log.error("the answer of step %s could not be applied: %r", step_id, error)
    return applied
