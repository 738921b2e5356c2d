"""The registry's values a Run form offers as dropdowns (engine.parameters.OneOf names one of SOURCES).

Apart from engine.parameters, which imports Prefect: `ops serve` hashes these values into the deployments'
versions before the Prefect server answers, and must not import Prefect to do so (engine.deployments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def _frameworks(db: Any) -> list[str]:
    from sqlmodel import col, select

    from registry import Framework

    return list(db.exec(select(Framework.name).order_by(col(Framework.name))))


def _facilities(db: Any) -> list[str]:
    from sqlmodel import col, select

    from registry import Facility

    return list(db.exec(select(Facility.code).where(col(Facility.active).is_(True)).order_by(col(Facility.code))))


def _drill_kinds(db: Any) -> list[str]:
    from sqlmodel import col, select

    from registry import DrillProgram

    return list(db.exec(select(DrillProgram.kind).distinct().order_by(col(DrillProgram.kind))))


def _risks(db: Any) -> list[str]:
    from sqlmodel import col, select

    from registry import Risk

    return list(db.exec(select(Risk.code).where(col(Risk.active).is_(True)).order_by(col(Risk.code))))


def _risk_categories(db: Any) -> list[str]:
    from sqlmodel import col, select

    from registry import RiskCategory

    return list(db.exec(select(RiskCategory.code).order_by(col(RiskCategory.code))))


# What a OneOf can name: registry tables, never a process (a process only points at one).
SOURCES: dict[str, Callable[[Any], list[str]]] = {
    "framework": _frameworks, "facility": _facilities, "drill kind": _drill_kinds,
    "risk": _risks, "risk category": _risk_categories,
}


def choices() -> dict[str, list[str]]:
    """Every source's values in the registry now; {} when the registry cannot be read (the fields stay free text,
    and the flow still refuses an unknown value when it runs)."""
    from sqlalchemy.exc import SQLAlchemyError

    from registry import session

    try:
        with session() as db:
            return {name: read(db) for name, read in SOURCES.items()}
    except (SQLAlchemyError, OSError):
        return {}


def choices_fingerprint(known: dict[str, list[str]]) -> str:
    """What the registered forms' dropdowns were built from: a deployment is registered again when it changes."""
    return hashlib.sha256(json.dumps(known, sort_keys=True).encode()).hexdigest()[:16]
