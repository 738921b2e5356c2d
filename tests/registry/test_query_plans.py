"""The queries that run per message, per sweep and per POST are served by an index on both databases.

Each statement is the one the code runs (the module-level builders the code itself calls), executed once in a
transaction that is rolled back; what it sent to the database, parameters included, is then explained. A year's
outbox and steps must cost the same per message and per sweep as an empty registry: a full-table scan in any of
these plans is what made them grow with the year (benchmarks/registry_queries.py measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.sql import Executable

from benchmarks import year_of_data
from engine import findings, links, notify, sweep
from engine.human_steps import decide_statement
from flows.risk.risk_review import answers
from registry import StepStatus, get_engine
from registry.clock import utcnow

NOW = utcnow()

# (what, the statement as the code builds it, the indexes either of which serves it)
STATEMENTS: list[tuple[str, Callable[[], Executable], tuple[str, ...]]] = [
    ("per message: enqueue's idempotency check", lambda: notify.queued_statement(["step-1-reminder"]),
     ("ix_notification_message_key",)),
    ("per message and per POST: the link by its token's hash", lambda: links.link_statement("ab" * 32),
     ("ix_step_link_token_hash",)),
    ("per sweep: steps whose run is owed its outcome", sweep.resume_statement, ("ix_human_step_resume_pending",)),
    ("per sweep: steps to remind", lambda: sweep.reminders_statement(NOW, timedelta(hours=24)),
     ("ix_human_step_reminder",)),
    # Both read only pending steps: which of the two is cheaper depends on how many are past due.
    ("per sweep: the escalation claim", lambda: sweep.escalation_claim(NOW),
     ("ix_human_step_escalation", "ix_human_step_expiry")),
    ("per sweep: steps to expire", lambda: sweep.expiry_statement(NOW), ("ix_human_step_expiry",)),
    # Read from the few unfinished actions, each step by its key: never the year of answered steps.
    ("per sweep: corrective-action answers not yet applied", findings.unapplied_statement,
     ("ix_corrective_action_status",)),
    ("per sweep: open corrective actions whose owner nobody asked", findings.unasked_statement,
     ("ix_corrective_action_status",)),
    # The risk review's appliers: the few re-scores not yet applied, the few acceptances still pending.
    ("per sweep: risk re-scores answered and not yet applied", answers.unapplied_rescores_statement,
     ("ix_risk_rescore_unapplied",)),
    ("per sweep: the Director's risk decisions answered and not yet applied", answers.unapplied_decisions_statement,
     ("ix_risk_acceptance_status",)),
    ("per POST: record_answer's conditional UPDATE",
     lambda: decide_statement(1).values(status=StepStatus.answered, answer={"result": "pass"}), ("pkey",)),
]


def _as_sent(connection: Connection, statement: Executable) -> tuple[str, Any]:
    """The SQL and parameters the statement sends to the driver (executed, inside the caller's transaction)."""
    sent: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((sql, parameters))

    event.listen(connection, "before_cursor_execute", grab)
    try:
        connection.execute(statement)
    finally:
        event.remove(connection, "before_cursor_execute", grab)
    return sent[-1]


def _plan(connection: Connection, sql: str, parameters: Any) -> list[str]:
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if connection.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)
            return [str(row[3]) for row in cursor.fetchall()]
        # Small test tables make a sequential scan the cheapest plan; with it priced out, the planner shows
        # whether an index can serve the query at all, which is what a year of rows needs.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", parameters)
        return [str(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.close()


@pytest.fixture
def year_shaped(any_db: str) -> str:
    """A registry of a year's shape in miniature (2,000 steps, most decided; 600 messages, most sent), analysed:
    on empty tables every index costs the same and a planner's choice among them says nothing."""
    year_of_data.build(any_db, scale=0.002)
    return any_db


@pytest.mark.parametrize(("what", "build", "indexes"), STATEMENTS, ids=[s[0] for s in STATEMENTS])
def test_the_statement_is_served_by_its_index(year_shaped: str, what: str, build: Callable[[], Executable],
                                              indexes: tuple[str, ...]) -> None:
    with get_engine(year_shaped).connect() as connection, connection.begin() as transaction:
        sql, parameters = _as_sent(connection, build())
        plan = _plan(connection, sql, parameters)
        transaction.rollback()
    shown = "\n".join(plan)
    if connection.dialect.name == "sqlite":
        assert not [step for step in plan if step.startswith("SCAN ")], f"{what} scans a table:\n{sql}\n{shown}"
        used = [step for step in plan if step.startswith("SEARCH ")]
        assert used, f"{what} searches no index:\n{shown}"
        wanted = ["INTEGER PRIMARY KEY" if index == "pkey" else f"INDEX {index} " for index in indexes]
        assert any(w in f"{step} " for step in used for w in wanted), f"{what} does not use {indexes}:\n{shown}"
    else:
        assert "Seq Scan" not in shown, f"{what} scans a table:\n{sql}\n{shown}"
        assert any(kind in shown for kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")), shown
        wanted = ["human_step_pkey" if index == "pkey" else index for index in indexes]
        assert any(f"using {w} " in f"{shown} " for w in wanted), f"{what} does not use {indexes}:\n{shown}"
