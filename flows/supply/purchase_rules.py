"""A purchase request's own rules, shared by the processes that handle one (the reorder creates requests, the
approval decides them): its amount to the cent and who must approve it. Plain functions, no Prefect, no database."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

CENT = Decimal("0.01")


class ApprovalChainError(ValueError):
    """A purchase request that nobody can approve as configured; says who is missing."""


class Requester(Protocol):
    """What the chain needs of the person asking; a registry Person fits."""

    @property
    def id(self) -> int | None: ...

    @property
    def name(self) -> str: ...

    @property
    def manager_id(self) -> int | None: ...


def line_amount(quantity: int, unit_cost: Decimal) -> Decimal:
    return (quantity * unit_cost).quantize(CENT, rounding=ROUND_HALF_UP)


def request_amount(lines: Iterable[tuple[int, Decimal]]) -> Decimal:
    """Σ quantity × unit cost, to the cent; lines are (quantity, unit cost)."""
    return sum((line_amount(q, c) for q, c in lines), Decimal("0.00"))


def approval_chain(amount: Decimal, requester: Requester, auto_limit: Decimal, director_limit: Decimal, *,
                   director_id: int | None) -> list[int]:
    """The people who must approve a request of `amount`, in order; [] means approved without asking.

    Up to `auto_limit` inclusive: nobody. Above it: the requester's manager. Above `director_limit`: the manager,
    then the Director of Operations. A person is asked once even if they hold both roles (a requester who reports
    to the director). Nobody approves their own request, so a chain that would include the requester is refused.
    """
    if auto_limit < 0 or director_limit < auto_limit:
        raise ApprovalChainError(f"limits must satisfy 0 <= auto limit ({auto_limit}) <= director limit "
                                 f"({director_limit})")
    if amount <= auto_limit:
        return []
    if requester.manager_id is None:
        raise ApprovalChainError(f"{requester.name} has no manager to approve a purchase request of {amount} "
                                 f"(above the auto-approval limit of {auto_limit})")
    chain = [requester.manager_id]
    if amount > director_limit:
        if director_id is None:
            raise ApprovalChainError(f"nobody has the director role to approve a purchase request of {amount} "
                                     f"(above the director limit of {director_limit})")
        if director_id != requester.manager_id:
            chain.append(director_id)
    if requester.id in chain:
        raise ApprovalChainError(f"{requester.name} would have to approve their own purchase request of {amount}; "
                                 "someone else must request it")
    return chain


def readable_money(value: Decimal) -> Decimal:
    """To the cent for reading, unless a unit cost really has finer precision (stored with four places)."""
    cents = value.quantize(CENT)
    return cents if cents == value else value.normalize()
