"""Emergency and continuity drills: acknowledgements by link, escalation of the missing, an after-action report."""

from engine.processes import Process
from flows.continuity.drill.calendar import obligations
from flows.continuity.drill.forms import DrillAck, DrillRecovery

PROCESS = Process(name="emergency-drill", title="Emergency and continuity drills", actor="emergency-drill",
                  forms=(DrillAck, DrillRecovery), obligations=obligations, demo="drill", flows=("flow", "dispatch"))
