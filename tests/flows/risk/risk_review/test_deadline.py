"""The review's re-score deadline is its occasion's: set by the run that opens it, kept by a re-run given another
window; a review opened before occasions held one counts the window from its opening, as before."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from engine import processes
from engine.deadlines import working_days_from_now
from flows.risk.risk_review import tasks
from flows.risk.risk_review.flow import risk_review
from registry import HumanStep, Occasion, session
from registry.clock import as_utc
from registry.risk import RiskRescore
from tests.conftest import Mailbox
from tests.flows.risk.risk_review.organisation import organisation


@pytest.fixture(autouse=True)
def _import_kinds() -> None:
    """The risk CSV kinds organisation() imports are registered by discovery (the gateway's start does it too)."""
    processes.discover()


def _review() -> tuple[Occasion, set[datetime]]:
    with session() as db:
        occasion = db.exec(select(Occasion).where(Occasion.process == "risk-review")).one()
        steps = {as_utc(due) for due in db.exec(select(HumanStep.due_at).join(
            RiskRescore, col(RiskRescore.step_id) == HumanStep.id))}
    return occasion, steps


def test_the_review_keeps_the_deadline_and_parameters_of_the_run_that_opened_it(prefect_api: str, smtp: Mailbox,
                                                                                tmp_path: Path) -> None:
    organisation(tmp_path)
    opened = risk_review(rescore_days=3, decision_days=4)
    assert (opened.status, opened.risks) == ("collecting", 3)
    occasion, steps = _review()
    assert occasion.due_at is not None and steps == {as_utc(occasion.due_at)}, "the re-scores are due with it"
    assert as_utc(occasion.due_at) == working_days_from_now(3, start=as_utc(occasion.opened_at)), \
        "three working days from the opening"
    assert occasion.parameters is not None
    assert (occasion.parameters["rescore_days"], occasion.parameters["decision_days"],
            occasion.parameters["preview"]) == (3, 4, False)

    assert risk_review(rescore_days=9).status == "collecting"
    again, _ = _review()
    assert (again.due_at, again.parameters) == (occasion.due_at, occasion.parameters), \
        "a re-run given another window moves neither"


def test_a_review_opened_before_occasions_held_a_deadline_counts_it_from_its_opening(
        prefect_api: str, smtp: Mailbox, tmp_path: Path) -> None:
    organisation(tmp_path)
    risk_review(rescore_days=3)
    occasion, _ = _review()
    with session() as db:
        db.execute(update(Occasion).where(col(Occasion.id) == occasion.id).values(due_at=None))
    state = tasks.open_review.fn(tasks.Scope(), 7)
    assert as_utc(state.rescore_due_at) == working_days_from_now(7, start=as_utc(occasion.opened_at))
