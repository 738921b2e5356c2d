from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.periods import parse as parse_period
from flows.reporting.operations_report.rules import (
    AGE_BUCKETS,
    STANDINGS,
    VERDICT_TONE,
    AgeRow,
    Arrow,
    Change,
    InventoryHealth,
    KpiSpec,
    KpiVerdict,
    LatencyRow,
    LatestScore,
    Scorecard,
    ScoreNote,
    Sections,
    Status,
    Tone,
    Trend,
    age_bucket,
    age_bucket_starts,
    age_days,
    age_table,
    cadence_due,
    change_mark,
    chart_window,
    counted_ages,
    due_soon,
    figures,
    headline,
    kpi_status,
    kpi_verdict,
    latency_rows,
    latest_score,
    obligation,
    percentile,
    score_note,
    score_shown,
    summarize_kpi,
    trend,
)
from registry.kpis import Direction
from registry.supply import Standing

HIGHER, LOWER = Direction.higher_is_better, Direction.lower_is_better
TODAY = date(2026, 11, 25)  # a Wednesday in ISO week 48


def test_the_chart_window_is_a_year_or_the_whole_period() -> None:
    assert chart_window(parse_period("2026-11", TODAY)) == (date(2025, 12, 1), date(2026, 11, 30))
    assert chart_window(parse_period("2025-01-01..2026-06-30", TODAY)) == (date(2025, 1, 1), date(2026, 6, 30))
    assert chart_window(parse_period("2028-02", TODAY)) == (date(2027, 3, 1), date(2028, 2, 29))


@pytest.mark.parametrize(
    ("value", "target", "direction", "status"),
    [(95.0, 95.0, HIGHER, Status.met), (95.1, 95.0, HIGHER, Status.met), (94.9, 95.0, HIGHER, Status.missed),
     (4.0, 4.0, LOWER, Status.met), (3.2, 4.0, LOWER, Status.met), (4.1, 4.0, LOWER, Status.missed),
     (0.0, 0.0, LOWER, Status.met), (None, 95.0, HIGHER, Status.no_data)],
)
def test_kpi_status_follows_the_direction(value: float | None, target: float, direction: Direction,
                                          status: Status) -> None:
    assert kpi_status(value, target, direction) == status


@pytest.mark.parametrize(
    ("current", "previous", "target", "direction", "expected"),
    [(96.0, 94.0, 95.0, HIGHER, Trend.improving), (94.0, 96.0, 95.0, HIGHER, Trend.worsening),
     (3.0, 4.0, 4.0, LOWER, Trend.improving), (5.0, 4.0, 4.0, LOWER, Trend.worsening),
     (95.4, 95.0, 95.0, HIGHER, Trend.steady),  # 0.4 is within 0.5 % of 95
     (95.5, 95.0, 95.0, HIGHER, Trend.improving),
     (0.005, 0.0, 0.0, LOWER, Trend.steady), (1.0, 0.0, 0.0, LOWER, Trend.worsening),
     (None, 3.0, 4.0, LOWER, Trend.unknown), (3.0, None, 4.0, LOWER, Trend.unknown)],
)
def test_trend_compares_with_the_previous_period_in_the_better_direction(
        current: float | None, previous: float | None, target: float, direction: Direction, expected: Trend) -> None:
    assert trend(current, previous, target, direction) == expected


def test_a_kpi_is_summarized_from_the_measurements_of_its_period() -> None:
    spec = KpiSpec(id=1, code="OTD", name="On-time delivery", unit="%", target=95, direction=HIGHER)
    period = parse_period("2026-11", TODAY)
    points = [(date(2026, 10, 25), 93.0), (date(2026, 10, 18), 91.0),  # October: mean 92
              (date(2026, 11, 1), 96.0), (date(2026, 11, 22), 95.0), (date(2026, 11, 8), 97.0),  # November: 96
              (date(2026, 12, 6), 10.0), (date(2025, 11, 23), 10.0)]  # outside the chart window
    row = summarize_kpi(spec, points, period)
    assert (row.value, row.latest, row.latest_on, row.measurements) == (96.0, 95.0, date(2026, 11, 22), 3)
    assert (row.previous, row.change, row.status, row.trend) == (92.0, 4.0, Status.met, Trend.improving)
    assert row.points[0] == (date(2026, 10, 18), 91.0) and len(row.points) == 5


def test_a_kpi_without_measurements_in_the_period_has_no_data() -> None:
    spec = KpiSpec(id=1, code="IRT", name="Incident response", unit="h", target=4, direction=LOWER)
    row = summarize_kpi(spec, [(date(2026, 10, 4), 3.0)], parse_period("2026-11", TODAY))
    assert (row.value, row.latest, row.measurements, row.status, row.trend) == (None, None, 0, Status.no_data,
                                                                               Trend.unknown)
    assert row.previous == 3.0


@pytest.mark.parametrize(("days", "bucket"), [(0, AGE_BUCKETS[0]), (30, AGE_BUCKETS[0]), (31, AGE_BUCKETS[1]),
                                              (60, AGE_BUCKETS[1]), (61, AGE_BUCKETS[2]), (90, AGE_BUCKETS[2]),
                                              (91, AGE_BUCKETS[3]), (400, AGE_BUCKETS[3])])
def test_age_buckets(days: int, bucket: str) -> None:
    assert age_bucket(days) == bucket


def test_the_age_table_counts_findings_by_severity_and_overdue_actions() -> None:
    rows = age_table([(5, "high"), (10, "low"), (45, "medium"), (120, "high")],
                     [(5, False), (45, True), (95, True), (100, False)])
    assert rows == [AgeRow(AGE_BUCKETS[0], findings=2, high=1, low=1, actions=1),
                    AgeRow(AGE_BUCKETS[1], findings=1, medium=1, actions=1, overdue=1),
                    AgeRow(AGE_BUCKETS[2]),
                    AgeRow(AGE_BUCKETS[3], findings=1, high=1, actions=2, overdue=1)]


def test_the_bucket_starts_split_moments_as_age_days_buckets_them() -> None:
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    starts = age_bucket_starts(now)
    for age in (timedelta(0), timedelta(days=30, hours=23, minutes=59, seconds=59, microseconds=999_999),
                timedelta(days=31), timedelta(days=61), timedelta(days=91, microseconds=-1), timedelta(days=91),
                timedelta(days=500), -timedelta(days=2)):
        created = now - age
        in_sql = next((index for index, start in enumerate(starts) if created > start), len(starts))
        assert AGE_BUCKETS[in_sql] == age_bucket(age_days(created, now)), age


def test_the_age_table_from_counts_is_the_age_table_from_items() -> None:
    assert counted_ages([(0, "high", 1), (0, "low", 1), (1, "medium", 1), (3, "high", 1)],
                        [(0, 1, 0), (1, 1, 1), (3, 2, 1)]) == age_table(
        [(5, "high"), (10, "low"), (45, "medium"), (120, "high")], [(5, False), (45, True), (95, True), (100, False)])


def test_the_sql_nearest_rank_of_the_90th_percentile_is_the_rule_s() -> None:
    """The report's latency query ranks the 90th percentile in integers, (9 n + 9) div 10, as `percentile` does
    with ceil(0.9 n) in floating point."""
    for n in range(1, 200_001):
        assert (9 * n + 9) // 10 == max(math.ceil(0.9 * n), 1), n


@pytest.mark.parametrize(("values", "share", "expected"),
                         [([], 0.9, None), ([7.0], 0.9, 7.0), ([1.0, 2.0], 0.5, 1.0),
                          ([float(v) for v in range(1, 11)], 0.9, 9.0),
                          ([float(v) for v in range(1, 12)], 0.9, 10.0), ([5.0, 1.0, 3.0], 1.0, 5.0)])
def test_nearest_rank_percentile(values: list[float], share: float, expected: float | None) -> None:
    assert percentile(values, share) == expected


def test_latency_per_kind_and_form_in_hours() -> None:
    asked = datetime(2026, 11, 2, 9, tzinfo=UTC)
    due = asked + timedelta(hours=24)
    steps = [("approval", "approval", asked, asked + timedelta(hours=h), due) for h in (1, 2, 3, 30)]
    steps.append(("form", "attestation", asked.replace(tzinfo=None), asked + timedelta(hours=50), due))
    assert latency_rows(steps) == [
        LatencyRow("approval", "approval", answered=4, median_hours=2.5, p90_hours=30.0, late=1),
        LatencyRow("form", "attestation", answered=1, median_hours=50.0, p90_hours=50.0, late=1)]


def test_cadence_due_counts_from_the_last_time_done_or_from_now() -> None:
    now = datetime(2026, 11, 25, 8, tzinfo=UTC)
    monthly = "0 9 1 * *"
    assert cadence_due(monthly, None, now, "Europe/London") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    overdue = cadence_due(monthly, datetime(2026, 9, 20, tzinfo=UTC), now, "Europe/London")
    assert overdue == datetime(2026, 10, 1, 8, tzinfo=UTC)  # 09:00 British Summer Time
    assert obligation("Control test", "BK-1", "Ivan", overdue, now).overdue


def test_due_soon_keeps_the_overdue_and_the_next_30_days_soonest_first() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    items = [obligation("Drill", name, "", now + timedelta(days=days), now)
             for name, days in (("later", 31), ("edge", 29.9), ("soon", 2), ("late", -3))]
    assert [(o.item, o.days_left, o.overdue) for o in due_soon(items)] == [
        ("late", -3, True), ("soon", 2, False), ("edge", 29, False)]


def test_every_figure_of_an_empty_report_is_zero_or_blank() -> None:
    period = parse_period("2026-11", TODAY)
    top = headline(Sections())
    assert (top.kpis, top.open_findings, top.approval_median_hours, top.stock_items, top.obligations) == \
        (0, 0, None, 0, 0)
    rows = figures(period, Sections(), top)
    assert {r[0] for r in rows} == {"period", "summary", "vendors"}  # vendor standings count zero each


def test_figures_hold_the_inventory_and_the_pooled_latency() -> None:
    sections = Sections(latency=[LatencyRow("approval", "approval", 3, 2.0, 4.0, 0),
                                 LatencyRow("approval", "purchase", 1, 10.0, 10.0, 1)],
                        inventory=InventoryHealth(items=10, at_or_below=2, out_of_stock=1, covered=1,
                                                  stock_value=1234.567))
    top = headline(sections)
    assert top.approval_median_hours == 4.0 and top.request_median_hours is None
    rows = {(r[0], r[1], r[2]): r[3] for r in figures(parse_period("2026-11", TODAY), sections, top)}
    assert rows[("inventory", "stock", "value at cost")] == 1234.57
    assert rows[("latency", "approval purchase", "answered after due")] == 1



def test_the_standings_counted_are_the_registry_s_in_its_order() -> None:
    assert tuple(standing.value for standing in Standing) == STANDINGS


@pytest.mark.parametrize(("defined", "measured", "met", "over", "verdict", "tone"), [
    (0, 0, 0, True, KpiVerdict.none_defined, Tone.neutral),
    (7, 0, 0, False, KpiVerdict.none_measured_yet, Tone.neutral),  # the 1st of the month: nothing yet, no failure
    (7, 0, 0, True, KpiVerdict.none_measured, Tone.neutral),
    (7, 4, 4, False, KpiVerdict.all_met, Tone.good),
    (7, 4, 3, True, KpiVerdict.some_missed, Tone.bad),
    (1, 1, 0, False, KpiVerdict.some_missed, Tone.bad),
])
def test_the_kpi_headline_is_bad_only_when_a_measured_kpi_missed(
        defined: int, measured: int, met: int, over: bool, verdict: KpiVerdict, tone: Tone) -> None:
    assert kpi_verdict(defined, measured, met, over) == verdict
    assert VERDICT_TONE[verdict] == tone


def test_the_headline_knows_a_period_not_yet_measured_from_one_that_missed() -> None:
    period = parse_period("2026-12", TODAY)
    spec = KpiSpec(1, "OTD", "On-time delivery", "%", 95, HIGHER)
    sections = Sections(kpis=[summarize_kpi(spec, [(date(2026, 11, 20), 96)], period)])
    running, over = headline(sections, period_over=False), headline(sections)
    assert (running.kpi_verdict, running.kpi_tone) == (KpiVerdict.none_measured_yet, Tone.neutral)
    assert (over.kpi_verdict, over.kpi_tone) == (KpiVerdict.none_measured, Tone.neutral)
    summary = {(r[1], r[2]): r[6] for r in figures(period, sections, running) if r[0] == "summary"}
    assert summary[("KPIs", "met")] == "no KPI measured yet"


@pytest.mark.parametrize(("change", "moved", "arrow", "tone"), [
    (-0.1, Trend.improving, Arrow.down, Tone.good),  # budget variance falling: down, and good
    (-1.1, Trend.worsening, Arrow.down, Tone.bad),  # closed on time falling: down, and bad
    (0.4, Trend.worsening, Arrow.up, Tone.bad),  # response time rising: up, and bad
    (1.0, Trend.improving, Arrow.up, Tone.good),
    (0.2, Trend.steady, Arrow.up, Tone.neutral),  # within the tolerance: the number still went up
    (0.04, Trend.steady, Arrow.flat, Tone.neutral),  # shown as +0.0: no arrow pointing anywhere
    (0.0, Trend.steady, Arrow.flat, Tone.neutral),
    (None, Trend.unknown, Arrow.none, Tone.neutral),
])
def test_the_arrow_is_the_number_s_direction_and_the_colour_its_meaning(
        change: float | None, moved: Trend, arrow: Arrow, tone: Tone) -> None:
    assert change_mark(change, moved) == Change(arrow, tone)


@pytest.mark.parametrize(("direction", "before", "now", "arrow", "tone"), [
    (LOWER, 2.5, 2.4, Arrow.down, Tone.good),
    (LOWER, 3.5, 3.9, Arrow.up, Tone.bad),
    (HIGHER, 83.3, 82.2, Arrow.down, Tone.bad),
    (HIGHER, 98.0, 99.0, Arrow.up, Tone.good),
])
def test_a_kpi_row_carries_its_change_mark(direction: Direction, before: float, now: float, arrow: Arrow,
                                           tone: Tone) -> None:
    spec = KpiSpec(1, "K", "KPI", "%", 2.0 if direction == LOWER else 90.0, direction.value)
    row = summarize_kpi(spec, [(date(2026, 10, 10), before), (date(2026, 11, 10), now)], parse_period("2026-11", TODAY))
    assert row.mark == Change(arrow, tone)


@pytest.mark.parametrize(("cards", "latest"), [
    ([], LatestScore(note=ScoreNote.never)),
    ([Scorecard("2026-Q3", 89.4)], LatestScore(89.4, "2026-Q3", "2026-Q3", ScoreNote.scored)),
    # a review of a quarter without deliveries, made later, keeps the score earned before (the bug: it showed —)
    ([Scorecard("2026-Q3", 89.4), Scorecard("2026-Q4", None)],
     LatestScore(89.4, "2026-Q3", "2026-Q4", ScoreNote.earlier)),
    # a quarter reviewed late (after the next one) is not the latest
    ([Scorecard("2026-Q4", 70.0), Scorecard("2026-Q3", 90.0)],
     LatestScore(70.0, "2026-Q4", "2026-Q4", ScoreNote.scored)),
    ([Scorecard("2026-Q3", None), Scorecard("2026-Q4", None)],
     LatestScore(None, "", "2026-Q4", ScoreNote.unscored)),
])
def test_a_vendor_s_latest_score_is_the_newest_it_earned_or_says_why_there_is_none(
        cards: list[Scorecard], latest: LatestScore) -> None:
    assert latest_score(cards) == latest


@pytest.mark.parametrize(("newest", "scored", "latest"), [
    (None, None, LatestScore()),
    ("2026-Q4", None, LatestScore(None, "", "2026-Q4", ScoreNote.unscored)),
    ("2026-Q4", Scorecard("2026-Q3", 89.4), LatestScore(89.4, "2026-Q3", "2026-Q4", ScoreNote.earlier)),
    ("2026-Q4", Scorecard("2026-Q4", 70.0), LatestScore(70.0, "2026-Q4", "2026-Q4", ScoreNote.scored)),
])
def test_the_score_shown_from_the_newest_review_and_the_newest_score(
        newest: str | None, scored: Scorecard | None, latest: LatestScore) -> None:
    assert score_shown(newest, scored) == latest


@pytest.mark.parametrize(("newest", "scored", "note"), [
    (None, None, ScoreNote.never), ("2026-Q4", None, ScoreNote.unscored), ("2026-Q4", "2026-Q3", ScoreNote.earlier),
    ("2026-Q4", "2026-Q4", ScoreNote.scored)])
def test_the_note_beside_a_score(newest: str | None, scored: str | None, note: ScoreNote) -> None:
    assert score_note(newest, scored) == note


def test_the_headline_counts_approvals_apart_from_other_answers() -> None:
    requests_only = headline(Sections(latency=[LatencyRow("form", "drill_ack", 7, 0.5, 1.0, 0)]))
    assert (requests_only.answered_steps, requests_only.approvals_answered, requests_only.requests_answered) == \
        (7, 0, 7)
    assert requests_only.approval_median_hours is None and requests_only.request_median_hours == 0.5
    both = headline(Sections(latency=[LatencyRow("approval", "approval", 3, 2.0, 4.0, 0),
                                      LatencyRow("form", "attestation", 2, 8.0, 9.0, 0)]))
    assert (both.approvals_answered, both.requests_answered, both.approval_median_hours) == (3, 2, 2.0)
