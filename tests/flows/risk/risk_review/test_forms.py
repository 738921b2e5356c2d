"""The Director's appetite answer: its date is checked as it is given, never when it is read back after that day."""

from __future__ import annotations

from datetime import timedelta

from engine import periods
from engine.answers import answer_of
from flows.risk.risk_review.forms import AppetiteDecision
from registry import HumanStep, StepStatus


def test_an_acceptance_read_back_after_it_has_ended_still_reads_as_given() -> None:
    ended = periods.today() - timedelta(days=1)
    stored = {"decision": "accept", "accepted_until": ended.isoformat(), "justification": "Carried for a quarter.",
              "action": "", "action_owner": ""}
    step = HumanStep(id=1, form="risk_appetite", status=StepStatus.answered, answer=stored)

    read = answer_of(step, AppetiteDecision)

    assert read is not None and (read.decision, read.accepted_until) == ("accept", ended)
