"""Continuity plan reviews: each plan due by its review cadence is confirmed or revised by its owner from a link."""

from engine.processes import Process
from flows.continuity.plan_review.calendar import obligations
from flows.continuity.plan_review.forms import PlanReview

PROCESS = Process(name="continuity-plan-review", title="Continuity plan review", actor="continuity-review",
                  forms=(PlanReview,), obligations=obligations, flows=("flow", "dispatch"))
