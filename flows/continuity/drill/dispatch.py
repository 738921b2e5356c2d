"""The drill dispatcher: each drill programme whose cadence has come round gets its own drill run (started by the
engine loop every five minutes; the emergency-drill-dispatch deployment does the same once, by hand)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.runtime import deployment
from sqlmodel import col, select

from engine import cadences, followups, runs
from engine.settings import get_settings
from engine.work import unit
from flows.continuity.drill.calendar import due_drills
from registry import DrillProgram
from registry.clock import utcnow

DRILL_DEPLOYMENT = "emergency-drill/emergency-drill"


@task
def start_due_drills(drill_deployment: str = DRILL_DEPLOYMENT) -> list[str]:
    """start_due as a task of the dispatch flow: runs are started only when it runs from a deployment."""
    return start_due(drill_deployment, start_runs=bool(deployment.get_id()))


def start_due(drill_deployment: str = DRILL_DEPLOYMENT, *, start_runs: bool = True) -> list[str]:
    """Start one drill run for every programme whose cadence has come round; what was started. The engine loop
    (engine/loop.py) calls it every OPS_DISPATCH_SECONDS; without `start_runs` a due drill is only noted.

    A programme never run before starts counting now, so installing one does not set off a drill at once.
    Occurrences missed while nothing was running are not made up: the next run is the next occurrence.
    """
    tz, now = get_settings().timezone, utcnow()
    started: list[str] = []
    with unit() as db:
        due = [(d.program.id or 0, d.program.kind, d.program.cadence, d.program.last_run_at, d.facility.code,
                d.occasion) for d in due_drills(db, now)]
        for program in db.exec(select(DrillProgram).where(col(DrillProgram.last_run_at).is_(None),
                                                          col(DrillProgram.active).is_(True))):
            program.last_run_at = now
            db.add(program)
    for program_id, kind, cadence, last_run_at, code, occasion in due:
        if last_run_at is None:
            continue
        # Started before it is claimed: a crash or a refused API call in between leaves the occasion due, and
        # the run's key makes the next look find the same run instead of starting a second one.
        if start_runs:
            run_id = followups.fan_out(drill_deployment, key=f"drill-{program_id}-{occasion.isoformat()}",
                                       parameters={"facility": code, "kind": kind,
                                                   "occasion": occasion.isoformat()},
                                       run_name=f"{kind} {code} {occasion:%Y-%m-%d}")
            note = f"{code} {kind}: flow run {run_id}"
        else:
            note = f"{code} {kind} due {occasion.isoformat()}: not running from a deployment, start it with a facility"
        # The programme keeps when it last ran, not when it is next due (the claim's usual column): it is claimed
        # on that, and moved to now, which the cadence counts from.
        with unit() as db:
            if cadences.claim(db, DrillProgram, program_id, seen=last_run_at, cadence=cadence, after=now, tz=tz,
                              column="last_run_at", last_run_at=now) is not None:
                started.append(note)
    return started


@runs.process_flow("emergency-drill-dispatch")
def emergency_drill_dispatch() -> list[str]:
    """Start one emergency-drill run for every drill programme whose cadence has come round (a fire evacuation
    every six months, a yearly IT-outage tabletop), each keyed by its occasion so it is started once. A
    programme never run before starts counting now; occurrences missed while nothing ran are not made up."""
    started = start_due_drills()
    get_run_logger().info("Drills started: %s", started or "none due")
    return started
