"""The compliance audit's tasks: each loads, calls the rules, stores and queues inside one unit of work."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import Dialect, Integer, bindparam, func, insert, literal
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, col, select

from engine import gate, occasions, periods
from engine.answers import Decision, answer_of
from engine.deadlines import answer_window, due_within, next_due, working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.human_steps import ATTACHMENT, expire
from engine.once import insert_once
from engine.reports import save_report, slug
from engine.settings import get_settings
from engine.work import Digest, unit
from flows.compliance.audit import rules
from flows.compliance.audit.forms import Attestation
from registry import (
    Audit,
    Control,
    ControlTest,
    CorrectiveAction,
    Criticality,
    Evidence,
    Finding,
    Framework,
    HumanStep,
    Occasion,
    OccasionStatus,
    Person,
    StepStatus,
    TestResult,
    trail,
)
from registry.clock import as_utc, utcnow

PROCESS = ACTOR = "compliance-audit"
ORIGIN = "control_test"  # a finding's origin: the control test that failed or went unanswered
CODE = "control"  # a control test has one finding


@dataclass(frozen=True)
class AuditState:
    """Where an audit stands, for the flow to decide what comes next (the phase is its occasion's)."""

    audit_id: int
    phase: str
    evidence_due_at: datetime
    controls: int
    findings: int = 0
    signoff_step_id: int | None = None


def _framework(db: Session, name: str) -> Framework:
    found = db.exec(select(Framework).where(Framework.name == name)).first()
    if found is None:
        known = ", ".join(db.exec(select(Framework.name))) or "none"
        raise ValueError(f"framework {name!r} does not exist (known: {known})")
    return found


_CONTROLS, _TESTS = Control.__table__, ControlTest.__table__  # type: ignore[attr-defined]
# The audit opening's statements, built once and run in Core on the session's connection: building each per
# call (and its cache key) and the ORM's execution path cost more than the few statements they build.
_ACTIVE = (_CONTROLS.c.framework_id == bindparam("framework"), _CONTROLS.c.active == True)  # noqa: E712
_CADENCES = select(_CONTROLS.c.cadence).distinct().where(*_ACTIVE)
_ADD_TESTS = insert(_TESTS).from_select(
    ["audit_id", "control_id", "owner_id", "note"],
    select(bindparam("audit", type_=Integer), _CONTROLS.c.id, _CONTROLS.c.owner_id, literal(""))
    .where(*_ACTIVE, _CONTROLS.c.cadence.in_(bindparam("cadences", expanding=True))))
_REFS = (select(_CONTROLS.c.ref).join(_TESTS, _TESTS.c.control_id == _CONTROLS.c.id)
         .where(_TESTS.c.audit_id == bindparam("audit")).order_by(_CONTROLS.c.ref))


@cache
def _refs_sql(dialect: Dialect) -> SQLCompiler:
    return cast(SQLCompiler, _REFS.compile(dialect=dialect))


def _refs(db: Session, audit_id: int) -> list[str]:
    """The audit's control refs in order, read back through its tests, from the driver's own cursor in the
    session's transaction: ten thousand strings need no Row objects (they were a third of the read)."""
    connection = db.connection()
    compiled = _refs_sql(connection.dialect)
    params = compiled.construct_params({"audit": audit_id})
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), tuple(params[name] for name in compiled.positiontup)
                       if compiled.positiontup else params)
        return [ref for (ref,) in cursor.fetchall()]
    finally:
        cursor.close()


def _due_cadences(db: Session, framework: Framework, period: str, tz: str) -> list[str]:
    """The cadences of `framework`'s active controls that fall due in `period`: the cadence rule is evaluated
    once per distinct cadence (a handful), not once per control (ten thousand in a large framework)."""
    start, end = periods.quarter_bounds(period, tz)
    cadences = db.connection().execute(_CADENCES, {"framework": framework.id}).scalars()
    return [c for c in cadences if due_within(c, start, end, tz)]


def _audit(db: Session, audit_id: int) -> tuple[Audit, Occasion, Framework]:
    audit = db.get(Audit, audit_id)
    if audit is None or audit.occasion_id is None:
        raise ValueError(f"audit {audit_id} does not exist")
    occasion, framework = db.get(Occasion, audit.occasion_id), db.get(Framework, audit.framework_id)
    assert occasion is not None and framework is not None
    return audit, occasion, framework


def _context(audit: Audit, framework: Framework) -> dict[str, Any]:
    """What every message and the report say of the audit."""
    return {"id": audit.id, "framework": framework.name, "period": audit.period,
            "evidence_due_at": audit.evidence_due_at}


def _tests(db: Session, audit_id: int) -> list[tuple[ControlTest, Control]]:
    """The audit's tests with their controls, in one query."""
    tests = db.exec(select(ControlTest, Control).join(Control, col(Control.id) == ControlTest.control_id)
                    .where(ControlTest.audit_id == audit_id).order_by(col(Control.ref)))
    return [(test, control) for test, control in tests]


def _state(db: Session, audit: Audit, occasion: Occasion) -> AuditState:
    controls = db.exec(select(func.count()).select_from(ControlTest).where(ControlTest.audit_id == audit.id)).one()
    findings = db.exec(select(func.count()).select_from(Finding).where(Finding.occasion_id == occasion.id)).one()
    return AuditState(audit_id=audit.id or 0, phase=occasion.phase, evidence_due_at=audit.evidence_due_at,
                      controls=controls, findings=findings, signoff_step_id=occasion.signoff_step_id)


@task
def open_audit(framework_name: str, period: str, evidence_window_days: int = 5,
               evidence_window_minutes: int | None = None) -> AuditState:
    """The audit for (framework, period) and its occasion, created with a test for every control due by its
    cadence; opened already (by an earlier or a concurrent run), as it stands."""
    tz = get_settings().timezone
    with unit() as db:
        framework = _framework(db, framework_name)
        start, end = periods.quarter_bounds(period, tz)
        occasion, _ = occasions.open_occasion(
            db, process=PROCESS, key=f"{framework.name} {period}", title=f"{framework.name} audit {period}",
            period_start=start, period_end=end, status=OccasionStatus.collecting, phase="collecting")
        now = utcnow()
        due = rules.evidence_deadline(now, minutes=evidence_window_minutes,
                                      working_days_later=working_days_from_now(evidence_window_days, start=now))
        audit, created = insert_once(db, Audit(framework_id=framework.id or 0, period=period, evidence_due_at=due,
                                               occasion_id=occasion.id),
                                     lambda: db.exec(select(Audit).where(Audit.occasion_id == occasion.id)).first())
        if created:
            # One INSERT ... SELECT: ten thousand tests are one statement, not ten thousand ORM objects.
            db.connection().execute(_ADD_TESTS, {"audit": audit.id, "framework": framework.id,
                                                 "cadences": _due_cadences(db, framework, period, tz)})
            # Read back through the audit's own tests (refs only): the control filter again reads the framework twice.
            refs = _refs(db, audit.id or 0)
            trail.record(db, actor=ACTOR, action="audit.opened", entity_type="audit", entity_id=audit.id or 0,
                         data={"framework": framework.name, "period": period, "occasion_id": occasion.id,
                               "controls": refs, "evidence_due_at": due.isoformat()})
            return AuditState(audit_id=audit.id or 0, phase=occasion.phase, evidence_due_at=due, controls=len(refs))
        return _state(db, audit, occasion)


@task
def request_evidence(audit_id: int) -> int:
    """One attestation step per control, and one message per owner listing all of theirs; how many owners."""
    with unit() as db:
        audit, _, framework = _audit(db, audit_id)
        asks = Digest(key=f"audit-{audit_id}-evidence-request", template="compliance/audit/evidence_request",
                      context={"audit": _context(audit, framework)}, items_as="controls")
        for test, control in _tests(db, audit_id):
            step = asks.ask(db, item={"ref": control.ref, "title": control.title},
                            key=f"audit-{audit_id}-control-{control.id}-evidence", person_id=test.owner_id,
                            form="attestation", title=f"Attest control {control.ref}: {control.title}",
                            subject_type="control_test", subject_id=test.id or 0, due_at=audit.evidence_due_at,
                            details={"framework": framework.name, "period": audit.period, "control": control.ref,
                                     "description": control.description or control.title}, actor=ACTOR)
            test.step_id = step.id
            db.add(test)
        asks.queue(db)
        return len(asks.items)


def _record_test(db: Session, test: ControlTest) -> TestResult:
    """The test's result from its owner's attestation (expiring the step if nobody answered), evidence kept."""
    step = db.get(HumanStep, test.step_id) if test.step_id else None
    if step is not None and step.status == StepStatus.pending:
        expire(db, step=step, actor=ACTOR)
    attested = answer_of(step, Attestation) if step is not None else None
    if step is None or attested is None:
        test.result = TestResult.unanswered
        return test.result
    test.result = TestResult(attested.result)
    test.note, test.tested_at = attested.note, step.answered_at
    file = attested.evidence_file
    if attested.evidence_url is not None or file is not None:
        db.add(Evidence(control_test_id=test.id or 0, url=str(attested.evidence_url or "") or None,
                        filename=file.filename if file else None, sha256=file.sha256 if file else None,
                        size=file.size if file else None, stored_path=file.stored_path if file else None,
                        submitted_by_id=step.answered_by_id or step.person_id))
    return test.result


def _evaluate(db: Session, audit: Audit, occasion: Occasion, framework: Framework) -> rules.AuditSummary:
    """Results from the answers; a finding with a corrective action for each control that fell short, its owner
    told in one digest linking each action's step."""
    tz = get_settings().timezone
    actions = Digest(key=f"audit-{audit.id}-actions", template="compliance/audit/corrective_actions",
                     context={"audit": _context(audit, framework)}, items_as="actions")
    tests = _tests(db, audit.id or 0)
    for test, control in tests:
        result = test.result or _record_test(db, test)
        control.last_tested_at = utcnow()
        control.next_due_at = next_due(control.cadence, as_utc(occasion.period_end or utcnow()), tz)
        db.add_all([test, control])
        severity = rules.finding_severity(result, control.criticality)
        if severity is None:
            continue
        description = rules.finding_text(result, control.ref, test.note)
        due = working_days_from_now(working_days_for(Criticality(severity)))
        raised = raise_finding(
            db, origin=Origin(ORIGIN, test.id or 0), code=CODE, severity=Criticality(severity),
            description=description, actor=ACTOR, process=PROCESS, verifier_id=framework.compliance_manager_id,
            occasion_id=occasion.id, action=ActionSpec(owner_id=control.owner_id or 0, due_at=due,
                                                       description=rules.action_text(result, control.ref)))
        if raised.created and raised.action is not None and raised.step is not None:
            actions.add(raised.action.owner_id, {"ref": control.ref, "title": control.title, "severity": severity,
                                                 "description": description, "due_at": raised.action.due_at,
                                                 "step_id": raised.step.id})
    actions.queue(db)
    return rules.summarize([test.result for test, _ in tests])


def _report_rows(db: Session, audit_id: int) -> list[dict[str, Any]]:
    """The report's rows in three queries whatever the number of controls: the audit's evidence, its corrective
    actions' due dates, and each test with its control, owner and finding."""
    evidence: dict[int, list[Evidence]] = {}
    for item in db.exec(select(Evidence).join(ControlTest, col(ControlTest.id) == Evidence.control_test_id)
                        .where(ControlTest.audit_id == audit_id).order_by(col(Evidence.id))):
        evidence.setdefault(item.control_test_id, []).append(item)
    found = (col(Finding.origin_type) == ORIGIN) & (col(Finding.origin_id) == ControlTest.id) \
        & (col(Finding.code) == CODE)
    due = dict(db.exec(select(CorrectiveAction.finding_id, CorrectiveAction.due_at)
                       .join(Finding, col(Finding.id) == CorrectiveAction.finding_id)
                       .join(ControlTest, found).where(ControlTest.audit_id == audit_id)).all())
    tests = db.exec(select(ControlTest, Control, Person, Finding)
                    .join(Control, col(Control.id) == ControlTest.control_id)
                    .join(Person, col(Person.id) == ControlTest.owner_id).outerjoin(Finding, found)
                    .where(ControlTest.audit_id == audit_id).order_by(col(Control.ref)))
    return [{
        "control": control.ref, "title": control.title, "owner": owner.name,
        "result": test.result.value if test.result else "pending", "note": test.note,
        "evidence": "; ".join(e.url or f"{e.filename} (sha256 {e.sha256})" for e in evidence.get(test.id or 0, [])),
        "severity": finding.severity.value if finding else "",
        "action_due": due[finding.id].date().isoformat() if finding and finding.id in due else "",
    } for test, control, owner, finding in tests]


def _build_report(db: Session, audit: Audit, occasion: Occasion, framework: Framework,
                  summary: rules.AuditSummary) -> None:
    """The report as HTML (kept on disk, its path and SHA-256 on the occasion) and as Prefect artifacts."""
    context, rows, round_no = _context(audit, framework), _report_rows(db, audit.id or 0), occasion.signoff_round + 1
    saved = save_report(f"audit-{audit.id}-{audit.period}-r{round_no}.html", "compliance/audit/report.html",
                        {"audit": context, "rows": rows, "summary": summary, "generated_at": utcnow(),
                         "round": round_no})
    occasions.record_report(db, occasion, saved)
    artifact = f"compliance-audit-{slug(framework.name)}"
    create_table_artifact(rows, key=artifact,
                          description=f"{framework.name} {audit.period}: controls and findings")
    create_markdown_artifact(
        f"## {framework.name} audit {audit.period}\n\n"
        f"| controls | passed | failed | unanswered | findings |\n|---|---|---|---|---|\n"
        f"| {summary.total} | {summary.passed} | {summary.failed} | {summary.unanswered} | {summary.findings} |\n\n"
        f"Report: `{saved.path}` (SHA-256 `{saved.sha256}`)",
        key=f"{artifact}-summary", description="Audit summary")


@task
def report_for_signoff(audit_id: int, phase: str, signoff_days: int) -> int | None:
    """Close the evidence window, evaluate, build the report and ask the compliance manager to sign it off (the
    current run is the one that waits); the sign-off step's id. Claimed from `phase` first: of two runs at the
    same moment one does it all, the other gets None."""
    with unit() as db:
        audit, occasion, framework = _audit(db, audit_id)
        if framework.compliance_manager_id is None:
            raise ValueError(f"framework {framework.name!r} has no compliance manager to sign off")
        # The runner starts a scheduled run a few seconds early; waited before the claim holds any lock.
        time.sleep(max(0.0, (as_utc(audit.evidence_due_at) - utcnow()).total_seconds()))
        if not occasions.claim_phase(db, occasion.id or 0, phase, "awaiting_signoff"):
            return None
        summary = _evaluate(db, audit, occasion, framework)
        _build_report(db, audit, occasion, framework, summary)
        round_no = occasion.signoff_round + 1
        due, final = answer_window(signoff_days)
        step = gate.ask(db, key=f"audit-{audit_id}-signoff-{round_no}", approver_id=framework.compliance_manager_id,
                        title=f"Sign off the {framework.name} audit {audit.period}", subject_type="audit",
                        subject_id=audit_id, due_at=due, expires_at=final, template="compliance/audit/signoff_request",
                        context={"audit": _context(audit, framework), "summary": summary.counts()}, actor=ACTOR,
                        details={"framework": framework.name, "period": audit.period, **summary.counts(),
                                 "report SHA-256": occasion.report_sha256 or "", ATTACHMENT: occasion.report_path})
        occasions.set_status(db, occasion, OccasionStatus.awaiting_signoff, actor=ACTOR)
        occasion.signoff_step_id, occasion.signoff_round = step.id, round_no
        db.add(occasion)
        return step.id


@task
def apply_signoff(audit_id: int, decided: Decision) -> AuditState:
    """Approved: the audit closes with the report's hash in the trail. Rejected or expired: changes are requested
    (the owners told the approver's comment) and the next run builds a new round."""
    with unit() as db:
        audit, occasion, framework = _audit(db, audit_id)
        if occasion.phase != "awaiting_signoff" or occasion.signoff_step_id != decided.step_id:
            return _state(db, audit, occasion)
        if decided.approved:
            occasions.close(db, occasion, actor=decided.by)
            occasion.phase = "closed"
            trail.record(db, actor=decided.by, action="audit.signed_off", entity_type="audit",
                         entity_id=audit_id,
                         data={"report_sha256": occasion.report_sha256, "step_id": decided.step_id,
                               "comment": decided.comment})
        else:
            occasions.set_status(db, occasion, OccasionStatus.changes_requested, actor=decided.by or ACTOR)
            occasion.phase = "changes_requested"
            trail.record(db, actor=decided.by or ACTOR, action=f"audit.signoff_{decided.verdict.value}",
                         entity_type="audit", entity_id=audit_id,
                         data={"comment": decided.comment, "step_id": decided.step_id})
        if decided.answered and not decided.approved:
            told = Digest(key=f"audit-{audit_id}-rejected-{occasion.signoff_round}",
                          template="compliance/audit/signoff_rejected",
                          context={"audit": _context(audit, framework), "comment": decided.comment,
                                   "approver": decided.by_name or "The approver"})
            for test, control in _tests(db, audit_id):
                told.add(test.owner_id, {"ref": control.ref})
            told.queue(db)
        db.add(occasion)
        db.flush()
        return _state(db, audit, occasion)
