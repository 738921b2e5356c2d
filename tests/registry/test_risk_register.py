from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from registry import (
    Person,
    RegistryValidationError,
    Risk,
    RiskCategory,
    RiskLevel,
    RiskMatrix,
    reset_engines,
    session,
)
from registry.db import get_engine
from registry.migrate import alembic_config
from registry.risk import DEFAULT_MATRIX
from tests.registry.test_migrations import test_the_migrations_build_exactly_the_schema_the_models_describe

RISK_TABLES = {"risk_matrix", "risk_level", "risk_category", "risk", "risk_control", "risk_indicator",
               "risk_assessment", "risk_rescore", "risk_acceptance"}


def _default_matrix() -> tuple[RiskMatrix, list[RiskLevel]]:
    with session() as db:
        matrix = db.exec(select(RiskMatrix).where(RiskMatrix.is_default)).one()
        levels = list(db.exec(select(RiskLevel).where(RiskLevel.matrix_id == matrix.id).order_by(RiskLevel.rank)))
    return matrix, levels


def test_a_new_registry_holds_the_default_5x5_matrix_as_data(any_db: str) -> None:
    matrix, levels = _default_matrix()
    assert matrix.code == DEFAULT_MATRIX
    assert matrix.likelihoods == ["Rare", "Unlikely", "Possible", "Likely", "Almost certain"]
    assert matrix.impacts == ["Insignificant", "Minor", "Moderate", "Major", "Severe"]
    assert matrix.cells[0][0] == "Low" and matrix.cells[4][4] == "Critical" and matrix.cells[2][2] == "Medium"
    assert [(lv.name, lv.rank) for lv in levels] == [("Low", 1), ("Medium", 2), ("High", 3), ("Critical", 4)]
    assert {cell for row in matrix.cells for cell in row} == {lv.name for lv in levels}
    # A Critical risk is reviewed more often than a Low one: monthly against yearly.
    cadence = {lv.name: lv.review_cadence for lv in levels}
    assert (cadence["Critical"], cadence["High"], cadence["Low"]) == ("0 9 1 * *", "0 9 1 1,4,7,10 *", "0 9 1 1 *")
    assert all(lv.colour.startswith("#") and len(lv.colour) == 7 for lv in levels)


def test_the_risk_migration_goes_down_to_0012_and_up_again_without_leftovers(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, "0012")
    reset_engines()
    with get_engine(any_db).connect() as connection:
        assert not set(sa.inspect(connection).get_table_names()) & RISK_TABLES
        if connection.dialect.name == "postgresql":
            enums = set(connection.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars())
            assert not enums & {"treatment", "acceptancestatus"}
    command.upgrade(config, "head")
    reset_engines()
    matrix, levels = _default_matrix()
    assert (matrix.code, len(levels)) == (DEFAULT_MATRIX, 4), "seeded once again, not twice"
    test_the_migrations_build_exactly_the_schema_the_models_describe(any_db)


def test_a_second_matrix_is_an_insert_and_risks_are_scored_within_their_own_matrix(registry_db: str) -> None:
    with session() as db:
        small = RiskMatrix(code="3x3", name="Three by three", likelihoods=["Low", "Medium", "High"],
                           impacts=["Low", "Medium", "High"],
                           cells=[["Green", "Green", "Amber"], ["Green", "Amber", "Red"], ["Amber", "Red", "Red"]])
        db.add(small)
        db.flush()
        db.add_all([RiskLevel(matrix_id=small.id or 0, name=name, rank=rank, colour=colour, review_cadence=cron)
                    for name, rank, colour, cron in (("Green", 1, "#00aa00", "0 9 1 1 *"),
                                                     ("Amber", 2, "#ffaa00", "0 9 1 1,7 *"),
                                                     ("Red", 3, "#aa0000", "0 9 1 * *"))])
        owner = Person(name="Rita Risk", email="rita@test.example")
        category = RiskCategory(code="OPS", name="Operational", appetite="Amber")
        db.add_all([owner, category])
        db.flush()
        db.add(Risk(code="R-1", title="Forklift collision", category_id=category.id or 0, owner_id=owner.id or 0,
                    matrix_id=small.id or 0, inherent_likelihood=3, inherent_impact=3, residual_likelihood=2,
                    residual_impact=2))
    with pytest.raises(RegistryValidationError, match="residual_impact"), session() as db:
        db.add(Risk(code="R-2", title="Too big for 3×3", category_id=category.id or 0, owner_id=owner.id or 0,
                    matrix_id=small.id or 0, inherent_likelihood=3, inherent_impact=3, residual_likelihood=1,
                    residual_impact=4))
    with session() as db:
        assert [r.code for r in db.exec(select(Risk))] == ["R-1"]


@pytest.mark.parametrize(("field", "value", "why"), [
    ("review_cadence", "every month", "cron"),
    ("colour", "red", "colour"),
    ("rank", 0, "lowest"),
])
def test_a_level_with_a_bad_cadence_colour_or_rank_is_refused(registry_db: str, field: str, value: object,
                                                                 why: str) -> None:
    matrix, _ = _default_matrix()
    level = {"matrix_id": matrix.id or 0, "name": "Extreme", "rank": 5, "colour": "#000000",
             "review_cadence": "0 9 * * 1", field: value}
    with pytest.raises(RegistryValidationError, match=why), session() as db:
        db.add(RiskLevel(**level))  # type: ignore[arg-type]


def test_a_matrix_whose_cells_do_not_fit_its_axes_is_refused(registry_db: str) -> None:
    with pytest.raises(RegistryValidationError, match="2 rows"), session() as db:
        db.add(RiskMatrix(code="bad", name="Bad", likelihoods=["a", "b"], impacts=["x", "y"], cells=[["L", "L"]]))
