"""The risk review's rules: plain functions on plain data, no Prefect, no database.

A matrix comes in as data (`Matrix`, built from registry.risk.RiskMatrix and its levels by register.matrices):
scores are 1-based positions on its axes, `cells[likelihood - 1][impact - 1]` names a level, and levels compare
by rank (1 = the lowest). Nothing here knows how many levels or which names a matrix has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Direction = Literal["up", "down", "same", "new"]
"""A move: worse (up), better (down), unchanged, or a risk with no assessment before this one (new)."""
AcceptanceState = Literal["valid", "undecided", "not_accepted", "rescored", "expired"]
SCORES = ("inherent_likelihood", "inherent_impact", "residual_likelihood", "residual_impact")


@dataclass(frozen=True)
class Level:
    name: str
    rank: int
    colour: str
    review_cadence: str


@dataclass(frozen=True)
class Matrix:
    code: str
    likelihoods: tuple[str, ...]
    impacts: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    levels: tuple[Level, ...]
    """Lowest rank first."""

    def level(self, name: str) -> Level:
        for level in self.levels:
            if level.name == name:
                return level
        raise ValueError(f"matrix {self.code} has no level {name!r}; its levels: "
                         f"{', '.join(lv.name for lv in self.levels)}")

    def on_scale(self, likelihood: int, impact: int) -> bool:
        return 1 <= likelihood <= len(self.likelihoods) and 1 <= impact <= len(self.impacts)


@dataclass(frozen=True)
class Scores:
    """A risk's four scores, as stored on the risk and on each of its assessments."""

    inherent_likelihood: int
    inherent_impact: int
    residual_likelihood: int
    residual_impact: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.inherent_likelihood, self.inherent_impact, self.residual_likelihood, self.residual_impact)


def score(likelihood: int, impact: int) -> int:
    """The product the heat map's bands follow; it orders risks within one level."""
    return likelihood * impact


def level_of(matrix: Matrix, likelihood: int, impact: int) -> Level:
    """The level of a (likelihood, impact) on `matrix`; a score off its axes is an error, not a guess."""
    if not matrix.on_scale(likelihood, impact):
        raise ValueError(f"({likelihood}, {impact}) is off matrix {matrix.code}'s scale "
                         f"({len(matrix.likelihoods)} likelihoods × {len(matrix.impacts)} impacts)")
    return matrix.level(matrix.cells[likelihood - 1][impact - 1])


def levels_of(matrix: Matrix, scores: Scores) -> tuple[Level, Level]:
    """(inherent level, residual level)."""
    return (level_of(matrix, scores.inherent_likelihood, scores.inherent_impact),
            level_of(matrix, scores.residual_likelihood, scores.residual_impact))


def above_appetite(level: str, appetite: str, levels: Sequence[Level]) -> bool:
    """Whether a residual `level` ranks above the category's `appetite` (the highest level it accepts)."""
    ranks = {lv.name: lv.rank for lv in levels}
    for name in (level, appetite):
        if name not in ranks:
            raise ValueError(f"no level {name!r} among {', '.join(ranks)}")
    return ranks[level] > ranks[appetite]


def kri_breached(value: float, threshold: float, breach_when: str) -> bool:
    """A measurement beyond its threshold on the breaching side; exactly at the threshold is no breach."""
    if breach_when == "above":
        return value > threshold
    if breach_when == "below":
        return value < threshold
    raise ValueError(f"breach_when is 'above' or 'below', not {breach_when!r}")


@dataclass(frozen=True)
class Scored:
    """One side of a risk scored: its likelihood, impact and the level they give on its matrix."""

    likelihood: int
    impact: int
    level: Level

    @property
    def score(self) -> int:
        return score(self.likelihood, self.impact)


@dataclass(frozen=True)
class Move:
    by_level: Direction
    by_score: Direction
    levels: int
    """How many ranks it moved (+ worse, − better)."""
    points: int
    """How much its likelihood × impact moved."""


def _direction(change: int) -> Direction:
    return "up" if change > 0 else "down" if change < 0 else "same"


def move(previous: Scored | None, current: Scored) -> Move:
    """How a risk moved from its previous assessment to this one: by level (rank) and by score."""
    if previous is None:
        return Move("new", "new", 0, 0)
    levels, points = current.level.rank - previous.level.rank, current.score - previous.score
    return Move(_direction(levels), _direction(points), levels, points)


@dataclass(frozen=True)
class Plotted:
    """A risk as a heat map places it: its code, one side's scores, and its move since the last review."""

    code: str
    likelihood: int
    impact: int
    move: Direction | None = None


@dataclass(frozen=True)
class HeatCell:
    likelihood: int
    impact: int
    level: str
    colour: str
    codes: tuple[str, ...] = ()
    moves: tuple[Direction | None, ...] = ()
    """Each code's move, in the same order as `codes`."""

    @property
    def count(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class HeatMap:
    likelihoods: tuple[str, ...]
    impacts: tuple[str, ...]
    rows: tuple[tuple[HeatCell, ...], ...]
    """Highest likelihood first (the top row as a heat map is drawn), impacts left to right, lowest first."""
    by_level: dict[str, int] = field(default_factory=dict)
    """How many risks sit in each level, every level of the matrix named (lowest first), zeros included."""

    @property
    def total(self) -> int:
        return sum(self.by_level.values())


def heat_map(risks: Iterable[Plotted], matrix: Matrix) -> HeatMap:
    """The grid of `matrix` with each risk's code in its cell (codes sorted), counts and each cell's colour."""
    placed: dict[tuple[int, int], list[Plotted]] = {}
    for risk in risks:
        if not matrix.on_scale(risk.likelihood, risk.impact):
            raise ValueError(f"{risk.code}: ({risk.likelihood}, {risk.impact}) is off matrix {matrix.code}'s scale")
        placed.setdefault((risk.likelihood, risk.impact), []).append(risk)
    by_level = {lv.name: 0 for lv in matrix.levels}
    rows = []
    for likelihood in range(len(matrix.likelihoods), 0, -1):
        row = []
        for impact in range(1, len(matrix.impacts) + 1):
            level = level_of(matrix, likelihood, impact)
            here = sorted(placed.get((likelihood, impact), []), key=lambda r: r.code)
            by_level[level.name] += len(here)
            row.append(HeatCell(likelihood, impact, level.name, level.colour, tuple(r.code for r in here),
                                tuple(r.move for r in here)))
        rows.append(tuple(row))
    return HeatMap(matrix.likelihoods, matrix.impacts, tuple(rows), by_level)


@dataclass(frozen=True)
class Acceptance:
    """What the validity of an acceptance depends on (registry.risk.RiskAcceptance's values as plain data)."""

    status: str
    assessment_id: int
    accepted_until: date | None


def acceptance_state(acceptance: Acceptance, current_assessment_id: int, today: date) -> AcceptanceState:
    """Whether an acceptance still covers the risk: accepted, for the scored state the risk is in now, and not past
    its last day (`accepted_until` is the last day it holds)."""
    if acceptance.status == "pending":
        return "undecided"
    if acceptance.status != "accepted":
        return "not_accepted"
    if acceptance.assessment_id != current_assessment_id:
        return "rescored"
    if acceptance.accepted_until is None or acceptance.accepted_until < today:
        return "expired"
    return "valid"


def acceptance_valid(acceptance: Acceptance, current_assessment_id: int, today: date) -> bool:
    return acceptance_state(acceptance, current_assessment_id, today) == "valid"


RescoreProblem = Literal["off_scale", "residual_above_inherent", "rationale_required"]


def rescore_problems(current: Scores, new: Scores, rationale: str, matrix: Matrix) -> list[tuple[str, RescoreProblem]]:
    """What is wrong with re-scoring `current` as `new`, as (field, problem) pairs; none for a valid answer.

    Every score lies on the matrix's axes; the residual is no worse than the inherent on either axis (controls do
    not make a risk likelier or larger); any change needs a rationale, while confirming the scores needs none.
    """
    problems: list[tuple[str, RescoreProblem]] = []
    for name, value in zip(SCORES, new.as_tuple(), strict=True):
        top = len(matrix.likelihoods) if name.endswith("likelihood") else len(matrix.impacts)
        if not 1 <= value <= top:
            problems.append((name, "off_scale"))
    if new.residual_likelihood > new.inherent_likelihood:
        problems.append(("residual_likelihood", "residual_above_inherent"))
    if new.residual_impact > new.inherent_impact:
        problems.append(("residual_impact", "residual_above_inherent"))
    if new != current and not rationale.strip():
        problems.append(("rationale", "rationale_required"))
    return problems


def changed(previous: Scores | None, new: Scores) -> bool:
    """Whether an assessment changes any score of the one before it (the first one always does)."""
    return previous is None or previous != new
