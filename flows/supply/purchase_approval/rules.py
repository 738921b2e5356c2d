"""The purchase approval's rules: which level decides next, where a decision leaves the request, the reason a
requester is given. Plain functions, no Prefect, no database. A request's amount and chain are the supply
domain's (flows/supply/purchase_rules.py): the reorder computes them too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flows.supply.purchase_rules import (
    CENT,
    ApprovalChainError,
    Requester,
    approval_chain,
    line_amount,
    readable_money,
    request_amount,
)

__all__ = ["CENT", "ApprovalChainError", "Requester", "after_decision", "approval_chain", "line_amount",
           "next_level", "readable_money", "rejection_reason", "request_amount"]


def next_level(*, pending: bool, approved_levels: int, levels: int) -> int | None:
    """The level (from 1) waiting for a decision, or None once the chain is decided either way."""
    return approved_levels + 1 if pending and approved_levels < levels else None


Settled = Literal["next level", "approved", "rejected"]


def after_decision(*, approved: bool, level: int, levels: int) -> Settled:
    """Where a decision at `level` leaves the request: one rejection (or lapse) stops the chain; the last
    approval completes it."""
    if not approved:
        return "rejected"
    return "approved" if level == levels else "next level"


def rejection_reason(*, answered: bool, comment: str, approver: str, expires_at: datetime | None,
                     outcome: str) -> str:
    """The reason the requester is given; an approver who let the deadline pass is a reason too."""
    if answered:
        return comment.strip()
    return f"{approver} did not decide by {expires_at:%Y-%m-%d %H:%M} UTC (step {outcome})."
