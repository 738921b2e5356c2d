"""The quarterly compliance audit: evidence from control owners, findings, a report and the sign-off."""

from engine.processes import Process
from flows.compliance.audit.calendar import obligations
from flows.compliance.audit.forms import Attestation

PROCESS = Process(name="compliance-audit", title="Quarterly compliance audit", actor="compliance-audit",
                  forms=(Attestation,), obligations=obligations, demo="audit")
