"""Delivery under faults, on real parts: a mail server that goes away, one that stores then drops, kill -9."""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlmodel import select

from engine import mailcatcher, notify
from engine.settings import get_settings
from registry import DeliveryStatus, Notification, Person, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, free_port
from tests.links import links_in

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _evidence_context(name: str, step_id: int) -> dict[str, object]:
    return {"recipient": {"name": name},
            "audit": {"framework": "ISO", "period": "2026-Q4", "evidence_due_at": utcnow() + timedelta(days=5)},
            "controls": [{"ref": "C-1", "title": "Control 1", "step_id": step_id}]}


def _mail_to(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_MAIL_URL", f"mailto://127.0.0.1:{port}?from=ops%40test.example&mode=insecure")
    get_settings.cache_clear()


def _people_with_requests(count: int, *, director: bool = True) -> list[Person]:
    """`count` people, each asked by one message linking to a step of their own; a director to be told."""
    with session() as db:
        if director:
            boss = factories.person(db, "Dana Director")
            boss.roles = ["director"]
        people = [factories.person(db) for _ in range(count)]
        for person in people:
            step = factories.step(db, person, kind="form", expires=utcnow() + timedelta(days=2))
            notify.enqueue(db, key=f"request-{person.id}", recipient_id=person.id or 0,
                           template="compliance/audit/evidence_request",
                           context=_evidence_context(person.name, step.id or 0))
    return people


@dataclass
class _Peer:
    """A real SMTP server on loopback that stores every message and misbehaves on the ones it is told to.

    `drop_on`: for these message numbers (1-based, counted over the server's life) it stores the message, then
    closes the connection instead of replying 250. `hold_on`: it stores the message and never replies.
    `pipelining`: it says it takes commands ahead of their replies (RFC 2920), as real mail servers do, and the
    client then sends each envelope in one write, the next one's before this one's outcome is committed.
    `refuse`: recipients it answers 550 (and, as a careless server would, takes DATA all the same).
    """

    drop_on: set[int] = field(default_factory=set)
    hold_on: set[int] = field(default_factory=set)
    pipelining: bool = False
    refuse: set[str] = field(default_factory=set)
    stored: list[EmailMessage] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def recipients(self) -> Counter[str]:
        return Counter(str(m["To"]).rsplit("<", 1)[-1].rstrip(">") for m in self.stored)


def _serve(peer: _Peer) -> socketserver.ThreadingTCPServer:
    class _Handler(socketserver.StreamRequestHandler):
        def _reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self._reply("220 peer ready")
            while line := self.rfile.readline():
                verb = line.decode().strip().split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self._reply("250-peer\r\n250-PIPELINING\r\n250 8BITMIME" if peer.pipelining
                                else "250-peer\r\n250 8BITMIME")
                elif verb == "DATA":
                    self._reply("354 go ahead")
                    raw = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        raw += chunk[1:] if chunk.startswith(b"..") else chunk
                    peer.stored.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
                    number = len(peer.stored)
                    if number in peer.drop_on:
                        return
                    if number in peer.hold_on:
                        peer.released.wait(30)
                        return
                    self._reply("250 stored")
                elif verb == "RCPT" and any(address in line.decode() for address in peer.refuse):
                    self._reply("550 no such mailbox")
                elif verb == "QUIT":
                    self._reply("221 bye")
                    return
                else:
                    self._reply("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    peer.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelined"])
def peer(request: pytest.FixtureRequest) -> Iterator[_Peer]:
    found = _Peer(pipelining=request.param)
    server = _serve(found)
    yield found
    found.released.set()
    server.shutdown()
    server.server_close()


def test_a_mail_server_down_past_every_retry_loses_nothing_and_tells_the_director(
        any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    _mail_to(port, monkeypatch)
    people = _people_with_requests(4)
    now = utcnow()
    for _ in range(14):  # two hours of the sweep delivering every ten minutes, the old six attempts long gone
        notify.deliver_due(now=now)
        now += timedelta(minutes=10)
    with session() as db:
        rows = list(db.exec(select(Notification)))
    assert all(row.status == DeliveryStatus.pending for row in rows), "nothing given up while still useful"
    [alert] = [row for row in rows if row.template == notify.ALERT_TEMPLATE]
    assert alert.subject.startswith("Messages not getting through: 4")
    assert all(row.alerted_at is not None for row in rows if row is not alert)

    catcher = mailcatcher.start(get_settings().mailbox_dir, "127.0.0.1", port)
    try:
        notify.deliver_due(now=now + timedelta(minutes=15))
        notify.deliver_due(now=now + timedelta(minutes=30))
        from engine import inbox

        caught = Counter(address for mail in inbox.messages() for address in mail.to.split(", "))
    finally:
        catcher.stop()
    with session() as db:
        director = db.exec(select(Person).where(Person.name == "Dana Director")).one()
        statuses = Counter(row.status for row in db.exec(select(Notification)))
    assert {person.email: caught[person.email] for person in people} == {person.email: 1 for person in people}
    assert caught[director.email] == 1, "the director's notice went once the server was back"
    assert statuses == {DeliveryStatus.sent: 5}


def test_a_copy_the_server_stored_before_dropping_the_connection_keeps_a_working_link(
        any_db: str, gateway: Gateway, peer: _Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    peer.drop_on = {2}
    _mail_to(peer.port, monkeypatch)
    people = _people_with_requests(4, director=False)
    first = notify.deliver_due()
    assert len(first.sent) == 3 and len(first.retrying) == 1, "the uncertain one is retried, the rest are sent"
    assert sorted(peer.recipients().values()) == [1, 1, 1, 1], "the reconnect re-sent nothing"
    uncertain = peer.stored[1]
    body = uncertain.get_body(("html",))
    assert body is not None
    [url] = links_in(body.get_content())
    assert gateway.client.get(url).status_code == 200, "the copy in the reader's inbox has a live link"

    notify.deliver_due(now=utcnow() + timedelta(minutes=5))
    counts = peer.recipients()
    assert counts[people[1].email] == 2 and all(counts[p.email] == 1 for p in people if p is not people[1]), \
        "at least once: only the uncertain message comes twice"
    retry = peer.stored[-1].get_body(("html",))
    assert retry is not None
    assert gateway.client.get(links_in(retry.get_content())[0]).status_code == 200
    assert gateway.client.get(url).status_code == 200, "both copies answer until the step is decided"


_DELIVER = """
from engine import notify
notify.deliver_due()
"""


def test_kill_9_mid_batch_sends_again_at_most_the_message_in_flight(
        any_db: str, peer: _Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    accepted = 3
    peer.hold_on = {accepted + 1}
    _mail_to(peer.port, monkeypatch)
    people = _people_with_requests(8, director=False)
    child = subprocess.Popen([sys.executable, "-c", _DELIVER], cwd=PROJECT_ROOT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while len(peer.stored) <= accepted and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert len(peer.stored) == accepted + 1, "the child is stuck on the message in flight"
        time.sleep(0.2)  # it has had every chance to record the accepted ones
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    peer.released.set()
    notify.deliver_due(now=utcnow() + timedelta(minutes=6))  # the dead process's claim has lapsed
    counts = peer.recipients()
    assert all(counts[p.email] >= 1 for p in people), "nobody missed"
    assert sum(counts.values()) - len(people) <= 1, f"duplicated beyond the one in flight: {counts}"


def _ops(*args: str) -> subprocess.CompletedProcess[str]:
    ops = Path(sys.executable).parent / "ops"
    done = subprocess.run([str(ops), *args], cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_every_command_that_delivers_mails_the_server_ops_smtp_port_names(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import inbox

    port = free_port()
    monkeypatch.delenv("OPS_MAIL_URL", raising=False)
    monkeypatch.setenv("OPS_SMTP_PORT", str(port))
    get_settings.cache_clear()
    catcher = mailcatcher.start(get_settings().mailbox_dir, "127.0.0.1", port)
    try:
        [first] = _people_with_requests(1, director=False)
        with session() as db:
            row = db.exec(select(Notification)).one()
            row.status, row.attempts, row.last_error = DeliveryStatus.failed, 9, "mail server down"
            db.add(row)
        listed = _ops("outbox", "--requeue", "--deliver")
        assert "requeued 1 failed message(s)" in listed.stdout and "delivered 1," in listed.stdout, listed.stdout
        assert [m.to for m in inbox.messages()] == [first.email]

        [second] = _people_with_requests(1, director=False)
        _ops("sweep")
        assert sorted(m.to for m in inbox.messages()) == sorted([first.email, second.email])
    finally:
        catcher.stop()


def test_a_refused_recipient_is_retried_and_every_other_message_arrives_once(
        any_db: str, peer: _Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    _mail_to(peer.port, monkeypatch)
    people = _people_with_requests(4, director=False)
    peer.refuse = {people[1].email}
    report = notify.deliver_due()
    assert len(report.sent) == 3 and len(report.retrying) == 1, report
    counts = peer.recipients()
    assert all(counts[p.email] == 1 for p in people if p is not people[1]) and counts[people[1].email] == 0, \
        f"the replies stayed in step with the messages: {counts}"
    with session() as db:
        [row] = db.exec(select(Notification).where(Notification.recipient_id == people[1].id)).all()
    assert row.status == DeliveryStatus.pending and "refused" in (row.last_error or ""), row.last_error
