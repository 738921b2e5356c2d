"""The compliance audit's tasks: load, call the rules, store, queue messages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import deployment, flow_run
from sqlalchemy import insert, literal
from sqlmodel import Session, col, select

from engine import notify, runs
from engine.deadlines import answer_window, due_within, next_due, quarter_bounds, working_days_from_now
from engine.human_steps import ATTACHMENT, ask, expire
from engine.once import insert_once
from engine.reports import save_report
from engine.settings import get_settings
from flows.compliance.audit.rules import (
    ACTION_WORKING_DAYS,
    action_text,
    finding_severity,
    finding_text,
    summarize,
)
from registry import (
    Audit,
    AuditStatus,
    Control,
    ControlTest,
    CorrectiveAction,
    Evidence,
    Finding,
    Framework,
    HumanStep,
    Person,
    StepStatus,
    TestResult,
    session,
    trail,
)
from registry.clock import utcnow


def _framework(db: Session, name: str) -> Framework:
    found = db.exec(select(Framework).where(Framework.name == name)).first()
    if found is None:
        known = ", ".join(db.exec(select(Framework.name))) or "none"
        raise ValueError(f"framework {name!r} does not exist (known: {known})")
    return found


def _due_where(db: Session, framework: Framework, period: str, tz: str) -> list[Any]:
    """The controls of `framework` due in `period`, as SQL conditions: the cadence rule is evaluated once per
    distinct cadence (a handful), not once per control (ten thousand in a large framework)."""
    start, end = quarter_bounds(period, tz)
    active = (Control.framework_id == framework.id, col(Control.active) == True)  # noqa: E712
    cadences = db.exec(select(Control.cadence).distinct().where(*active)).all()
    return [*active, col(Control.cadence).in_([c for c in cadences if due_within(c, start, end, tz)])]


def _due_controls(db: Session, framework: Framework, period: str, tz: str) -> list[Control]:
    return list(db.exec(select(Control).where(*_due_where(db, framework, period, tz)).order_by(col(Control.ref))))


def _audit_tests(db: Session, audit_id: int) -> tuple[Audit, dict[str, Any], list[tuple[ControlTest, Control]]]:
    """The audit, what every message says of it, and its tests with their controls in one query."""
    audit = db.get(Audit, audit_id)
    if audit is None:
        raise ValueError(f"audit {audit_id} does not exist")
    tests = db.exec(select(ControlTest, Control).join(Control, col(Control.id) == ControlTest.control_id)
                    .where(ControlTest.audit_id == audit_id).order_by(col(Control.ref)))
    return audit, _audit_context(db, audit), [(test, control) for test, control in tests]


def _audit_context(db: Session, audit: Audit) -> dict[str, Any]:
    framework = db.get(Framework, audit.framework_id)
    assert framework is not None
    return {"id": audit.id, "framework": framework.name, "period": audit.period,
            "evidence_due_at": audit.evidence_due_at}


@task
def preview_requests(framework_name: str, period: str, evidence_window_days: int) -> int:
    """Render each owner's evidence request as an artifact; nothing is written or sent."""
    settings = get_settings()
    with session() as db:
        framework = _framework(db, framework_name)
        controls = _due_controls(db, framework, period, settings.timezone)
        due = working_days_from_now(evidence_window_days)
        by_owner: dict[int, list[Control]] = {}
        for control in controls:
            by_owner.setdefault(control.owner_id or 0, []).append(control)
        parts = []
        for owner_id, owned in by_owner.items():
            owner = db.get(Person, owner_id)
            assert owner is not None
            parts.append(notify.preview_for(owner, "compliance/audit/evidence_request", {
                "audit": {"framework": framework.name, "period": period, "evidence_due_at": due},
                "controls": [{"ref": c.ref, "title": c.title, "step_id": 0} for c in owned],
            }))
    create_markdown_artifact("\n".join(parts) or "No control is due in this period.",
                             description=f"Preview of evidence requests, {framework.name} {period}")
    return len(by_owner)


@task
def open_audit(framework_name: str, period: str, evidence_window_days: int,
               evidence_window_minutes: int | None = None) -> int:
    """The audit for (framework, period), created with a test for every control due by its cadence."""
    settings = get_settings()
    with session() as db:
        framework = _framework(db, framework_name)
        existing = db.exec(select(Audit).where(Audit.framework_id == framework.id, Audit.period == period)).first()
        if existing is not None:
            return existing.id or 0
        start, end = quarter_bounds(period, settings.timezone)
        now = utcnow()
        if evidence_window_minutes:
            due = now + timedelta(minutes=evidence_window_minutes)
        else:
            due = working_days_from_now(evidence_window_days, start=now)
        audit, created = insert_once(
            db, Audit(framework_id=framework.id or 0, period=period, period_start=start, period_end=end,
                      evidence_due_at=due),
            lambda: db.exec(select(Audit).where(Audit.framework_id == framework.id, Audit.period == period)).first())
        if not created:  # another run opened it at the same moment
            return audit.id or 0
        # One INSERT ... SELECT: ten thousand tests are one statement, not ten thousand ORM objects.
        due_now = _due_where(db, framework, period, settings.timezone)
        db.execute(insert(ControlTest).from_select(
            ["audit_id", "control_id", "owner_id", "note"],
            select(literal(audit.id), Control.id, Control.owner_id, literal("")).where(*due_now)))
        # Read back through the audit's own tests: the control filter again would read the framework twice.
        refs = list(db.exec(select(Control.ref).join(ControlTest, col(ControlTest.control_id) == Control.id)
                            .where(ControlTest.audit_id == audit.id).order_by(col(Control.ref))))
        trail.record(db, actor="compliance-audit", action="audit.opened", entity_type="audit",
                     entity_id=audit.id or 0, data={"framework": framework.name, "period": period,
                                                    "controls": refs,
                                                    "evidence_due_at": due.isoformat()})
        return audit.id or 0


@task
def request_evidence(audit_id: int) -> int:
    """One attestation step per control, and one message per owner listing all of theirs."""
    with session() as db:
        audit, context, tests = _audit_tests(db, audit_id)
        by_owner: dict[int, list[dict[str, Any]]] = {}
        for test, control in tests:
            step = ask(db, key=f"audit-{audit_id}-control-{control.id}-evidence", person_id=test.owner_id,
                       form="attestation", title=f"Attest control {control.ref}: {control.title}",
                       subject_type="control_test", subject_id=test.id or 0, due_at=audit.evidence_due_at,
                       details={"framework": context["framework"], "period": audit.period, "control": control.ref,
                                "description": control.description or control.title},
                       actor="compliance-audit")
            test.step_id = step.id
            db.add(test)
            by_owner.setdefault(step.person_id, []).append(
                {"ref": control.ref, "title": control.title, "step_id": step.id})
        ids = notify.digest(db, key=f"audit-{audit_id}-evidence-request", template="compliance/audit/evidence_request",
                            items=by_owner, context={"audit": context}, items_as="controls")
    return len(notify.deliver_due(ids=ids).sent)


@task
def schedule_evaluation(parameters: dict[str, Any], run_name: str, audit_id: int) -> str:
    """The follow-up run at the evidence deadline, created once however often this runs."""
    with session() as db:
        audit = db.get(Audit, audit_id)
        assert audit is not None
        due = audit.evidence_due_at
    if not deployment.get_id():
        return f"not running from a deployment: run again after {due.isoformat()} to evaluate"
    follow_up = runs.start(
        f"{flow_run.get_flow_name()}/{deployment.get_name()}",
        {"params": parameters},
        scheduled_time=due, idempotency_key=f"audit-{audit_id}-evaluate",
        run_name=run_name,
    )
    return f"evaluation scheduled for {due.isoformat()} (flow run {follow_up.id})"


def _record_test(db: Session, audit: Audit, test: ControlTest, control: Control) -> TestResult:
    step = db.get(HumanStep, test.step_id) if test.step_id else None
    if step is not None and step.status == StepStatus.pending:
        expire(db, step=step, actor="compliance-audit")
    if step is None or step.status != StepStatus.answered or not step.answer:
        test.result = TestResult.unanswered
        return test.result
    answer = step.answer
    test.result = TestResult.passed if answer.get("result") == "pass" else TestResult.failed
    test.note = answer.get("note") or ""
    test.tested_at = step.answered_at
    file = answer.get("evidence_file") or {}
    if answer.get("evidence_url") or file:
        db.add(Evidence(control_test_id=test.id or 0, url=answer.get("evidence_url"), filename=file.get("filename"),
                        sha256=file.get("sha256"), size=file.get("size"), stored_path=file.get("stored_path"),
                        submitted_by_id=step.answered_by_id or step.person_id))
    return test.result


@task
def evaluate(audit_id: int) -> dict[str, int]:
    """Close the evidence window: results from answers, findings and corrective actions for the rest."""
    settings = get_settings()
    with session() as db:
        audit, context, tests = _audit_tests(db, audit_id)
        actions: dict[int, list[dict[str, Any]]] = {}
        for test, control in tests:
            result = test.result or _record_test(db, audit, test, control)
            control.last_tested_at = utcnow()
            control.next_due_at = next_due(control.cadence, audit.period_end, settings.timezone)
            db.add_all([test, control])
            severity = finding_severity(result, control.criticality)
            if severity is None or db.exec(select(Finding).where(Finding.control_test_id == test.id)).first():
                continue
            finding = Finding(audit_id=audit_id, control_test_id=test.id or 0, severity=severity,
                              description=finding_text(result, control.ref, test.note))
            db.add(finding)
            db.flush()
            due = working_days_from_now(ACTION_WORKING_DAYS[severity])
            action = CorrectiveAction(finding_id=finding.id or 0, owner_id=control.owner_id or 0, due_at=due,
                                      description=action_text(result, control.ref))
            db.add(action)
            db.flush()
            trail.record(db, actor="compliance-audit", action="finding.raised", entity_type="finding",
                         entity_id=finding.id or 0, data={"control": control.ref, "severity": severity.value,
                                                          "result": result.value, "action_id": action.id,
                                                          "action_owner": control.owner_id,
                                                          "action_due_at": due.isoformat()})
            actions.setdefault(action.owner_id, []).append(
                {"ref": control.ref, "title": control.title, "severity": severity.value,
                 "description": finding.description, "due_at": due})
        ids = notify.digest(db, key=f"audit-{audit_id}-actions", template="compliance/audit/corrective_actions",
                            items=actions, context={"audit": context}, items_as="actions")
        summary = summarize([test.result for test, _ in tests])
    notify.deliver_due(ids=ids)
    return {"total": summary.total, "passed": summary.passed, "failed": summary.failed,
            "unanswered": summary.unanswered, "findings": summary.findings}


def _report_rows(db: Session, audit_id: int) -> list[dict[str, Any]]:
    rows = []
    for test in db.exec(select(ControlTest).where(ControlTest.audit_id == audit_id).order_by(col(ControlTest.id))):
        control = db.get(Control, test.control_id)
        owner = db.get(Person, test.owner_id)
        finding = db.exec(select(Finding).where(Finding.control_test_id == test.id)).first()
        action = db.exec(select(CorrectiveAction).where(CorrectiveAction.finding_id == finding.id)).first() \
            if finding else None
        evidence = list(db.exec(select(Evidence).where(Evidence.control_test_id == test.id)))
        assert control is not None and owner is not None
        rows.append({
            "control": control.ref, "title": control.title, "owner": owner.name,
            "result": test.result.value if test.result else "pending", "note": test.note,
            "evidence": "; ".join(e.url or f"{e.filename} (sha256 {e.sha256})" for e in evidence),
            "severity": finding.severity.value if finding else "",
            "action_due": action.due_at.date().isoformat() if action else "",
        })
    return rows


@task
def build_report(audit_id: int) -> str:
    """The audit report as HTML (kept on disk, its SHA-256 on the audit) and as Prefect artifacts."""
    with session() as db:
        audit = db.get(Audit, audit_id)
        assert audit is not None
        context = _audit_context(db, audit)
        rows = _report_rows(db, audit_id)
        summary = summarize([TestResult(r["result"]) if r["result"] != "pending" else None for r in rows])
        report = save_report(f"audit-{audit_id}-{audit.period}-r{audit.signoff_round + 1}.html",
                             "compliance/audit/report.html",
                             {"audit": context, "rows": rows, "summary": summary, "generated_at": utcnow(),
                              "round": audit.signoff_round + 1})
        digest, path = report.sha256, report.path
        audit.report_sha256, audit.report_path = digest, str(path)
        db.add(audit)
        trail.record(db, actor="compliance-audit", action="audit.report_built", entity_type="audit",
                     entity_id=audit_id, data={"sha256": digest, "path": str(path)})
    slug = "".join(ch if ch.isalnum() else "-" for ch in context["framework"].lower()).strip("-")
    create_table_artifact(rows, key=f"compliance-audit-{slug}",
                          description=f"{context['framework']} {context['period']}: controls and findings")
    create_markdown_artifact(
        f"## {context['framework']} audit {context['period']}\n\n"
        f"| controls | passed | failed | unanswered | findings |\n|---|---|---|---|---|\n"
        f"| {summary.total} | {summary.passed} | {summary.failed} | {summary.unanswered} | {summary.findings} |\n\n"
        f"Report: `{path}` (SHA-256 `{digest}`)",
        key=f"compliance-audit-{slug}-summary", description="Audit summary")
    return digest


@task
def request_signoff(audit_id: int, summary: dict[str, int], signoff_days: int) -> int:
    """Ask the framework's compliance manager to approve; the current run is the one that waits."""
    with session() as db:
        audit = db.get(Audit, audit_id)
        framework = db.get(Framework, audit.framework_id) if audit else None
        assert audit is not None and framework is not None
        if framework.compliance_manager_id is None:
            raise ValueError(f"framework {framework.name!r} has no compliance manager to sign off")
        context = _audit_context(db, audit)
        round_no = audit.signoff_round + 1
        due, final = answer_window(signoff_days)
        step = ask(db, key=f"audit-{audit_id}-signoff-{round_no}", person_id=framework.compliance_manager_id,
                   form="approval", kind="approval", title=f"Sign off the {framework.name} audit {audit.period}",
                   subject_type="audit", subject_id=audit_id, due_at=due, expires_at=final,
                   flow_run_id=runs.current_run_id(), actor="compliance-audit",
                   details={"framework": framework.name, "period": audit.period,
                            "controls": summary["total"], "passed": summary["passed"], "failed": summary["failed"],
                            "unanswered": summary["unanswered"], "findings": summary["findings"],
                            "report SHA-256": audit.report_sha256 or "", ATTACHMENT: audit.report_path})
        audit.status, audit.signoff_step_id, audit.signoff_round = AuditStatus.awaiting_signoff, step.id, round_no
        db.add(audit)
        rows = notify.enqueue(db, key=f"audit-{audit_id}-signoff-{round_no}", recipient_id=step.person_id,
                              template="compliance/audit/signoff_request",
                              context={"recipient": notify.recipient(db.get(Person, step.person_id)),  # type: ignore[arg-type]
                                       "audit": context, "summary": summary, "step_id": step.id,
                                       "due_at": due})
        ids = [r.id for r in rows if r.id is not None]
        step_id = step.id or 0
    notify.deliver_due(ids=ids)
    return step_id


@task
def apply_signoff(audit_id: int, step_id: int) -> str:
    """Approve closes the audit with the report's hash in the trail; reject sends the comment to the owners."""
    with session() as db:
        audit = db.get(Audit, audit_id)
        step = db.get(HumanStep, step_id)
        assert audit is not None and step is not None
        if audit.status != AuditStatus.awaiting_signoff or audit.signoff_step_id != step_id:
            return audit.status.value
        ids: list[int] = []
        answer = step.answer or {}
        approver = db.get(Person, step.answered_by_id) if step.answered_by_id else None
        if step.status == StepStatus.answered and answer.get("decision") == "approve":
            audit.status, audit.closed_at = AuditStatus.closed, utcnow()
            trail.record(db, actor=approver.email if approver else "?", action="audit.signed_off",
                         entity_type="audit", entity_id=audit_id,
                         data={"report_sha256": audit.report_sha256, "step_id": step_id,
                               "comment": answer.get("comment", "")})
        elif step.status == StepStatus.answered:
            audit.status = AuditStatus.changes_requested
            trail.record(db, actor=approver.email if approver else "?", action="audit.signoff_rejected",
                         entity_type="audit", entity_id=audit_id,
                         data={"comment": answer.get("comment", ""), "step_id": step_id})
            owners = set(db.exec(select(ControlTest.owner_id).where(ControlTest.audit_id == audit_id)))
            ids = notify.digest(db, key=f"audit-{audit_id}-rejected-{audit.signoff_round}",
                                template="compliance/audit/signoff_rejected",
                                items={owner_id: [] for owner_id in sorted(owners)},
                                context={"audit": _audit_context(db, audit), "comment": answer.get("comment", ""),
                                         "approver": approver.name if approver else "The approver"})
        else:
            audit.status = AuditStatus.changes_requested
            trail.record(db, actor="compliance-audit", action="audit.signoff_expired", entity_type="audit",
                         entity_id=audit_id, data={"step_id": step_id})
        db.add(audit)
        status = audit.status.value
    notify.deliver_due(ids=ids)
    return status
