"""The quarterly risk review: owners re-score their risks from a link, the Director accepts or treats what is above
appetite, a report with heat maps; daily, KRI breaches and expired acceptances reopen a risk's review."""

from engine.processes import Process, Section
from flows.risk.risk_review.answers import APPLIERS
from flows.risk.risk_review.calendar import obligations
from flows.risk.risk_review.forms import FORMS
from flows.risk.risk_review.imports import RISK_CATEGORIES, RISKS
from flows.risk.risk_review.section import build

PROCESS = Process(name="risk-review", title="Risk review", actor="risk-review", forms=FORMS,
                  imports=(RISK_CATEGORIES, RISKS), obligations=obligations, appliers=APPLIERS, demo="risk",
                  flows=("flow", "dispatch"),
                  sections=(Section(key="risk", title="Risk", template="risk/risk_review/report_section.html",
                                    build=build),))
