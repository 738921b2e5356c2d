"""The every-five-minutes dispatcher: each drill programme whose cadence has come round gets its own drill run."""

from __future__ import annotations

from prefect import get_run_logger

from engine import runs
from flows.continuity.drill.tasks import start_due_drills


@runs.process_flow("emergency-drill-dispatch")
def emergency_drill_dispatch() -> list[str]:
    """Start one emergency-drill run for every drill programme whose cadence has come round (a fire evacuation
    every six months, a yearly IT-outage tabletop), each keyed by its occasion so it is started once. A
    programme never run before starts counting now; occurrences missed while nothing ran are not made up."""
    started = start_due_drills()
    get_run_logger().info("Drills started: %s", started or "none due")
    return started
