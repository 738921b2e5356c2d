"""The deadline sweep as a flow to run by hand from the UI; the engine loop (engine/loop.py) runs the same sweep
every minute as a function call, so the run list is not 1,440 sweeps a day."""

from __future__ import annotations

from prefect import get_run_logger

from engine import runs
from engine.sweep import sweep


@runs.process_flow("deadline-sweep")
def deadline_sweep() -> dict[str, int]:
    """Remind people before a step is due, escalate overdue steps to their manager, expire steps at their final
    deadline (resuming the waiting run with an "expired" outcome), apply answers the gateway recorded but could
    not apply (a corrective action, a re-score), resume runs whose answer arrived while the Prefect API was
    unreachable, start a new run for every run whose process died, and retry undelivered
    messages."""
    report = sweep()
    counts = {"reminded": len(report.reminded), "escalated": len(report.escalated),
              "expired": len(report.expired), "applied": len(report.applied), "resumed": len(report.resumed),
              "taken_over": len(report.taken_over), "delivered": report.delivered}
    get_run_logger().info("Sweep: %s", counts)
    return counts
