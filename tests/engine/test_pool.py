"""`ops deploy` and `ops worker` (engine.pool): prefect.yaml's deployments on a process work pool, registered once,
found by a worker in an empty directory through the installed package; the concurrency prefect.yaml sets, and a
suspended run holding no slot. On the session's real Prefect server, with deployments and pools of their own."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Paused, Pending, Running

from engine import deployments, pool, runs
from engine.deployments import PREFECT_YAML
from tests.conftest import Gateway, Mailbox
from tests.flows.compliance.audit.test_flow import _audit_past_its_evidence_window, _organisation, _signoff_mail
from tests.flows.conftest import start_worker, wait_for_state
from tests.links import answer_link


def _prefect_yaml(path: Path, prefix: str, names: list[str], pool_name: str | None = None) -> Path:
    """prefect.yaml's own entries for `names`, renamed for this test, on pool `pool_name` (default `prefix`), with
    no schedules (the session's scheduler must not start runs of them)."""
    document = yaml.safe_load(PREFECT_YAML.read_text())
    chosen = [{**d, "name": f"{prefix}-{d['name']}", "schedules": [],
               "work_pool": {"name": pool_name or prefix, "work_queue_name": "default"}}
              for d in document["deployments"] if d["name"] in names]
    path.write_text(yaml.safe_dump({"deployments": chosen}, sort_keys=False))
    return path


def _held(api: str, names: list[str]) -> dict[str, dict[str, Any]]:
    response = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": names}}}, timeout=10)
    response.raise_for_status()
    return {d["name"]: d for d in response.json()}


@pytest.fixture
def api(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # engine.deployments reads the API's URL from here
    return prefect_api


def test_deploy_puts_every_deployment_on_its_pool_by_module_path_and_a_second_deploy_changes_nothing(
        api: str, tmp_path: Path) -> None:
    prefix = f"pool-{uuid.uuid4().hex[:8]}"
    path = _prefect_yaml(tmp_path / "prefect.yaml", prefix, ["compliance-audit", "deadline-sweep"])
    audit, sweep = f"{prefix}-compliance-audit", f"{prefix}-deadline-sweep"
    # Served first, as `ops serve` registers them: the deploy moves them onto the pool.
    deployments.register(path)

    first = pool.deploy(path)
    assert (first.pool, first.created_pool, first.registered) == (prefix, True, sorted([audit, sweep]))
    held = _held(api, [audit, sweep])
    assert {name: d["work_pool_name"] for name, d in held.items()} == {audit: prefix, sweep: prefix}
    # Where a worker finds the code: the installed package's module, nothing of this checkout.
    assert held[audit]["entrypoint"] == "flows.compliance.audit.flow.compliance_audit"
    assert held[sweep]["entrypoint"] == "flows.engine.deadline_sweep.flow.deadline_sweep"
    # (A deployment `ops serve` registered keeps its path ".": the worker's own directory, which has nothing.)
    assert all(d["path"] in (None, ".") and not d["pull_steps"] for d in held.values()), held
    assert str(Path.cwd()) not in str(held) and str(deployments.PROJECT_ROOT) not in str(held)
    # The Run form is the one `ops serve` registers (the registry's frameworks as a dropdown).
    assert "framework" in held[audit]["parameter_openapi_schema"]["properties"]
    assert held[sweep]["global_concurrency_limit"]["limit"] == 1
    assert held[sweep]["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert held[audit]["global_concurrency_limit"] is None, "one audit per framework and period: the registry's"
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(prefix).type == "process"

    again = pool.deploy(path)
    assert (again.created_pool, again.registered, again.ids) == (False, [], first.ids)
    assert {n: d["updated"] for n, d in _held(api, [audit, sweep]).items()} == {
        n: d["updated"] for n, d in held.items()}, "a second deploy writes nothing"

    # Back to one machine: `ops serve` takes them off the pool again, once.
    assert deployments.register(path) == (first.ids, sorted([audit, sweep]))
    assert {d["work_pool_name"] for d in _held(api, [audit, sweep]).values()} == {None}
    assert deployments.register(path) == (first.ids, [])


def test_a_prefect_yaml_without_a_pool_or_naming_a_pool_of_another_type_is_refused(
        api: str, tmp_path: Path) -> None:
    prefix = f"pool-{uuid.uuid4().hex[:8]}"
    path = _prefect_yaml(tmp_path / "prefect.yaml", prefix, ["deadline-sweep", "compliance-audit"])
    document = yaml.safe_load(path.read_text())
    del document["deployments"][0]["work_pool"]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match=f"deployment.s. {prefix}-compliance-audit name no work_pool"):
        pool.deploy(path)

    from prefect.client.schemas.actions import WorkPoolCreate

    other = f"{prefix}-other"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=other, type="docker"))
    path = _prefect_yaml(tmp_path / "prefect.yaml", prefix, ["deadline-sweep"], pool_name=other)
    with pytest.raises(ValueError, match=f"work pool '{other}' is of type 'docker', not 'process'"):
        pool.deploy(path)
    assert not _held(api, [f"{prefix}-deadline-sweep"]), "nothing registered"


def test_one_sweep_at_a_time_and_a_suspended_run_holds_no_slot(api: str, tmp_path: Path) -> None:
    """The deployment limit prefect.yaml sets, on the server that enforces it: a second sweep while one holds the
    slot is cancelled; a run suspended (PAUSED, rescheduled) gives its slot up, and takes one again to resume."""
    prefix = f"pool-{uuid.uuid4().hex[:8]}"
    done = pool.deploy(_prefect_yaml(tmp_path / "prefect.yaml", prefix, ["deadline-sweep"]))
    [sweep] = done.ids.values()
    with get_client(sync_client=True) as client:
        first, second, third = (client.create_flow_run_from_deployment(sweep) for _ in range(3))
        assert client.set_flow_run_state(first.id, Pending()).state.type == StateType.PENDING
        assert client.set_flow_run_state(first.id, Running()).state.type == StateType.RUNNING
        refused = client.set_flow_run_state(second.id, Pending())
        assert refused.state is not None and refused.state.type == StateType.CANCELLED, refused

        client.set_flow_run_state(first.id, Paused(reschedule=True, timeout_seconds=3600))
        assert client.set_flow_run_state(third.id, Pending()).state.type == StateType.PENDING
        client.set_flow_run_state(third.id, Running())
        client.set_flow_run_state(third.id, Completed())
        client.resume_flow_run(first.id)  # as an answer resumes it: rescheduled, then claimed again
        resumed = client.set_flow_run_state(first.id, Pending())
        assert resumed.state is not None and resumed.state.type == StateType.PENDING


@pytest.mark.slow
def test_a_worker_with_limit_one_in_an_empty_directory_runs_others_while_an_audit_waits_for_its_sign_off(
        api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    prefix = f"pool-{uuid.uuid4().hex[:8]}"
    pool.deploy(_prefect_yaml(tmp_path / "prefect.yaml", prefix, ["compliance-audit", "deadline-sweep"]))
    org = _organisation()
    audit = _audit_past_its_evidence_window(org)
    directory = tmp_path / "machine-a"
    worker = start_worker(api, directory, tmp_path / "worker.log", pool=prefix, limit=1)
    try:
        waiting = runs.start(f"compliance-audit/{prefix}-compliance-audit", audit["params"])
        approve = _signoff_mail(smtp, org["manager"])
        wait_for_state(waiting.id, StateType.PAUSED)

        # The worker's one slot is free while the audit waits: another run starts and finishes.
        other = runs.start(f"deadline-sweep/{prefix}-deadline-sweep")
        wait_for_state(other.id, StateType.COMPLETED, seconds=90)

        clicked = time.monotonic()
        assert answer_link(gateway.client, approve, {"decision": "approve", "comment": "Fine."}).status_code == 200
        running = wait_for_state(waiting.id, StateType.RUNNING, seconds=60)
        wait_for_state(waiting.id, StateType.COMPLETED, seconds=90)
        print(f"approval click to the run running again on the worker: {running - clicked:.1f} s")
        assert worker.ran(waiting.id) and worker.ran(other.id), worker.log_tail()
    finally:
        worker.stop()
    assert worker.process.returncode == 0, f"a SIGTERM stops the worker:\n{worker.log_tail()}"
    from registry import Audit, Occasion, OccasionStatus, session

    with session() as db:
        closed = db.get(Audit, audit["audit_id"])
        assert closed is not None
        occasion = db.get(Occasion, closed.occasion_id)
        assert occasion is not None and occasion.status == OccasionStatus.closed
    # The worker ran the installed code and left its directory as it found it (flow runs get temporary ones).
    assert list(directory.iterdir()) == []


def test_a_worker_hands_its_directory_s_env_to_its_flow_runs_under_what_the_environment_sets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its flow runs start in empty temporary directories, where no .env is found."""
    (tmp_path / ".env").write_text("OPS_TIMEZONE=Europe/Paris\nOPS_CURRENCY=EUR\nPREFECT_API_URL=http://elsewhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPS_CURRENCY", "GBP")
    assert pool.worker_environment() == {"OPS_TIMEZONE": "Europe/Paris"}
    (tmp_path / "no-env").mkdir()
    monkeypatch.chdir(tmp_path / "no-env")
    assert pool.worker_environment() == {}


def test_deployments_on_two_pools_are_refused_naming_them(tmp_path: Path) -> None:
    path = _prefect_yaml(tmp_path / "prefect.yaml", "p", ["deadline-sweep", "compliance-audit"])
    document = yaml.safe_load(path.read_text())
    document["deployments"][0]["work_pool"]["name"] = "other"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match="name work pools other, p; `ops worker` serves one"):
        pool.pool_name(path)
