"""The monthly budget variance: budget, actual and committed per line, owners' justifications, the signed-off pack."""

from engine.processes import Process, Section
from flows.finance.budget_variance.calendar import obligations
from flows.finance.budget_variance.forms import BudgetJustification
from flows.finance.budget_variance.imports import ACTUALS, BUDGET_LINES, COST_CENTRES
from flows.finance.budget_variance.section import build

SECTION = Section(key="budget", title="Budget", template="finance/budget_variance/report_section.html", build=build)

PROCESS = Process(name="budget-variance", title="Monthly budget variance", actor="budget-variance",
                  forms=(BudgetJustification,), imports=(COST_CENTRES, BUDGET_LINES, ACTUALS),
                  obligations=obligations, demo="budget", sections=(SECTION,))
