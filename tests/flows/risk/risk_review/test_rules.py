from __future__ import annotations

from datetime import date

import pytest

from flows.risk.risk_review.rules import (
    Acceptance,
    Level,
    Matrix,
    Plotted,
    Scored,
    Scores,
    above_appetite,
    acceptance_state,
    acceptance_valid,
    changed,
    heat_map,
    kri_breached,
    level_of,
    levels_of,
    move,
    rescore_problems,
)

LEVELS = (Level("Low", 1, "#2e7d32", "0 9 1 1 *"), Level("Medium", 2, "#f9a825", "0 9 1 1,7 *"),
          Level("High", 3, "#ef6c00", "0 9 1 1,4,7,10 *"), Level("Critical", 4, "#c62828", "0 9 1 * *"))
L, M, H, C = "Low", "Medium", "High", "Critical"
FIVE = Matrix("5x5", ("Rare", "Unlikely", "Possible", "Likely", "Almost certain"),
              ("Insignificant", "Minor", "Moderate", "Major", "Severe"),
              ((L, L, L, L, M), (L, L, M, M, H), (L, M, M, H, H), (L, M, H, H, C), (M, H, H, C, C)), LEVELS)
# A second matrix is data too: three by four, its own level names and ranks.
SMALL = Matrix("3x4", ("Low", "Medium", "High"), ("Small", "Medium", "Large", "Huge"),
               (("Green", "Green", "Amber", "Amber"), ("Green", "Amber", "Amber", "Red"),
                ("Amber", "Amber", "Red", "Red")),
               (Level("Green", 1, "#00aa00", "0 9 1 1 *"), Level("Amber", 2, "#ffaa00", "0 9 1 1,7 *"),
                Level("Red", 3, "#aa0000", "0 9 1 * *")))


@pytest.mark.parametrize(("matrix", "likelihood", "impact", "level"), [
    (FIVE, 1, 1, "Low"), (FIVE, 1, 5, "Medium"), (FIVE, 5, 1, "Medium"), (FIVE, 3, 3, "Medium"),
    (FIVE, 3, 4, "High"), (FIVE, 4, 4, "High"), (FIVE, 5, 4, "Critical"), (FIVE, 5, 5, "Critical"),
    (SMALL, 1, 4, "Amber"), (SMALL, 2, 4, "Red"), (SMALL, 3, 1, "Amber"),
])
def test_the_level_of_a_score_is_read_from_the_matrix_data(matrix: Matrix, likelihood: int, impact: int,
                                                            level: str) -> None:
    assert level_of(matrix, likelihood, impact).name == level


@pytest.mark.parametrize(("likelihood", "impact"), [(0, 1), (1, 0), (6, 1), (1, 6)])
def test_a_score_off_the_matrix_is_an_error_not_a_guess(likelihood: int, impact: int) -> None:
    with pytest.raises(ValueError, match="off matrix 5x5"):
        level_of(FIVE, likelihood, impact)


def test_inherent_and_residual_levels_come_together() -> None:
    assert [lv.name for lv in levels_of(FIVE, Scores(5, 5, 2, 3))] == ["Critical", "Medium"]


@pytest.mark.parametrize(("level", "appetite", "above"), [
    ("Low", "Medium", False), ("Medium", "Medium", False), ("High", "Medium", True), ("Critical", "High", True),
    ("Critical", "Critical", False), ("Medium", "Low", True),
])
def test_above_appetite_compares_ranks_not_names(level: str, appetite: str, above: bool) -> None:
    assert above_appetite(level, appetite, LEVELS) is above


def test_an_appetite_no_level_of_the_matrix_has_is_an_error() -> None:
    with pytest.raises(ValueError, match="no level 'Amber'"):
        above_appetite("High", "Amber", LEVELS)
    assert above_appetite("Red", "Amber", SMALL.levels)


@pytest.mark.parametrize(("value", "threshold", "when", "breached"), [
    (96.0, 95.0, "above", True), (95.0, 95.0, "above", False), (94.9, 95.0, "above", False),
    (89.0, 90.0, "below", True), (90.0, 90.0, "below", False), (91.0, 90.0, "below", False),
    (-1.0, 0.0, "below", True),
])
def test_a_kri_breaches_only_beyond_its_threshold_on_its_side(value: float, threshold: float, when: str,
                                                               breached: bool) -> None:
    assert kri_breached(value, threshold, when) is breached


def test_a_kri_direction_other_than_above_or_below_is_an_error() -> None:
    with pytest.raises(ValueError, match="'above' or 'below'"):
        kri_breached(1.0, 0.0, "over")


def _scored(likelihood: int, impact: int) -> Scored:
    return Scored(likelihood, impact, level_of(FIVE, likelihood, impact))


@pytest.mark.parametrize(("before", "after", "by_level", "by_score", "levels", "points"), [
    ((3, 3), (4, 4), "up", "up", 1, 7),  # Medium 9 → High 16
    ((4, 4), (3, 3), "down", "down", -1, -7),
    ((3, 4), (4, 3), "same", "same", 0, 0),  # High 12 → High 12, another cell
    ((3, 4), (4, 4), "same", "up", 0, 4),  # High 12 → High 16: worse within its level
    ((1, 5), (2, 2), "down", "down", -1, -1),  # Medium 5 → Low 4
    ((2, 3), (1, 5), "same", "down", 0, -1),  # Medium 6 → Medium 5
])
def test_a_move_is_read_by_level_and_by_score(before: tuple[int, int], after: tuple[int, int], by_level: str,
                                              by_score: str, levels: int, points: int) -> None:
    moved = move(_scored(*before), _scored(*after))
    assert (moved.by_level, moved.by_score, moved.levels, moved.points) == (by_level, by_score, levels, points)


def test_a_risk_without_an_assessment_before_is_new() -> None:
    moved = move(None, _scored(2, 2))
    assert (moved.by_level, moved.by_score) == ("new", "new")


def test_the_heat_map_places_each_risk_in_its_cell_with_counts_and_colours() -> None:
    grid = heat_map([Plotted("R-2", 5, 5, "up"), Plotted("R-1", 5, 5, "same"), Plotted("R-3", 1, 1, "down"),
                     Plotted("R-4", 3, 4, None)], FIVE)
    assert (len(grid.rows), [len(row) for row in grid.rows]) == (5, [5] * 5)
    top_right, bottom_left = grid.rows[0][4], grid.rows[4][0]
    assert (top_right.likelihood, top_right.impact, top_right.level, top_right.colour) == (5, 5, "Critical",
                                                                                            "#c62828")
    assert (top_right.codes, top_right.moves, top_right.count) == (("R-1", "R-2"), ("same", "up"), 2)
    assert (bottom_left.likelihood, bottom_left.impact, bottom_left.codes) == (1, 1, ("R-3",))
    assert grid.rows[2][3].codes == ("R-4",) and grid.rows[2][3].level == "High"
    assert grid.by_level == {"Low": 1, "Medium": 0, "High": 1, "Critical": 2} and grid.total == 4
    assert sum(cell.count for row in grid.rows for cell in row) == 4
    assert grid.likelihoods[-1] == "Almost certain" and grid.impacts[0] == "Insignificant"


def test_an_empty_heat_map_still_draws_every_cell_of_another_matrix() -> None:
    grid = heat_map([], SMALL)
    assert [[cell.level for cell in row] for row in grid.rows] == [
        ["Amber", "Amber", "Red", "Red"], ["Green", "Amber", "Amber", "Red"], ["Green", "Green", "Amber", "Amber"]]
    assert grid.by_level == {"Green": 0, "Amber": 0, "Red": 0}


def test_a_risk_off_the_matrix_is_refused_by_the_heat_map_naming_it() -> None:
    with pytest.raises(ValueError, match="R-9"):
        heat_map([Plotted("R-9", 4, 1)], SMALL)


TODAY = date(2026, 12, 1)


@pytest.mark.parametrize(("status", "for_assessment", "until", "state"), [
    ("accepted", 7, date(2027, 3, 31), "valid"),
    ("accepted", 7, TODAY, "valid"),  # its last day still holds
    ("accepted", 7, date(2026, 11, 30), "expired"),
    ("accepted", 6, date(2027, 3, 31), "rescored"),  # given for the state before the last re-score
    ("pending", 7, None, "undecided"),
    ("voided", 7, date(2027, 3, 31), "not_accepted"),
    ("treating", 7, None, "not_accepted"),
    ("expired", 7, date(2026, 11, 1), "not_accepted"),
])
def test_an_acceptance_holds_only_for_the_assessment_it_was_given_for_and_until_its_date(
        status: str, for_assessment: int, until: date | None, state: str) -> None:
    acceptance = Acceptance(status, for_assessment, until)
    assert acceptance_state(acceptance, current_assessment_id=7, today=TODAY) == state
    assert acceptance_valid(acceptance, 7, TODAY) is (state == "valid")


CURRENT = Scores(4, 4, 3, 3)


@pytest.mark.parametrize(("new", "rationale", "problems"), [
    (CURRENT, "", []),  # confirming needs no rationale
    (Scores(4, 4, 2, 3), "Badge readers fitted", []),
    (Scores(4, 4, 2, 3), "  ", [("rationale", "rationale_required")]),
    (Scores(5, 4, 3, 3), "", [("rationale", "rationale_required")]),  # an inherent change too
    (Scores(6, 4, 3, 3), "why", [("inherent_likelihood", "off_scale")]),
    (Scores(4, 0, 3, 0), "why", [("inherent_impact", "off_scale"), ("residual_impact", "off_scale")]),
    (Scores(3, 4, 4, 3), "why", [("residual_likelihood", "residual_above_inherent")]),
    (Scores(4, 2, 3, 3), "", [("residual_impact", "residual_above_inherent"), ("rationale", "rationale_required")]),
])
def test_a_rescore_needs_a_rationale_for_any_change_and_scores_on_the_matrix(
        new: Scores, rationale: str, problems: list[tuple[str, str]]) -> None:
    assert rescore_problems(CURRENT, new, rationale, FIVE) == problems


def test_a_rescore_on_a_smaller_matrix_is_held_to_its_own_axes() -> None:
    assert rescore_problems(Scores(3, 4, 2, 2), Scores(3, 5, 2, 2), "bigger", SMALL) == [
        ("inherent_impact", "off_scale")]


@pytest.mark.parametrize(("previous", "new", "result"), [
    (None, CURRENT, True), (CURRENT, CURRENT, False), (CURRENT, Scores(4, 4, 3, 2), True)])
def test_an_assessment_is_changed_when_any_score_differs_from_the_one_before(
        previous: Scores | None, new: Scores, result: bool) -> None:
    assert changed(previous, new) is result
