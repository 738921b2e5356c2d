"""The quarterly vendor review: scorecards from deliveries, approved changes of standing, contract-end notices."""

from engine.processes import Process
from flows.supply.vendor_review.calendar import obligations
from flows.supply.vendor_review.forms import FORMS
from flows.supply.vendor_review.imports import DELIVERIES, VENDORS

PROCESS = Process(name="vendor-review", title="Quarterly vendor review", actor="vendor-review", forms=FORMS,
                  imports=(VENDORS, DELIVERIES), obligations=obligations, flows=("flow", "notices"))
