"""Run retention on the real Prefect test server: exactly the finished runs past their horizon are deleted.

Prefect's API stamps every state it is given with the server's own time, so a run that ended days ago is made by
ending it now and moving its end time back in the server's database (the one column retention reads).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Completed, Crashed, Failed, Pending, Running, Scheduled, State, Suspended

from engine.retention import ENGINE_TAG, delete_expired_runs
from registry.clock import utcnow


@flow(name="ops-test-retention")
def _kept_or_not() -> None:
    """Never runs: only its deployments' runs are made, each put in the state under test."""


def _run_in(client: Any, deployment_id: uuid.UUID, state: State[Any]) -> uuid.UUID:
    run = client.create_flow_run_from_deployment(deployment_id, state=Pending())
    client.set_flow_run_state(run.id, state, force=True)
    if state.timestamp < utcnow() - timedelta(minutes=1):
        _as_if_at(run.id, state.timestamp, ended=state.is_final())
    return uuid.UUID(str(run.id))


def _as_if_at(run_id: uuid.UUID, moment: datetime, *, ended: bool) -> None:
    """Move the run's times (its end, if it ended) back to `moment` in the test server's database."""
    from prefect.server.utilities.database import Timestamp
    from prefect.settings import get_current_settings

    url = str(get_current_settings().server.database.connection_url.get_secret_value())  # type: ignore[union-attr]
    times = {"start_time": moment, "expected_start_time": moment, **({"end_time": moment} if ended else {})}
    flow_run = sa.table("flow_run", sa.column("id", sa.String()), *(sa.column(c, Timestamp()) for c in times))
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as connection:
            connection.execute(flow_run.update().where(flow_run.c.id == str(run_id)).values(**times))
    finally:
        engine.dispose()


def _exists(client: Any, run_id: uuid.UUID) -> bool:
    try:
        client.read_flow_run(run_id)
    except ObjectNotFound:
        return False
    return True


def test_finished_runs_past_their_horizon_go_and_nothing_waiting_or_recent_is_touched(prefect_api: str) -> None:
    now = utcnow()

    def ago(days: float) -> Any:
        return now - timedelta(days=days)

    suffix = uuid.uuid4().hex[:8]
    engine = _kept_or_not.to_deployment(name=f"retention-engine-{suffix}", tags=[ENGINE_TAG]).apply()
    other = _kept_or_not.to_deployment(name=f"retention-other-{suffix}", tags=["continuity"]).apply()
    with get_client(sync_client=True) as client:
        gone = {
            "engine run completed 8 days ago": _run_in(client, engine, Completed(timestamp=ago(8))),
            "engine run failed 8 days ago": _run_in(client, engine, Failed(timestamp=ago(8))),
            "run cancelled 401 days ago": _run_in(client, other, Cancelled(timestamp=ago(401))),
            "run crashed 401 days ago": _run_in(client, other, Crashed(timestamp=ago(401))),
        }
        kept = {
            "engine run completed 2 days ago": _run_in(client, engine, Completed(timestamp=ago(2))),
            "engine run suspended 30 days ago": _run_in(client, engine, Suspended(timestamp=ago(30))),
            "engine run running for 30 days": _run_in(client, engine, Running(timestamp=ago(30))),
            "engine run scheduled 30 days ago": _run_in(client, engine, Scheduled(timestamp=ago(30),
                                                                                   scheduled_time=ago(30))),
            "run completed 8 days ago": _run_in(client, other, Completed(timestamp=ago(8))),
            "run completed 399 days ago": _run_in(client, other, Completed(timestamp=ago(399))),
            "run suspended 500 days ago": _run_in(client, other, Suspended(timestamp=ago(500))),
        }
        assert client.read_flow_run(gone["engine run completed 8 days ago"]).end_time < ago(7.9)

        report = delete_expired_runs(engine_days=7, all_days=400)

        assert sorted(name for name, run_id in gone.items() if _exists(client, run_id)) == []
        assert sorted(name for name, run_id in kept.items() if not _exists(client, run_id)) == []
    assert (report.engine, report.other) == (2, 2)
    assert delete_expired_runs(engine_days=7, all_days=400).deleted == 0, "nothing left to delete"


def test_a_call_deletes_at_most_its_budget_and_the_next_call_goes_on(prefect_api: str) -> None:
    engine = _kept_or_not.to_deployment(name=f"retention-budget-{uuid.uuid4().hex[:8]}", tags=[ENGINE_TAG]).apply()
    with get_client(sync_client=True) as client:
        old = [_run_in(client, engine, Completed(timestamp=utcnow() - timedelta(days=30))) for _ in range(5)]
        assert delete_expired_runs(budget=3).engine == 3
        assert sum(_exists(client, run_id) for run_id in old) == 2
        assert delete_expired_runs(budget=3).engine == 2
        assert not any(_exists(client, run_id) for run_id in old)
