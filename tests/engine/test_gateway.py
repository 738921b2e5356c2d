"""The link gateway over real HTTP: open a link (changes nothing), answer it (recorded once), or be refused."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, func, select

from engine import links
from engine.deployments import PROJECT_ROOT
from engine.forms import form_names
from engine.human_steps import StepRefused, ask
from engine.processes import discover
from engine.settings import get_settings
from registry import AuditEvent, HumanStep, Person, StepStatus, session, trail
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, free_port
from tests.links import answer_link

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass
class Asked:
    step_id: int
    person_id: int
    token: str
    url: str


@dataclass(frozen=True)
class OnRecord:
    """What the registry holds about one step, and how long the trail is."""

    status: StepStatus
    answered_by_id: int | None
    answer: dict[str, Any] | None
    events: int
    answered_events: int


def _ask(gateway: Gateway, *, kind: str = "approval", title: str = "Approve the test request",
         **step_args: Any) -> Asked:
    with session() as db:
        asked = factories.person(db)
        step = factories.step(db, asked, kind=kind, title=title, **step_args)
        token = factories.link(db, step)
        assert step.id is not None and asked.id is not None
        return Asked(step.id, asked.id, token, f"{gateway.url}/s/{token}")


def _on_record(step_id: int) -> OnRecord:
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        events = db.exec(select(func.count()).select_from(AuditEvent)).one()
        answered = db.exec(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "step.answered", AuditEvent.entity_id == step_id)).one()
        return OnRecord(step.status, step.answered_by_id, step.answer, events, answered)


def _hidden(page: httpx.Response) -> dict[str, str]:
    return dict(HIDDEN.findall(page.text))


def _answered_events(step_id: int) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == "step.answered",
                                                     AuditEvent.entity_id == step_id)
                            .order_by(col(AuditEvent.id))))


def test_opening_a_link_shows_the_step_and_its_form_and_changes_nothing(gateway: Gateway) -> None:
    asked = _ask(gateway, title="Approve the Q3 vendor payment run")
    before = _on_record(asked.step_id)

    page = gateway.client.get(asked.url)
    head = gateway.client.head(asked.url)

    assert page.status_code == 200
    assert "<h1>Approve the Q3 vendor payment run</h1>" in page.text
    assert '<form method="post"' in page.text
    assert '<button type="submit" name="decision" value="approve">Approve</button>' in page.text
    assert '<button type="submit" name="decision" value="reject">Reject</button>' in page.text
    hidden = _hidden(page)
    assert hidden["step_id"] == str(asked.step_id)
    assert hidden["csrf"] == links.csrf_for(asked.token)
    assert head.status_code == 200 and head.content == b""
    assert _on_record(asked.step_id) == before
    assert before.status is StepStatus.pending and before.answer is None


def test_posting_the_form_records_the_answer_once(gateway: Gateway) -> None:
    asked = _ask(gateway, title="Approve the Q3 vendor payment run")

    response = answer_link(gateway.client, asked.url, {"decision": "approve", "comment": "Checked the totals."})

    assert response.status_code == 200
    assert "Thank you — your answer is recorded" in response.text
    assert "Approve the Q3 vendor payment run" in response.text
    assert "This link cannot be used again." in response.text
    record = _on_record(asked.step_id)
    assert record.status is StepStatus.answered
    assert record.answered_by_id == asked.person_id
    assert record.answer == {"decision": "approve", "comment": "Checked the totals."}
    events = _answered_events(asked.step_id)
    assert len(events) == 1
    assert events[0].data["answer"] == {"decision": "approve", "comment": "Checked the totals."}
    with session() as db:
        assert trail.verify(db).ok


def test_a_used_link_is_refused_and_the_answer_on_record_stands(gateway: Gateway) -> None:
    asked = _ask(gateway)
    hidden = _hidden(gateway.client.get(asked.url))
    first = gateway.client.post(asked.url, data={**hidden, "decision": "approve", "comment": ""})
    assert first.status_code == 200
    after_first = _on_record(asked.step_id)

    again = gateway.client.get(asked.url)
    replay = gateway.client.post(asked.url, data={**hidden, "decision": "reject", "comment": "Changed my mind."})

    for response in (again, replay):
        assert response.status_code == 409
        assert "This request has already been answered" in response.text
    assert _on_record(asked.step_id) == after_first
    assert after_first.answer == {"decision": "approve", "comment": ""}


def test_forged_and_tampered_tokens_are_refused_and_record_nothing(gateway: Gateway) -> None:
    asked = _ask(gateway)
    before = _on_record(asked.step_id)
    last = asked.token[-1]
    tampered = asked.token[:-1] + ("A" if last != "A" else "B")
    forged = secrets.token_urlsafe(32)

    for token in (forged, tampered):
        url = f"{gateway.url}/s/{token}"
        shown = gateway.client.get(url)
        posted = gateway.client.post(url, data={"csrf": links.csrf_for(token), "step_id": str(asked.step_id),
                                                "decision": "approve"})
        for response in (shown, posted):
            assert response.status_code == 404
            assert "This link is not valid" in response.text
    assert _on_record(asked.step_id) == before
    assert gateway.client.get(asked.url).status_code == 200


def test_an_expired_link_is_refused_and_records_nothing(gateway: Gateway) -> None:
    now = utcnow()
    asked = _ask(gateway, due=now - timedelta(days=2), expires=now - timedelta(minutes=1))
    before = _on_record(asked.step_id)

    shown = gateway.client.get(asked.url)
    posted = gateway.client.post(asked.url, data={"csrf": links.csrf_for(asked.token), "step_id": str(asked.step_id),
                                                  "decision": "approve", "comment": ""})

    for response in (shown, posted):
        assert response.status_code == 410
        assert "This link has expired" in response.text
    assert _on_record(asked.step_id) == before
    assert before.status is StepStatus.pending


def test_a_link_cannot_answer_another_persons_step(gateway: Gateway) -> None:
    a = _ask(gateway)
    b = _ask(gateway)
    before_a, before_b = _on_record(a.step_id), _on_record(b.step_id)
    hidden_b = _hidden(gateway.client.get(b.url))

    response = gateway.client.post(b.url, data={**hidden_b, "step_id": str(a.step_id), "decision": "approve"})

    assert response.status_code == 403
    assert "This link is for a different request" in response.text
    assert _on_record(a.step_id) == before_a
    assert _on_record(b.step_id) == before_b


def test_a_requester_cannot_approve_their_own_request(gateway: Gateway) -> None:
    with session() as db:
        requester = factories.person(db, "Rita Requester")
        approver = factories.person(db, "Xavier Approver")
        step = factories.step(db, approver, kind="approval", requested_by=requester)
        token = factories.link(db, step, holder=requester)
        assert step.id is not None
        step_id = step.id
        with pytest.raises(StepRefused, match="cannot approve their own request"):
            factories.step(db, requester, kind="approval", requested_by=requester)
    url = f"{gateway.url}/s/{token}"
    before = _on_record(step_id)

    shown = gateway.client.get(url)
    posted = gateway.client.post(url, data={"csrf": links.csrf_for(token), "step_id": str(step_id),
                                            "decision": "approve", "comment": ""})

    for response in (shown, posted):
        assert response.status_code == 403
        assert "You cannot approve your own request" in response.text
    assert _on_record(step_id) == before


def test_an_inactive_persons_link_is_refused(gateway: Gateway) -> None:
    asked = _ask(gateway)
    with session() as db:
        person = db.get(Person, asked.person_id)
        assert person is not None
        person.active = False
        db.add(person)
    before = _on_record(asked.step_id)

    response = gateway.client.get(asked.url)

    assert response.status_code == 403
    assert "This link is no longer yours to use" in response.text
    assert _on_record(asked.step_id) == before


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "from another link"],
                         ids=["missing", "empty", "wrong", "another-links"])
def test_a_post_without_the_pages_csrf_token_is_refused(gateway: Gateway, csrf: str | None) -> None:
    asked = _ask(gateway)
    other = _ask(gateway)
    before = _on_record(asked.step_id)
    data = {"step_id": str(asked.step_id), "decision": "approve", "comment": ""}
    if csrf is not None:
        data["csrf"] = links.csrf_for(other.token) if csrf == "from another link" else csrf

    refused = gateway.client.post(asked.url, data=data)

    assert refused.status_code == 403
    assert "This form cannot be accepted" in refused.text
    assert _on_record(asked.step_id) == before
    accepted = answer_link(gateway.client, asked.url, {"decision": "approve", "comment": ""})
    assert accepted.status_code == 200 and _on_record(asked.step_id).status is StepStatus.answered


def test_a_rejection_without_a_reason_is_sent_back_then_a_valid_answer_is_recorded(gateway: Gateway) -> None:
    asked = _ask(gateway, title="Approve the Q3 vendor payment run")
    before = _on_record(asked.step_id)

    invalid = answer_link(gateway.client, asked.url, {"decision": "reject", "comment": "   "})

    assert invalid.status_code == 422
    assert "Please say why you reject, in the comment." in invalid.text
    assert "<h1>Approve the Q3 vendor payment run</h1>" in invalid.text
    assert _hidden(invalid) == {"csrf": links.csrf_for(asked.token), "step_id": str(asked.step_id)}
    assert _on_record(asked.step_id) == before

    hidden = _hidden(invalid)
    valid = gateway.client.post(asked.url, data={**hidden, "decision": "reject", "comment": "Totals do not match."})
    assert valid.status_code == 200
    record = _on_record(asked.step_id)
    assert record.status is StepStatus.answered
    assert record.answer == {"decision": "reject", "comment": "Totals do not match."}


def test_a_pass_without_evidence_is_sent_back_keeping_what_was_typed(gateway: Gateway) -> None:
    asked = _ask(gateway, kind="form", title="Attest the access review")
    before = _on_record(asked.step_id)

    invalid = answer_link(gateway.client, asked.url, {"result": "pass", "note": "Checked all 41 accounts."})

    assert invalid.status_code == 422
    assert "A pass needs evidence: give a link or upload a file." in invalid.text
    assert "Checked all 41 accounts.</textarea>" in invalid.text
    assert 'name="result" value="pass" checked' in invalid.text
    assert _on_record(asked.step_id) == before

    unknown = answer_link(gateway.client, asked.url, {"result": "maybe", "note": ""})
    assert unknown.status_code == 422 and _on_record(asked.step_id) == before

    valid = answer_link(gateway.client, asked.url, {"result": "pass", "note": "Checked all 41 accounts.",
                                                    "evidence_url": "https://wiki.test.example/access-review"})
    assert valid.status_code == 200
    answer = _on_record(asked.step_id).answer
    assert answer is not None
    assert answer["result"] == "pass" and answer["evidence_url"] == "https://wiki.test.example/access-review"


def _post_together(url: str, forms: list[dict[str, str]]) -> list[int]:
    """POST each form from its own client and thread, released at the same instant; the statuses, sorted."""
    barrier = threading.Barrier(len(forms))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def _post(form: dict[str, str]) -> None:
        try:
            with httpx.Client(timeout=20) as client:
                barrier.wait(timeout=10)
                statuses.append(client.post(url, data=form).status_code)
        except BaseException as error:  # re-raised in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=_post, args=(form,)) for form in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return sorted(statuses)


def test_two_simultaneous_answers_from_one_link_record_exactly_one(any_db: str, gateway: Gateway) -> None:
    for _round in range(3):
        asked = _ask(gateway)
        hidden = _hidden(gateway.client.get(asked.url))

        statuses = _post_together(asked.url, [{**hidden, "decision": "approve", "comment": "first"},
                                              {**hidden, "decision": "reject", "comment": "second"}])

        assert statuses == [200, 409]
        record = _on_record(asked.step_id)
        assert record.status is StepStatus.answered and record.answered_events == 1
        assert _answered_events(asked.step_id)[0].data["answer"] == record.answer
    with session() as db:
        assert trail.verify(db).ok


def test_an_uploaded_evidence_file_is_kept_with_its_sha256(gateway: Gateway) -> None:
    asked = _ask(gateway, kind="form", title="Attest the backup restore test")
    page = gateway.client.get(asked.url)
    assert 'enctype="multipart/form-data"' in page.text and '<input type="file" name="evidence_file"' in page.text
    content = b"%PDF-1.4 restore test log\n" + bytes(range(256)) * 40

    response = gateway.client.post(
        asked.url, data={**_hidden(page), "result": "pass", "note": "Restored last night's backup."},
        files={"evidence_file": ("../../restore-log.pdf", content, "application/pdf")},
    )

    digest = hashlib.sha256(content).hexdigest()
    assert response.status_code == 200
    assert digest in response.text
    answer = _on_record(asked.step_id).answer
    assert answer is not None
    uploaded = answer["evidence_file"]
    assert uploaded["sha256"] == digest
    assert uploaded["size"] == len(content)
    assert uploaded["filename"] == "restore-log.pdf"
    stored = Path(uploaded["stored_path"])
    assert stored.read_bytes() == content
    assert stored.resolve().is_relative_to(get_settings().evidence_dir.resolve())
    assert _answered_events(asked.step_id)[0].data["answer"]["evidence_file"]["sha256"] == digest


def test_pages_are_never_cached_and_never_leak_the_link_as_referrer(gateway: Gateway) -> None:
    asked = _ask(gateway)
    step_page = gateway.client.get(asked.url)
    thanks = answer_link(gateway.client, asked.url, {"decision": "approve", "comment": ""})
    refused = gateway.client.get(asked.url)
    unknown = gateway.client.get(f"{gateway.url}/s/not-a-token")

    for response, status in ((step_page, 200), (thanks, 200), (refused, 409), (unknown, 404)):
        assert response.status_code == status
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"


def test_an_attachment_outside_the_data_directory_is_never_served(gateway: Gateway, tmp_path: Path) -> None:
    secret = tmp_path / "outside.html"
    secret.write_text("<p>not for you</p>")
    with session() as db:
        asked = factories.person(db)
        step = factories.step(db, asked)
        step.details = {"_attachment": str(secret)}
        db.add(step)
        token = factories.link(db, step)
    page = gateway.client.get(f"{gateway.url}/s/{token}")
    assert "Open the report" in page.text and "_attachment" not in page.text
    refused = gateway.client.get(f"{gateway.url}/s/{token}/attachment")
    assert refused.status_code == 404 and "not for you" not in refused.text


def test_a_gateway_process_of_its_own_shows_the_form_of_every_process(registry_db: str, tmp_path: Path) -> None:
    """`ops gateway` (and `ops up`) run the gateway in a process that never ran a flow: every form must be known."""
    discover()
    tokens: dict[str, str] = {}
    with session() as db:
        person = factories.person(db)
        for name in form_names():
            step = ask(db, key=f"every-form-{name}", person_id=person.id or 0, form=name, title=f"The {name} form",
                       subject_type="test", subject_id=1, due_at=utcnow() + timedelta(days=1))
            tokens[name] = links.issue(db, step=step, person_id=person.id or 0)
    assert {"approval", "attestation", "drill_ack", "plan_review"} <= set(tokens)
    port = free_port()
    env = {**os.environ, "OPS_GATEWAY_PORT": str(port), "OPS_GATEWAY_URL": f"http://127.0.0.1:{port}"}
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "gateway"], cwd=PROJECT_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    assert process.poll() is None and time.monotonic() < deadline, \
                        (tmp_path / "gateway.log").read_text()
                    time.sleep(0.2)
            shown = {name: client.get(f"/s/{token}") for name, token in tokens.items()}
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert {name: page.status_code for name, page in shown.items()} == dict.fromkeys(tokens, 200)
    assert all(f"The {name} form" in page.text and "<form" in page.text for name, page in shown.items())
