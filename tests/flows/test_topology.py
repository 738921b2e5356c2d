"""The topology of README "Beyond one machine", on real parts, as separate processes in directories of their own:
PostgreSQL (the wheel's) for the registry and for a `prefect server start` of its own, `ops deploy` onto the
process work pool, two `ops worker`s each in an empty directory as on a machine of its own, two `ops gateway`s
answering the same links, one SMTP catcher. The audit through both gateways, a drill's assistance alert, and a
worker lost mid-run (SIGKILL of it and everything it started) whose run the other worker finishes.

Both workers run on this machine, so a lost worker's run is found dead by its recorded process (engine.takeover
process_gone) at the next sweep; across machines its missing heartbeats say it, three heartbeat intervals later.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from sqlalchemy.engine import URL, make_url
from sqlmodel import col, select

from engine import mailcatcher, runs
from engine.inbox import CaughtMail
from engine.settings import get_settings
from engine.stack import stop_process_group, wait_until_up
from registry import Audit, AuditEvent, Finding, Occasion, OccasionStatus, session
from registry.migrate import upgrade
from registry.trail import verify
from tests.conftest import Mailbox, _postgres_database, _refresh_settings, free_port
from tests.flows.compliance.audit.test_flow import _close_evidence_window, _organisation
from tests.flows.conftest import Worker, run_state, start_worker, wait_for_state
from tests.flows.continuity.drill.test_flow import _building
from tests.flows.test_crash_recovery import _alerts, _children_of_takeover, _drill_ended_as_without_a_crash
from tests.links import answer_link, links_in

pytestmark = [pytest.mark.slow, pytest.mark.topology]

_OPS = str(Path(sys.executable).with_name("ops"))
_SERVER_STARTUP_SECONDS = 180


@dataclass
class Topology:
    api: str
    gateway_a: str
    gateway_b: str
    workers: list[Worker]
    mailbox: Mailbox
    client: httpx.Client
    logs: Path

    def through(self, gateway: str, link: str) -> str:
        """The same link, opened on another gateway (as a load balancer would send it)."""
        assert link.startswith(self.gateway_a), link
        return gateway + link.removeprefix(self.gateway_a)

    def ran_on(self, run_id: object) -> list[str]:
        """Which workers started the run, once per start (a resumed run starts again)."""
        return [w.directory.name for w in self.workers for _ in range(w.starts(run_id))]


def _spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@contextmanager
def _running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def topology(postgres_admin_url: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("topology")
    logs = root / "logs"
    logs.mkdir()
    with pytest.MonkeyPatch.context() as env, contextlib.ExitStack() as stack:
        registry_url = stack.enter_context(contextmanager(_postgres_database)(postgres_admin_url))
        prefect_db = stack.enter_context(contextmanager(_postgres_database)(postgres_admin_url))
        prefect_url = make_url(prefect_db).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        port_a, port_b, smtp_port, api_port = free_port(), free_port(), free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}/api"
        gateway_a, gateway_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        mail_url = f"mailto://127.0.0.1:{smtp_port}?from=ops%40test.example&mode=insecure"
        # What every machine of the topology is configured with (README "Beyond one machine").
        for key, value in {"OPS_DATABASE_URL": registry_url, "OPS_DATA_DIR": str(root / "shared-data"),
                           "OPS_MAIL_URL": mail_url, "OPS_GATEWAY_URL": gateway_a, "PREFECT_API_URL": api,
                           "OPS_DRILL_POLL_SECONDS": "0.2", "OPS_SWEEP_SECONDS": "2",
                           "OPS_RESUME_POLL_SECONDS": "0.5", "PREFECT_LOGGING_LEVEL": "INFO"}.items():
            env.setenv(key, value)
        _refresh_settings()
        upgrade(registry_url)
        controller = mailcatcher.start(get_settings().mailbox_dir, "127.0.0.1", smtp_port)
        stack.callback(controller.stop)

        server_env = {**os.environ, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_url,
                      "PREFECT_HOME": str(root / "prefect-server"), "PREFECT_SERVER_UI_ENABLED": "false"}
        server = stack.enter_context(_running(_spawn(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
            logs / "prefect-server.log", server_env, root / "prefect-server")))
        try:
            wait_until_up(f"{api}/health", _SERVER_STARTUP_SECONDS, server)
        except RuntimeError as error:
            pytest.fail(f"{error}\n{_tail(logs / 'prefect-server.log')}")
        stack.enter_context(temporary_settings({PREFECT_API_URL: api}))

        for name, port in (("gateway-a", port_a), ("gateway-b", port_b)):
            gateway = stack.enter_context(_running(_spawn(
                [_OPS, "gateway"], logs / f"{name}.log", {**os.environ, "OPS_GATEWAY_PORT": str(port)}, root / name)))
            wait_until_up(f"http://127.0.0.1:{port}/healthz", 60, gateway)

        deployed = subprocess.run([_OPS, "deploy"], cwd=root, env=dict(os.environ), capture_output=True, text=True,
                                  timeout=300)
        assert deployed.returncode == 0 and "15 deployments" in deployed.stdout, deployed.stdout + deployed.stderr
        workers = [start_worker(api, root / name, logs / f"{name}.log") for name in ("machine-1", "machine-2")]
        for worker in workers:
            stack.callback(worker.stop)
        client = stack.enter_context(httpx.Client(timeout=30))
        yield Topology(api=api, gateway_a=gateway_a, gateway_b=gateway_b, workers=workers,
                       mailbox=Mailbox(port=smtp_port, url=mail_url), client=client, logs=logs)
    _refresh_settings()


def _sent_once(mailbox: Mailbox) -> None:
    twice = {key: n for key, n in Counter((m.to, m.subject) for m in mailbox.messages()).items() if n > 1}
    assert not twice, f"sent more than once: {twice}"


def test_the_audit_answered_through_gateway_a_is_signed_off_through_gateway_b_and_finished_on_a_worker(
        topology: Topology) -> None:
    org = _organisation()
    params = {"framework": org["framework"], "period": "2026-Q4"}
    opening = runs.start("compliance-audit/compliance-audit", params)
    wait_for_state(opening.id, StateType.COMPLETED)
    olive = [m for m in topology.mailbox.wait_for(2, seconds=60) if m.to == org["olive"].email]
    first, second = links_in(olive[0].html)
    assert answer_link(topology.client, first, {"result": "pass", "note": "Reviewed",
                                                "evidence_url": "https://wiki.test.example/ac1"}).status_code == 200
    assert answer_link(topology.client, second, {"result": "fail", "note": "Two leavers kept VPN access"},
                       files={"evidence_file": ("review.csv", b"access review export")}).status_code == 200

    _close_evidence_window(org["framework"])
    closing = runs.start("compliance-audit/compliance-audit", params)
    mails = _until_mail(topology.mailbox, org["manager"].email, "Sign-off needed")
    wait_for_state(closing.id, StateType.PAUSED)
    approve = topology.through(topology.gateway_b, links_in(mails[0].html)[0])
    assert "Report SHA-256" in topology.client.get(approve).text
    clicked = time.monotonic()
    assert answer_link(topology.client, approve, {"decision": "approve", "comment": "Fine."}).status_code == 200
    resumed = wait_for_state(closing.id, StateType.RUNNING, seconds=60)
    wait_for_state(closing.id, StateType.COMPLETED)
    print(f"\naudit: opened on {topology.ran_on(opening.id)}, closed on {topology.ran_on(closing.id)} "
          f"(before and after the sign-off); approval click to running again {resumed - clicked:.1f} s")
    assert len(topology.ran_on(closing.id)) == 2, "suspended, then started again by a worker"

    with session() as db:
        audit = db.exec(select(Audit)).one()
        occasion = db.get(Occasion, audit.occasion_id)
        findings = db.exec(select(Finding).where(Finding.origin_type == "control_test")).all()
        signed = db.exec(select(AuditEvent).where(AuditEvent.action == "audit.signed_off")).one()
        assert verify(db).ok
    assert occasion is not None and occasion.status == OccasionStatus.closed
    assert len(findings) == 2 and signed.data["report_sha256"] == occasion.report_sha256
    assert Path(occasion.report_path or "").is_file(), "the report is on the storage every worker shares"
    _sent_once(topology.mailbox)


def _until_mail(mailbox: Mailbox, to: str, prefix: str, seconds: float = 90) -> list[CaughtMail]:
    deadline = time.monotonic() + seconds
    while not (found := [m for m in mailbox.messages(to=to) if m.subject.startswith(prefix)]):
        assert time.monotonic() < deadline, f"no {prefix!r} mail to {to} within {seconds:.0f} s"
        time.sleep(0.2)
    return found


def test_a_drill_alerts_the_wardens_from_a_worker_and_when_that_worker_is_lost_the_other_finishes_it_once(
        topology: Topology) -> None:
    org = _building()
    everyone = 1 + len(org["people"]) + 2
    # A window long enough for the answers to land in it on a loaded machine; the take-over watches the rest.
    run = runs.start("emergency-drill/emergency-drill", {"facility": org["facility"], "window_minutes": 1.0,
                                                         "escalate_after_minutes": 0.5})
    deadline = time.monotonic() + 90
    while len(_alerts(topology.mailbox, "DRILL:")) < everyone:
        assert time.monotonic() < deadline, f"the drill's alerts: {_alerts(topology.mailbox, 'DRILL:')}"
        time.sleep(0.1)
    first, helped = org["people"][:2]
    for email, gateway, answer in ((first, topology.gateway_a, {"status": "accounted", "location": "Assembly A"}),
                                   (helped, topology.gateway_b, {"status": "needs_assistance",
                                                                 "location": "Stairwell B"})):
        [mail] = [m for m in topology.mailbox.messages(to=email) if m.subject.startswith("DRILL:")]
        link = topology.through(gateway, links_in(mail.html)[0])
        assert answer_link(topology.client, link, answer).status_code == 200
    deadline = time.monotonic() + 60
    while len(_alerts(topology.mailbox, "ASSISTANCE NEEDED")) < 2:
        assert time.monotonic() < deadline, "the wardens' assistance alert"
        time.sleep(0.1)
    assert run_state(run.id) == StateType.RUNNING, "the alert went out while the drill runs"
    [lost] = [w for w in topology.workers if w.ran(run.id)]
    [other] = [w for w in topology.workers if w is not lost]
    print(f"\ndrill: runs on {lost.directory.name}; the wardens alerted; {lost.directory.name} lost")

    lost.lose_machine()
    # The other worker's engine loop sweeps every 2 s: its take-over starts a new run, which a worker (the one
    # left) finishes. A dead run's recorded process counts as gone 30 s after the run started running.
    deadline = time.monotonic() + 120
    while not (new := _children_of_takeover(run.id)):
        assert time.monotonic() < deadline, f"no take-over of the lost drill:\n{_tail(other.log)}"
        time.sleep(0.5)
    [taken] = new
    wait_for_state(taken.id, StateType.COMPLETED, seconds=120)
    assert other.ran(taken.id) and not lost.ran(taken.id)
    assert runs.TAKEN_OVER_TAG in _flow_run_tags(run.id)
    print(f"drill: taken over by flow run {taken.id}, finished on {other.directory.name}")

    _drill_ended_as_without_a_crash(org, topology.mailbox, str(run.id), answered=2, escalated_in_window=False)
    with session() as db:
        events = db.exec(select(AuditEvent).where(col(AuditEvent.action) == "run.taken_over")).all()
    assert [e.data["new_run"] for e in events] == [str(taken.id)]
    _sent_once(topology.mailbox)
    # Each worker ran the installed code, in temporary directories of its flow runs: its own holds nothing.
    assert [list(w.directory.iterdir()) for w in topology.workers] == [[], []]


def _flow_run_tags(run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        return list(client.read_flow_run(run_id).tags)
