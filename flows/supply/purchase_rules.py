"""A purchase request's own rules, shared by the processes that handle one (the reorder creates requests, the
approval decides them): its amount to the cent, whether it would take its cost centre over budget, and who must
approve it. Plain functions, no Prefect, no database."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol, TypeVar

CENT = Decimal("0.01")
DIRECTOR_ROLE = "director"  # the Director of Operations: large spend, and spend beyond a budget


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


@dataclass(frozen=True)
class Breach:
    """How far a purchase request would take its cost centre over its budget for the year.

    `amount` is where the cost centre would stand after the request: its overrun of the year's budget, i.e. the
    request's amount less what remained before it. When the cost centre was already over, that includes the
    earlier overrun: it is the position the cost centre's owner accepts by approving, not just this request's
    share. `pct` is that overrun in percent points of the cost centre's full-year budget (the figure the budget
    pack reports against), not of what remained: what remains can be nil or negative, the budget is the fixed base.
    None when the cost centre has no budget for the year, where any spend is unbudgeted.
    """

    amount: Decimal
    pct: float | None
    remaining: Decimal
    budget: Decimal


@dataclass(frozen=True)
class Budget:
    """A cost centre's budget for the year and what remained of it (budget − actuals to date − committed)."""

    budget: Decimal
    remaining: Decimal


def breach(amount: Decimal, budget: Budget) -> Breach | None:
    """The breach of a request of `amount` against `budget`, or None when what remains covers it (exactly too)."""
    if amount <= 0 or amount <= budget.remaining:
        return None
    over = (amount - budget.remaining).quantize(CENT, rounding=ROUND_HALF_UP)
    pct = round(float(over / budget.budget * 100), 2) if budget.budget > 0 else None
    return Breach(amount=over, pct=pct, remaining=budget.remaining, budget=budget.budget)


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Checked:
    """One request checked against its cost centre's budget: what remained before it, and its breach if any."""

    remaining: Decimal
    breach: Breach | None


def check_charges(charges: Iterable[tuple[K | None, Decimal]], budgets: Mapping[K, Budget]) -> list[Checked | None]:
    """Each of one run's requests, given as (cost centre, amount) in the order they are raised, checked.

    Each request is checked against what the ones before it in the run left: two requests that each fit but
    together do not, the second is over budget. Every request raised counts, awaiting approval or not: if both
    are approved, both are spent. A request charged to no cost centre (None), or to one missing from `budgets`,
    is not checked (None).
    """
    left = dict(budgets)
    found: list[Checked | None] = []
    for cost_centre, amount in charges:
        if cost_centre is None or cost_centre not in left:
            found.append(None)
            continue
        budget = left[cost_centre]
        found.append(Checked(remaining=budget.remaining, breach=breach(amount, budget)))
        left[cost_centre] = Budget(budget.budget, budget.remaining - amount)
    return found


@dataclass(frozen=True)
class BudgetHolder:
    """Who answers for a cost centre's budget: its owner, and who stands in for them (the cost centre's manager,
    else the owner's manager) when the owner is missing, inactive, or the requester."""

    cost_centre: str
    owner_id: int | None
    stand_in_id: int | None


def budget_approver(holder: BudgetHolder, requester: Requester) -> int:
    """Who approves a breach of `holder`'s budget: the owner, or their stand-in; refused, naming the cost centre,
    when neither can (nobody approves their own request)."""
    for candidate in (holder.owner_id, holder.stand_in_id):
        if candidate is not None and candidate != requester.id:
            return candidate
    raise ApprovalChainError(f"cost centre {holder.cost_centre} has no owner or manager other than {requester.name} "
                             "to approve a purchase request over its budget; set its owner or manager")


def approval_chain(amount: Decimal, requester: Requester, auto_limit: Decimal, director_limit: Decimal, *,
                   director_id: int | None, over_budget: BudgetHolder | None = None) -> list[int]:
    """The people who must approve a request of `amount`, in order; [] means approved without asking.

    Up to `auto_limit` inclusive: nobody. Above it: the requester's manager. Above `director_limit`: the manager,
    then the Director of Operations. A request over its cost centre's budget (`over_budget`, the cost centre's
    holder) is never approved without asking: its chain gains the cost centre's owner (budget_approver) and
    always ends with the Director, who signs off spend the budget did not provide for — manager (if above the
    auto limit), owner, Director. A person is asked once even if they hold two roles, at the later one, so the
    owner still comes before the Director (a requester who reports to the director). Nobody approves their own
    request, so a chain that would include the requester is refused.
    """
    if auto_limit < 0 or director_limit < auto_limit:
        raise ApprovalChainError(f"limits must satisfy 0 <= auto limit ({auto_limit}) <= director limit "
                                 f"({director_limit})")
    if amount <= auto_limit and over_budget is None:
        return []
    roles: list[int] = []
    if amount > auto_limit:
        if requester.manager_id is None:
            raise ApprovalChainError(f"{requester.name} has no manager to approve a purchase request of {amount} "
                                     f"(above the auto-approval limit of {auto_limit})")
        roles.append(requester.manager_id)
    if over_budget is not None:
        roles.append(budget_approver(over_budget, requester))
    director_reason = (f"above the director limit of {director_limit}" if amount > director_limit
                       else f"over the budget of cost centre {over_budget.cost_centre}" if over_budget else None)
    if director_reason is not None:
        if director_id is None:
            raise ApprovalChainError(f"nobody has the director role to approve a purchase request of {amount} "
                                     f"({director_reason})")
        roles.append(director_id)
    chain = [person for at, person in enumerate(roles) if person not in roles[at + 1:]]
    if requester.id in chain:
        raise ApprovalChainError(f"{requester.name} would have to approve their own purchase request of {amount}; "
                                 "someone else must request it")
    return chain


def readable_money(value: Decimal) -> Decimal:
    """To the cent for reading, unless a unit cost really has finer precision (stored with four places)."""
    cents = value.quantize(CENT)
    return cents if cents == value else value.normalize()
