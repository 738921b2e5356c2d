from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import select

from engine import notify
from engine.templates import TemplateProblem
from registry import DeliveryStatus, Notification, StepLink, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Listener, Mailbox, free_port
from tests.links import links_in


def _evidence_context(name: str, step_ids: list[int]) -> dict[str, object]:
    return {"recipient": {"name": name},
            "audit": {"framework": "ISO", "period": "2026-Q4", "evidence_due_at": utcnow() + timedelta(days=5)},
            "controls": [{"ref": f"C-{i}", "title": f"Control {i}", "step_id": s} for i, s in enumerate(step_ids)]}


def test_a_digest_reaches_a_real_smtp_server_with_one_working_link_per_request(gateway: Gateway,
                                                                                smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db, "Olive Owner")
        steps = [factories.step(db, owner, kind="form") for _ in range(3)]
        rows = notify.enqueue(db, key="digest-1", recipient_id=owner.id or 0,
                              template="compliance/audit/evidence_request",
                              context=_evidence_context(owner.name, [s.id or 0 for s in steps]))
    report = notify.deliver_due()
    assert report.sent == [r.id for r in rows]
    [mail] = smtp.wait_for(1)
    assert owner.email in mail.to and mail.subject.startswith("Evidence needed: ISO 2026-Q4 — 3 controls")
    urls = links_in(mail.html)
    assert len(urls) == 3 and len(set(urls)) == 3
    for url in urls:
        assert gateway.client.get(url).status_code == 200
    with session() as db:
        stored = db.exec(select(Notification)).one()
        hashes = set(db.exec(select(StepLink.token_hash)))
    assert stored.status == DeliveryStatus.sent and stored.sent_at is not None
    assert all(url.rsplit("/", 1)[1] not in stored.body_html for url in urls), "live tokens must not be stored"
    assert len(hashes) == 3


def test_queueing_the_same_key_twice_sends_once(smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db)
        step = factories.step(db, owner, kind="form")
    for _ in range(2):
        with session() as db:
            notify.enqueue(db, key="once", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                           context=_evidence_context(owner.name, [step.id or 0]))
        notify.deliver_due()
    smtp.wait_for(1)
    notify.deliver_due()
    assert len(smtp.messages()) == 1


def test_a_template_error_is_reported_before_anything_is_written(smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db)
    with pytest.raises(TemplateProblem, match="compliance/audit/evidence_request"), session() as db:
        notify.enqueue(db, key="broken", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context={"recipient": {"name": "x"}})  # no audit, no controls
    with pytest.raises(TemplateProblem, match="no_such_template"), session() as db:
        notify.enqueue(db, key="missing", recipient_id=owner.id or 0, template="no_such_template", context={})
    with session() as db:
        assert db.exec(select(Notification)).all() == []
    assert notify.deliver_due().sent == []
    assert smtp.messages() == []


def test_preview_renders_without_writing_or_sending(smtp: Mailbox) -> None:
    message = notify.preview("compliance/audit/evidence_request", _evidence_context("Pat", [7]))
    assert "Pat" in message.text and "minted on delivery" in message.text and "C-0" in message.html
    with session() as db:
        assert db.exec(select(Notification)).all() == []
    assert smtp.messages() == []


def test_html_is_escaped_in_messages(smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db, "Eve <script>alert(1)</script>")
        step = factories.step(db, owner, kind="form")
        notify.enqueue(db, key="escape", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    notify.deliver_due()
    [mail] = smtp.wait_for(1)
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html


def test_an_unreachable_server_is_retried_with_capped_back_off_until_the_step_expires_and_links_are_not_left_live(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import get_settings

    dead_port = free_port()
    monkeypatch.setenv("OPS_MAIL_URL", f"mailto://127.0.0.1:{dead_port}?from=ops%40test.example&mode=insecure")
    get_settings.cache_clear()
    expires = utcnow() + timedelta(days=2)
    with session() as db:
        director = factories.person(db, "Dana Director")
        director.roles = ["director"]
        owner = factories.person(db)
        step = factories.step(db, owner, kind="form", expires=expires)
        notify.enqueue(db, key="retry", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    first = notify.deliver_due()
    assert len(first.retrying) == 1
    with session() as db:
        row = db.exec(select(Notification)).one()
        assert row.status == DeliveryStatus.pending and row.attempts == 1 and row.last_error
        assert row.next_attempt_at > utcnow() + timedelta(seconds=20)
        assert row.give_up_at is not None and abs(row.give_up_at - expires) < timedelta(seconds=1)
        assert db.exec(select(StepLink)).all() == [], "a copy that never left leaves no live link"
    assert notify.deliver_due().retrying == [], "not due again before its back-off"
    later = utcnow()
    for _ in range(12):
        later += timedelta(minutes=16)
        assert len(notify.deliver_due(now=later).retrying) >= 1, "each try comes within the capped back-off"
    with session() as db:
        retried = db.get(Notification, row.id)
        assert retried is not None and retried.status == DeliveryStatus.pending and retried.attempts == 13
    notify.deliver_due(now=expires + timedelta(minutes=1))
    with session() as db:
        given_up = db.get(Notification, row.id)
        alert = db.exec(select(Notification).where(Notification.recipient_id == director.id)).one()
    assert given_up is not None and given_up.status == DeliveryStatus.failed, "given up once its step expired"
    assert alert.template == "delivery_alert" and alert.status == DeliveryStatus.pending, \
        "the director is told (by the same dead server here: it waits in the outbox)"
    assert row.id is not None and notify.requeue_failed() == [row.id]


def test_a_message_useful_for_minutes_is_tried_often_enough_to_catch_a_server_coming_back(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import get_settings

    monkeypatch.setenv("OPS_MAIL_URL", f"mailto://127.0.0.1:{free_port()}?from=ops%40test.example&mode=insecure")
    get_settings.cache_clear()
    now = utcnow()
    expires = now + timedelta(minutes=20)
    with session() as db:
        owner = factories.person(db)
        step = factories.step(db, owner, kind="form", expires=expires)
        notify.enqueue(db, key="drill-like", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    tries = 0
    while now < expires:
        tries += len(notify.deliver_due(now=now).retrying)
        with session() as db:
            row = db.exec(select(Notification)).one()
        assert row.next_attempt_at - now <= max((expires - now) / 3, timedelta(seconds=30)) + timedelta(seconds=1)
        now = max(row.next_attempt_at, now + timedelta(seconds=1))
    assert tries >= 8, "tried again and again within its twenty minutes, not once in eight"


def test_with_nobody_to_tell_a_message_is_never_given_up(registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import get_settings

    monkeypatch.setenv("OPS_MAIL_URL", f"mailto://127.0.0.1:{free_port()}?from=ops%40test.example&mode=insecure")
    get_settings.cache_clear()
    with session() as db:
        owner = factories.person(db)
        step = factories.step(db, owner, kind="form", expires=utcnow() + timedelta(hours=1))
        notify.enqueue(db, key="alone", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    notify.deliver_due()
    report = notify.deliver_due(now=utcnow() + timedelta(days=5))
    assert report.failed == [] and len(report.retrying) == 1


def test_a_webhook_channel_gets_the_text_message(registry_db: str, http_listener: Listener) -> None:
    with session() as db:
        owner = factories.person(db, channels=[f"json://{http_listener.url}/hook"])
        step = factories.step(db, owner, kind="form")
        notify.enqueue(db, key="hook", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    assert len(notify.deliver_due().sent) == 1
    [(path, body)] = http_listener.received
    payload = json.loads(body)
    assert path == "/hook" and payload["title"].startswith("Evidence needed")
    assert "/s/" in payload["message"] and "<table" not in payload["message"]


def test_each_channel_of_a_person_is_delivered_and_retried_on_its_own(smtp: Mailbox, http_listener: Listener) -> None:
    dead = f"json://127.0.0.1:{free_port()}/down"
    with session() as db:
        owner = factories.person(db, channels=[smtp.url + "&to=two@test.example", dead])
        step = factories.step(db, owner, kind="form")
        notify.enqueue(db, key="multi", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                       context=_evidence_context(owner.name, [step.id or 0]))
    report = notify.deliver_due()
    assert len(report.sent) == 1 and len(report.retrying) == 1
    notify.deliver_due(now=utcnow() + timedelta(hours=1))
    assert len(smtp.messages()) == 1, "the channel that worked is not sent again"


def test_a_long_subject_and_the_templates_own_text_arrive_intact(smtp: Mailbox) -> None:
    with session() as db:
        owner = factories.person(db, "Zoë Ünal")
        step = factories.step(db, owner, kind="form")
        context = _evidence_context(owner.name, [step.id or 0])
        context["audit"]["framework"] = "ISO 27001 information security management system"  # type: ignore[index]
        [row] = notify.enqueue(db, key="long", recipient_id=owner.id or 0, template="compliance/audit/evidence_request",
                               context=context)
    assert len(f"Subject: {row.subject}") > 78 and not row.subject.isascii()
    assert notify.deliver_due().sent == [row.id]
    [mail] = smtp.wait_for(1)
    assert mail.subject == row.subject
    [url] = links_in(mail.html)
    assert mail.text.replace("\r\n", "\n") == row.body_text.replace(notify._placeholder(step.id or 0), url)
