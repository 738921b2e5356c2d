"""The quarterly vendor review: scorecards from deliveries, approved changes of standing, contract-end notices."""

from engine.processes import Process
from flows.supply.vendor_review.calendar import obligations
from flows.supply.vendor_review.imports import DELIVERIES, VENDORS

PROCESS = Process(name="vendor-review", title="Quarterly vendor review", actor="vendor-review",
                  imports=(VENDORS, DELIVERIES), obligations=obligations)
