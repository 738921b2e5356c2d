"""Emergency and continuity drills: acknowledgements by link, escalation of the missing, an after-action report."""

from engine.processes import LoopStep, Process
from flows.continuity.drill.calendar import obligations
from flows.continuity.drill.forms import DrillAck, DrillRecovery


def _start_due_drills() -> object:
    from flows.continuity.drill.dispatch import start_due  # Prefect, imported only where the loop runs

    return start_due()


PROCESS = Process(name="emergency-drill", title="Emergency and continuity drills", actor="emergency-drill",
                  forms=(DrillAck, DrillRecovery), obligations=obligations, demo="drill", flows=("flow", "dispatch"),
                  loop_steps=(LoopStep("drill dispatch", lambda settings: settings.dispatch_seconds,
                                       _start_due_drills),))
