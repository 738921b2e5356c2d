"""The operations report's rules: KPI status and trend, ages, latency, obligations, the headline and the CSV rows.

No Prefect, no database, no registry: KPI directions and vendor standings arrive as their string values."""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from engine.deadlines import next_due
from engine.periods import Period

HIGHER_IS_BETTER = "higher"  # registry.kpis.Direction.higher_is_better's value; "lower" is the other
# Everyone active holding this role receives the report.
DISTRIBUTION_ROLE = "operations_report"
OBLIGATION_HORIZON_DAYS = 30
# A change smaller than this share of the target (or 0.01 of a unit for a zero target) is no trend at all.
STEADY_SHARE = 0.005



def chart_window(period: Period) -> tuple[date, date]:
    """What the trend charts show: the year up to the period's end, or the whole period if longer."""
    try:
        year_before = period.end.replace(year=period.end.year - 1)
    except ValueError:  # 29 February
        year_before = period.end.replace(year=period.end.year - 1, day=28)
    return min(period.start, year_before + timedelta(days=1)), period.end


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back naive; the registry stores UTC, so naive means UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Status(StrEnum):
    met = "met"
    missed = "missed"
    no_data = "no data"


class Trend(StrEnum):
    improving = "improving"
    worsening = "worsening"
    steady = "steady"
    unknown = "no comparison"


class Tone(StrEnum):
    """How a figure is coloured: good or bad by the KPI's direction, neutral when there is nothing to judge."""

    good = "good"
    bad = "bad"
    neutral = "neutral"


class Arrow(StrEnum):
    """Which way the number itself moved, whatever that means for the KPI."""

    up = "up"
    down = "down"
    flat = "flat"
    none = "none"


@dataclass(frozen=True)
class Change:
    arrow: Arrow
    tone: Tone


TREND_TONE = {Trend.improving: Tone.good, Trend.worsening: Tone.bad, Trend.steady: Tone.neutral,
              Trend.unknown: Tone.neutral}


def change_mark(change: float | None, direction_of: Trend, places: int = 1) -> Change:
    """The arrow follows the sign of the change as shown (rounded to `places`), so "−0.1" never points up; the
    colour follows the trend, which knows whether lower or higher is better for this KPI."""
    if change is None:
        return Change(Arrow.none, Tone.neutral)
    shown = round(change, places)
    arrow = Arrow.up if shown > 0 else Arrow.down if shown < 0 else Arrow.flat
    return Change(arrow, TREND_TONE[direction_of])


def kpi_status(value: float | None, target: float, direction: str) -> Status:
    """Met when the figure is at the target or on its better side."""
    if value is None:
        return Status.no_data
    met = value >= target if direction == HIGHER_IS_BETTER else value <= target
    return Status.met if met else Status.missed


def trend(current: float | None, previous: float | None, target: float, direction: str) -> Trend:
    """Whether the figure moved towards the better side since the previous period, beyond a small tolerance."""
    if current is None or previous is None:
        return Trend.unknown
    tolerance = abs(target) * STEADY_SHARE if target else 0.01
    change = current - previous
    if abs(change) <= tolerance:
        return Trend.steady
    better = change > 0 if direction == HIGHER_IS_BETTER else change < 0
    return Trend.improving if better else Trend.worsening


@dataclass(frozen=True)
class KpiSpec:
    id: int
    code: str
    name: str
    unit: str
    target: float
    direction: str
    owner: str = ""
    description: str = ""


@dataclass(frozen=True)
class KpiRow:
    """One KPI in the report. The period's figure is the mean of its measurements in the period."""

    spec: KpiSpec
    value: float | None
    latest: float | None
    latest_on: date | None
    measurements: int
    previous: float | None
    change: float | None
    status: Status
    trend: Trend
    mark: Change
    points: tuple[tuple[date, float], ...] = field(default=(), repr=False)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _days(ordered: Sequence[tuple[date, float]], first: date, last: date) -> Sequence[tuple[date, float]]:
    """The points of `ordered` (sorted) dated from `first` to `last`; (day,) sorts before every (day, value)."""
    return ordered[bisect_left(ordered, (first,)):bisect_left(ordered, (last + timedelta(days=1),))]


def summarize_kpi(spec: KpiSpec, points: Iterable[tuple[date, float]], period: Period) -> KpiRow:
    """A KPI's figures for `period` from its measurements (any span, any order; those outside the chart window
    are ignored)."""
    return summarize_ordered(spec, sorted(points), period)


def summarize_ordered(spec: KpiSpec, ordered: Sequence[tuple[date, float]], period: Period) -> KpiRow:
    """`summarize_kpi` of measurements already in date order (as the registry returns them): a year of daily
    points is sliced by date, not filtered nor sorted point by point."""
    first, last = chart_window(period)
    shown = tuple(_days(ordered, first, last))
    before = period.previous()
    inside = _days(shown, period.start, period.end)
    value = _mean([v for _, v in inside])
    previous = _mean([v for _, v in _days(shown, before.start, before.end)])
    change = None if value is None or previous is None else value - previous
    moved = trend(value, previous, spec.target, spec.direction)
    return KpiRow(
        spec=spec, value=value, latest=inside[-1][1] if inside else None,
        latest_on=inside[-1][0] if inside else None, measurements=len(inside), previous=previous,
        change=change, status=kpi_status(value, spec.target, spec.direction), trend=moved,
        mark=change_mark(change, moved), points=shown)


AGE_BUCKETS = ("0–30 days", "31–60 days", "61–90 days", "over 90 days")
AGE_LIMITS = (30, 60, 90)  # the oldest age, in days, of each bucket but the last


def age_days(created: datetime, now: datetime) -> int:
    return max((_utc(now) - _utc(created)).days, 0)


def age_bucket(days: int) -> str:
    """0–30, 31–60, 61–90 and over 90 days old."""
    for bucket, limit in zip(AGE_BUCKETS, AGE_LIMITS, strict=False):
        if days <= limit:
            return bucket
    return AGE_BUCKETS[-1]


@dataclass(frozen=True)
class AgeRow:
    bucket: str
    findings: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    actions: int = 0
    overdue: int = 0


def age_table(findings: Iterable[tuple[int, str]], actions: Iterable[tuple[int, bool]]) -> list[AgeRow]:
    """Open findings (age, severity) and corrective actions (age, overdue) counted per age bucket."""
    return counted_ages([(AGE_BUCKETS.index(age_bucket(days)), severity, 1) for days, severity in findings],
                        [(AGE_BUCKETS.index(age_bucket(days)), 1, int(overdue)) for days, overdue in actions])


def age_bucket_starts(now: datetime) -> tuple[datetime, ...]:
    """For each age bucket but the last, the moment after which a thing created is young enough for it: created
    after the first, 0–30 days old by `age_days`; after the second, 31–60 (a day's age is whole days, rounded
    down, so 30 days old is anything younger than 31 days)."""
    return tuple(_utc(now) - timedelta(days=limit + 1) for limit in AGE_LIMITS)


def counted_ages(findings: Iterable[tuple[int, str, int]], actions: Iterable[tuple[int, int, int]]) -> list[AgeRow]:
    """The age table from counts: findings as (bucket index, severity, how many), corrective actions as (bucket
    index, how many, how many overdue), as many rows of one bucket as come."""
    rows = [AgeRow(bucket) for bucket in AGE_BUCKETS]
    for index, severity, count in findings:
        row = rows[index]
        by_severity = {s: getattr(row, s) + (count if s == severity else 0) for s in ("high", "medium", "low")}
        rows[index] = replace(row, findings=row.findings + count, **by_severity)
    for index, count, overdue in actions:
        row = rows[index]
        rows[index] = replace(row, actions=row.actions + count, overdue=row.overdue + overdue)
    return rows


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile: a value that occurred, never one interpolated between two answers."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


@dataclass(frozen=True)
class LatencyRow:
    kind: str
    form: str
    answered: int
    median_hours: float | None
    p90_hours: float | None
    late: int
    title: str = ""
    """The form's title, what the report shows (its name if it has none); `form` is its registered name, what the
    CSV keeps."""


def latency_rows(steps: Iterable[tuple[str, str, datetime, datetime, datetime]],
                 titles: Mapping[str, str] | None = None) -> list[LatencyRow]:
    """(kind, form, asked, answered, due) per answered step → hours from asking to answer, per kind and form;
    each row titled as `titles` names its form (the form's declared title)."""
    groups: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for kind, form, asked, answered, due in steps:
        hours = max((_utc(answered) - _utc(asked)).total_seconds(), 0) / 3600
        groups.setdefault((kind, form), []).append((hours, _utc(answered) > _utc(due)))
    rows = []
    for (kind, form), answers in sorted(groups.items()):
        took = [h for h, _ in answers]
        rows.append(LatencyRow(kind=kind, form=form, answered=len(answers), median_hours=statistics.median(took),
                               p90_hours=percentile(took, 0.9), late=sum(late for _, late in answers),
                               title=(titles or {}).get(form, "")))
    return rows


def cadence_due(cadence: str, last_done: datetime | None, now: datetime, tz: str) -> datetime:
    """When a recurring obligation is next due: the first occurrence after it was last done (which may have
    passed: then it is overdue), or, never done, the next occurrence from now."""
    return next_due(cadence, last_done if last_done is not None else now, tz)


@dataclass(frozen=True)
class Obligation:
    kind: str
    item: str
    owner: str
    due_at: datetime
    days_left: int
    overdue: bool


def obligation(kind: str, item: str, owner: str, due_at: datetime, now: datetime) -> Obligation:
    left = _utc(due_at) - _utc(now)
    return Obligation(kind=kind, item=item, owner=owner, due_at=_utc(due_at),
                      days_left=math.floor(left.total_seconds() / 86400), overdue=left.total_seconds() < 0)


def due_soon(items: Iterable[Obligation], horizon_days: int = OBLIGATION_HORIZON_DAYS) -> list[Obligation]:
    """Overdue obligations and those due within the horizon, soonest first."""
    return sorted((o for o in items if o.days_left < horizon_days), key=lambda o: (o.due_at, o.kind, o.item))


@dataclass(frozen=True)
class OpenItem:
    """An open finding or corrective action, for the list of the oldest."""

    kind: str
    description: str
    severity: str
    owner: str
    age_days: int
    due_at: datetime | None = None
    overdue: bool = False


@dataclass(frozen=True)
class Resolution:
    """What was settled: findings closed and actions verified in the period; actions reported done and awaiting
    their verifier as the report was built."""

    findings_closed: int = 0
    actions_verified: int = 0
    awaiting_verification: int = 0


@dataclass(frozen=True)
class FindingsSection:
    ages: list[AgeRow]
    oldest: list[OpenItem]
    resolution: Resolution


class ScoreNote(StrEnum):
    """What the latest score shown is, or why there is none."""

    scored = "scored in the newest review"
    earlier = "no deliveries in the newest review"
    unscored = "no deliveries scored yet"
    never = "no scorecard yet"


@dataclass(frozen=True)
class Scorecard:
    period: str
    score: float | None


@dataclass(frozen=True)
class LatestScore:
    score: float | None = None
    scored_period: str = ""
    reviewed_period: str = ""
    note: ScoreNote = ScoreNote.never


def latest_score(cards: Iterable[Scorecard]) -> LatestScore:
    """The newest score a vendor earned and, when the newest review had nothing to score (no deliveries in its
    quarter), that earlier score with the reason: a review without deliveries does not wipe out the last one.
    Quarters ("2026-Q3") sort as text; cards of one period keep the order given (oldest first)."""
    ordered = sorted(cards, key=lambda c: c.period)
    scored = [c for c in ordered if c.score is not None]
    return score_shown(ordered[-1].period if ordered else None, scored[-1] if scored else None)


def score_shown(newest_period: str | None, last_scored: Scorecard | None) -> LatestScore:
    """What `latest_score` shows from the newest review's period (None: never reviewed) and the newest card that
    holds a score (None: none does)."""
    if newest_period is None:
        return LatestScore()
    if last_scored is None:
        return LatestScore(reviewed_period=newest_period, note=ScoreNote.unscored)
    return LatestScore(score=last_scored.score, scored_period=last_scored.period, reviewed_period=newest_period,
                       note=score_note(newest_period, last_scored.period))


def score_note(newest_period: str | None, scored_period: str | None) -> ScoreNote:
    """The note beside a vendor's score, from the newest review's period and that of the newest score (None:
    never reviewed, never scored)."""
    if newest_period is None:
        return ScoreNote.never
    if scored_period is None:
        return ScoreNote.unscored
    return ScoreNote.scored if scored_period == newest_period else ScoreNote.earlier


@dataclass(frozen=True)
class VendorLine:
    code: str
    name: str
    owner: str
    standing: str
    score: float | None = None
    scored_period: str = ""
    contract_end: date | None = None
    reviewed_period: str = ""
    note: ScoreNote = ScoreNote.never


@dataclass(frozen=True)
class InventoryHealth:
    items: int
    at_or_below: int
    out_of_stock: int
    covered: int
    stock_value: float


@dataclass(frozen=True)
class Shortage:
    sku: str
    location: str
    description: str
    vendor: str
    on_hand: int
    reorder_point: int
    on_order: int


@dataclass(frozen=True)
class Sections:
    """Everything the report shows. KPIs and latency cover the period; the rest is as the report was built."""

    kpis: list[KpiRow] = field(default_factory=list)
    ages: list[AgeRow] = field(default_factory=list)
    oldest: list[OpenItem] = field(default_factory=list)
    resolution: Resolution = field(default_factory=Resolution)
    latency: list[LatencyRow] = field(default_factory=list)
    vendors: list[VendorLine] = field(default_factory=list)
    inventory: InventoryHealth | None = None
    shortages: list[Shortage] = field(default_factory=list)
    obligations: list[Obligation] = field(default_factory=list)


@dataclass(frozen=True)
class Contributed:
    """A part of the report a process declares (engine.processes.Section), as built for the period: `data` is
    what its build returned (None: nothing to report for the period); `failed` when its build raised."""

    key: str
    title: str
    template: str
    process: str
    data: dict[str, Any] | None = None
    failed: bool = False


# The CSV's own sections: a process's section under one of these names would mix its rows with the report's.
OWN_SECTIONS = ("period", "summary", "kpis", "findings", "latency", "vendors", "inventory", "obligations")


def contributed_figures(parts: Iterable[Contributed]) -> list[Figure]:
    """The CSV rows of the processes' sections: each (name, value) or (name, value, unit) of a part's `figures`
    as one row of its section; a part without data, one row saying so."""
    rows: list[Figure] = []
    for part in parts:
        if part.data is None:
            rows.append((part.key, part.title, "data", None, "", None, "failed" if part.failed else "no data", ""))
            continue
        for figure in part.data.get("figures", ()):
            name, value, *unit = figure
            rows.append((part.key, str(name), "value", value, str(unit[0]) if unit else "", None, "", part.title))
    return rows


# registry.supply.Standing's values, in its order (a test holds them equal).
STANDINGS = ("preferred", "approved", "probation", "disqualified")


class KpiVerdict(StrEnum):
    """The KPI headline of the report and its mail's subject."""

    none_defined = "no KPIs defined"
    none_measured_yet = "no KPI measured yet"
    none_measured = "no KPI measured"
    all_met = "all on target"
    some_missed = "some missed"


VERDICT_TONE = {KpiVerdict.none_defined: Tone.neutral, KpiVerdict.none_measured_yet: Tone.neutral,
                KpiVerdict.none_measured: Tone.neutral, KpiVerdict.all_met: Tone.good,
                KpiVerdict.some_missed: Tone.bad}


def kpi_verdict(defined: int, measured: int, met: int, period_over: bool) -> KpiVerdict:
    """No measurement is no failure: "0 of 0 on target" on the 1st of a month is a period not yet measured,
    not one that missed everything. Only a measured KPI off target makes the headline bad."""
    if not defined:
        return KpiVerdict.none_defined
    if not measured:
        return KpiVerdict.none_measured if period_over else KpiVerdict.none_measured_yet
    return KpiVerdict.all_met if met == measured else KpiVerdict.some_missed


@dataclass(frozen=True)
class Headline:
    kpis: int
    kpis_measured: int
    kpis_met: int
    open_findings: int
    findings_over_90: int
    open_actions: int
    overdue_actions: int
    findings_closed: int
    actions_verified: int
    actions_awaiting_verification: int
    answered_steps: int
    approvals_answered: int
    requests_answered: int
    approval_median_hours: float | None
    request_median_hours: float | None
    obligations: int
    obligations_overdue: int
    vendors: int
    vendors_at_risk: int
    stock_items: int
    items_at_or_below: int
    standings: dict[str, int]
    kpi_verdict: KpiVerdict
    kpi_tone: Tone


APPROVAL_KIND = "approval"  # registry.steps' kind of a step that approves; every other kind asks for something


def _pooled_median(rows: Sequence[LatencyRow], kind: str) -> float | None:
    """A median over every form of a kind, weighted by answers (medians cannot be averaged; this approximates)."""
    own = [r for r in rows if r.kind == kind and r.median_hours is not None]
    if not own:
        return None
    return sum((r.median_hours or 0) * r.answered for r in own) / sum(r.answered for r in own)


def headline(sections: Sections, *, period_over: bool = True) -> Headline:
    """The report's headline figures; `period_over` whether the period had ended when the report was built."""
    standings = {s: sum(v.standing == s for v in sections.vendors) for s in STANDINGS}
    health = sections.inventory
    measured = sum(k.status != Status.no_data for k in sections.kpis)
    met = sum(k.status == Status.met for k in sections.kpis)
    verdict = kpi_verdict(len(sections.kpis), measured, met, period_over)
    approvals = sum(r.answered for r in sections.latency if r.kind == APPROVAL_KIND)
    return Headline(
        kpis=len(sections.kpis), kpis_measured=measured, kpis_met=met,
        kpi_verdict=verdict, kpi_tone=VERDICT_TONE[verdict],
        open_findings=sum(a.findings for a in sections.ages),
        findings_over_90=sum(a.findings for a in sections.ages if a.bucket == AGE_BUCKETS[-1]),
        open_actions=sum(a.actions for a in sections.ages), overdue_actions=sum(a.overdue for a in sections.ages),
        findings_closed=sections.resolution.findings_closed, actions_verified=sections.resolution.actions_verified,
        actions_awaiting_verification=sections.resolution.awaiting_verification,
        answered_steps=sum(r.answered for r in sections.latency), approvals_answered=approvals,
        requests_answered=sum(r.answered for r in sections.latency) - approvals,
        approval_median_hours=_pooled_median(sections.latency, APPROVAL_KIND),
        request_median_hours=_pooled_median(sections.latency, "form"),
        obligations=len(sections.obligations), obligations_overdue=sum(o.overdue for o in sections.obligations),
        vendors=len(sections.vendors), vendors_at_risk=standings["probation"] + standings["disqualified"],
        stock_items=health.items if health else 0, items_at_or_below=health.at_or_below if health else 0,
        standings=standings)


FIGURE_COLUMNS = ("section", "item", "measure", "value", "unit", "target", "status", "detail")
Figure = tuple[str, str, str, float | int | str | None, str, float | None, str, str]


def _rounded(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def figures(period: Period, sections: Sections, top: Headline) -> list[Figure]:
    """Every figure the report shows, one row each, as the CSV holds them (values unrounded for display)."""
    rows: list[Figure] = [
        ("period", period.key, "first day", period.start.isoformat(), "", None, "", period.label),
        ("period", period.key, "last day", period.end.isoformat(), "", None, "", period.label),
        ("summary", "KPIs", "met", top.kpis_met, "KPIs", top.kpis_measured, top.kpi_verdict.value,
         f"of {top.kpis} defined"),
        ("summary", "findings", "open", top.open_findings, "findings", None, "", ""),
        ("summary", "findings", "open over 90 days", top.findings_over_90, "findings", None, "", ""),
        ("summary", "corrective actions", "open", top.open_actions, "actions", None, "", ""),
        ("summary", "corrective actions", "overdue", top.overdue_actions, "actions", None, "", ""),
        ("summary", "findings", "closed in the period", top.findings_closed, "findings", None, "", ""),
        ("summary", "corrective actions", "verified in the period", top.actions_verified, "actions", None, "", ""),
        ("summary", "corrective actions", "awaiting verification", top.actions_awaiting_verification, "actions",
         None, "", ""),
        ("summary", "approvals", "median latency", _rounded(top.approval_median_hours), "h", None, "", ""),
        ("summary", "requests", "median latency", _rounded(top.request_median_hours), "h", None, "", ""),
        ("summary", "obligations", "due in 30 days", top.obligations, "obligations", None, "", ""),
        ("summary", "obligations", "overdue", top.obligations_overdue, "obligations", None, "", ""),
        ("summary", "inventory", "at or below reorder point", top.items_at_or_below, "items", None, "", ""),
    ]
    for k in sections.kpis:
        item = f"{k.spec.code} {k.spec.name}"
        rows += [
            ("kpis", item, "period mean", _rounded(k.value), k.spec.unit, k.spec.target, k.status.value,
             f"{k.measurements} measurement(s); {k.spec.direction} is better"),
            ("kpis", item, "latest", _rounded(k.latest), k.spec.unit, k.spec.target,
             "", k.latest_on.isoformat() if k.latest_on else ""),
            ("kpis", item, "previous period mean", _rounded(k.previous), k.spec.unit, k.spec.target, "", ""),
            ("kpis", item, "change", _rounded(k.change), k.spec.unit, None, k.trend.value, ""),
        ]
    for a in sections.ages:
        rows += [("findings", a.bucket, "open findings", a.findings, "findings", None, "",
                  f"high {a.high}, medium {a.medium}, low {a.low}"),
                 ("findings", a.bucket, "open corrective actions", a.actions, "actions", None, "", ""),
                 ("findings", a.bucket, "overdue corrective actions", a.overdue, "actions", None, "", "")]
    for r in sections.latency:
        item = f"{r.kind} {r.form}"
        rows += [("latency", item, "answered", r.answered, "steps", None, "", ""),
                 ("latency", item, "median", _rounded(r.median_hours), "h", None, "", ""),
                 ("latency", item, "90th percentile", _rounded(r.p90_hours), "h", None, "", ""),
                 ("latency", item, "answered after due", r.late, "steps", None, "", "")]
    for s, count in top.standings.items():
        rows.append(("vendors", s, "vendors", count, "vendors", None, "", ""))
    for v in sections.vendors:
        rows.append(("vendors", f"{v.code} {v.name}", "latest score", _rounded(v.score), "points", None, v.standing,
                     "; ".join(x for x in (v.scored_period, "" if v.note == ScoreNote.scored else v.note.value,
                                           "" if v.note == ScoreNote.scored else v.reviewed_period) if x)))
    if sections.inventory is not None:
        h = sections.inventory
        rows += [("inventory", "items", "stocked", h.items, "items", None, "", ""),
                 ("inventory", "items", "at or below reorder point", h.at_or_below, "items", None, "", ""),
                 ("inventory", "items", "out of stock", h.out_of_stock, "items", None, "", ""),
                 ("inventory", "items", "covered by open requests", h.covered, "items", None, "", ""),
                 ("inventory", "stock", "value at cost", round(h.stock_value, 2), "", None, "", "")]
    for short in sections.shortages:
        rows.append(("inventory", f"{short.sku} {short.location}", "on hand", short.on_hand, "units",
                     short.reorder_point, "out of stock" if short.on_hand == 0 else "at or below reorder point",
                     f"{short.vendor}; {short.on_order} on order"))
    for o in sections.obligations:
        rows.append(("obligations", f"{o.kind}: {o.item}", "days left", o.days_left, "days", None,
                     "overdue" if o.overdue else "due", f"due {o.due_at.isoformat()}; {o.owner}"))
    return rows
