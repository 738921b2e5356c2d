"""Checks every write must pass, whichever code path made it (mapper events, not form models)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from croniter import croniter
from sqlalchemy import event

from registry.compliance import Control
from registry.errors import RegistryValidationError
from registry.people import Person
from registry.risk import (
    BREACH_WHEN,
    DECISIONS,
    REASONS,
    Risk,
    RiskAcceptance,
    RiskAssessment,
    RiskIndicator,
    RiskLevel,
    RiskMatrix,
    RiskRescore,
)
from registry.supply import InventoryItem, Vendor

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def check_cron(entity: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise RegistryValidationError(entity, field, value, "not a valid cron expression (e.g. '0 7 1 */3 *')")


def check_channel(entity: str, field: str, value: Any) -> None:
    import apprise  # only where channels are written: it costs every flow process ~80 ms at start

    if not isinstance(value, str) or apprise.Apprise.instantiate(value, suppress_exceptions=True) is None:
        shown = value.split("://", 1)[0] + "://…" if isinstance(value, str) and "://" in value else value
        raise RegistryValidationError(entity, field, shown, "not a channel URL Apprise can deliver to")


def _validate_person(_mapper: Any, _conn: Any, person: Person) -> None:
    for url in person.channels or []:
        check_channel("Person", "channels", url)
    if not person.email or "@" not in person.email:
        raise RegistryValidationError("Person", "email", person.email, "not an e-mail address")


def _validate_control(_mapper: Any, _conn: Any, control: Control) -> None:
    if control.owner_id is None:
        raise RegistryValidationError("Control", "owner_id", control.ref, "every control needs an owner")
    check_cron("Control", "cadence", control.cadence)


def _validate_vendor(_mapper: Any, _conn: Any, vendor: Vendor) -> None:
    check_cron("Vendor", "review_cadence", vendor.review_cadence)


def _validate_item(_mapper: Any, _conn: Any, item: InventoryItem) -> None:
    for name in ("on_hand", "reorder_point", "reorder_qty", "lead_time_days"):
        value = getattr(item, name)
        if value is None or value < 0 or (name == "reorder_qty" and value == 0):
            raise RegistryValidationError("InventoryItem", name, value, "must be a positive whole number")


def _validate_matrix(_mapper: Any, _conn: Any, matrix: RiskMatrix) -> None:
    for axis in ("likelihoods", "impacts"):
        labels = getattr(matrix, axis)
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise RegistryValidationError("RiskMatrix", axis, labels, "must be a list of one or more labels")
    cells = matrix.cells
    if (not isinstance(cells, list) or len(cells) != len(matrix.likelihoods)
            or any(not isinstance(row, list) or len(row) != len(matrix.impacts)
                   or not all(isinstance(x, str) and x for x in row) for row in cells)):
        raise RegistryValidationError("RiskMatrix", "cells", matrix.code,
                                      f"must be {len(matrix.likelihoods)} rows (one per likelihood) of "
                                      f"{len(matrix.impacts)} level names (one per impact)")


def _validate_level(_mapper: Any, _conn: Any, level: RiskLevel) -> None:
    if not isinstance(level.colour, str) or not _COLOUR.match(level.colour):
        raise RegistryValidationError("RiskLevel", "colour", level.colour, "not a colour like '#c62828'")
    if not isinstance(level.rank, int) or level.rank < 1:
        raise RegistryValidationError("RiskLevel", "rank", level.rank, "must be 1 (the lowest) or more")
    check_cron("RiskLevel", "review_cadence", level.review_cadence)


def _check_scores(entity: str, row: Any, likelihoods: int | None = None, impacts: int | None = None) -> None:
    for name in ("inherent_likelihood", "inherent_impact", "residual_likelihood", "residual_impact"):
        value = getattr(row, name)
        top = likelihoods if name.endswith("likelihood") else impacts
        if not isinstance(value, int) or value < 1 or (top is not None and value > top):
            raise RegistryValidationError(entity, name, value, f"must be a score from 1 to {top or 'the axis end'}")


def _validate_risk(_mapper: Any, conn: Any, risk: Risk) -> None:
    from sqlalchemy import select

    axes = conn.execute(select(RiskMatrix.likelihoods, RiskMatrix.impacts)  # type: ignore[call-overload]
                        .where(RiskMatrix.id == risk.matrix_id)).first()
    if axes is None:
        raise RegistryValidationError("Risk", "matrix_id", risk.matrix_id, "no such risk matrix")
    _check_scores("Risk", risk, len(axes[0]), len(axes[1]))


def _validate_assessment(_mapper: Any, _conn: Any, assessment: RiskAssessment) -> None:
    _check_scores("RiskAssessment", assessment)
    if assessment.reason not in REASONS:
        raise RegistryValidationError("RiskAssessment", "reason", assessment.reason, f"not one of {REASONS}")


def _validate_rescore(_mapper: Any, _conn: Any, rescore: RiskRescore) -> None:
    if rescore.reason not in REASONS:
        raise RegistryValidationError("RiskRescore", "reason", rescore.reason, f"not one of {REASONS}")


def _validate_indicator(_mapper: Any, _conn: Any, indicator: RiskIndicator) -> None:
    if indicator.breach_when not in BREACH_WHEN:
        raise RegistryValidationError("RiskIndicator", "breach_when", indicator.breach_when,
                                      f"not one of {BREACH_WHEN}")


def _validate_acceptance(_mapper: Any, _conn: Any, acceptance: RiskAcceptance) -> None:
    if acceptance.decision is not None and acceptance.decision not in DECISIONS:
        raise RegistryValidationError("RiskAcceptance", "decision", acceptance.decision, f"not one of {DECISIONS}")


def install() -> None:
    checks: list[tuple[type, Callable[..., None]]] = [
        (Person, _validate_person), (Control, _validate_control), (Vendor, _validate_vendor),
        (InventoryItem, _validate_item), (RiskMatrix, _validate_matrix), (RiskLevel, _validate_level),
        (Risk, _validate_risk), (RiskAssessment, _validate_assessment), (RiskRescore, _validate_rescore),
        (RiskIndicator, _validate_indicator), (RiskAcceptance, _validate_acceptance),
    ]
    for kind in ("before_insert", "before_update"):
        for model, check in checks:
            if not event.contains(model, kind, check):
                event.listen(model, kind, check)
