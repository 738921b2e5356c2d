"""The variance pack's charts: per cost centre, each account's budget, actuals and commitments for the year to date.

Drawn with matplotlib's object API on the Agg canvas (no pyplot: no global figure state, safe in task threads) and
returned as PNG bytes, which the pack embeds: one HTML file reads the same in a browser, in print and as the
sign-off page's attachment (which loads nothing from elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.charts import png
from flows.finance.budget_variance.rules import INCOME, Variance

_DPI = 160
_WIDTH_INCHES = 10.4  # the landscape A4 text width at the pack's margins, less the room beside the chart
_ROW_INCHES, _EXTRA_INCHES = 0.36, 0.62
_INK, _MUTED, _GRID = "#1d2733", "#5b6775", "#e3e7ec"
BUDGET, ACTUAL, COMMITTED, OVER = "#adb5bd", "#1d4e89", "#f59f00", "#c92a2a"
_STYLE: dict[Any, Any] = {
    "font.family": "sans-serif", "font.sans-serif": ["Liberation Sans", "DejaVu Sans"], "font.size": 8,
    "axes.edgecolor": _GRID, "axes.labelcolor": _MUTED, "xtick.color": _MUTED, "ytick.color": _INK,
    "axes.spines.top": False, "axes.spines.right": False,
}
_LEFT, _RIGHT, _TOP, _BOTTOM = 1.55, 0.25, 0.34, 0.3  # inches: account names, legend, value axis


def _compact(value: float, _position: object = None) -> str:
    """An axis label of a few characters (12k, 1.2M), so the fixed margin always holds it."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


def _label(v: Variance) -> str:
    return f"{v.line.account} (income)" if v.line.kind == INCOME else v.line.account


def cost_centre(lines: Sequence[Variance]) -> bytes | None:
    """One cost centre's accounts, top to bottom: the year-to-date budget (grey) against the actuals (blue) with
    what is committed stacked on them (amber); the actuals drawn in red where unfavourable (an expense's actuals and
    commitments over its budget, an income short of it). None when the cost centre has no figure at all."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    shown = [v for v in lines if v.line.budget_ytd or v.line.actual_ytd or v.committed]
    if not shown:
        return None
    height = _ROW_INCHES * len(shown) + _EXTRA_INCHES
    rows = list(range(len(shown)))[::-1]  # the first account at the top
    budget = [float(v.line.budget_ytd) for v in shown]
    actual = [float(v.line.actual_ytd) for v in shown]
    committed = [float(v.committed) for v in shown]
    # Unfavourable: an expense whose actuals and commitments pass its budget, an income short of it.
    over = [v.line.actual_ytd < v.line.budget_ytd if v.line.kind == INCOME
            else v.line.actual_ytd + v.committed > v.line.budget_ytd for v in shown]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(_WIDTH_INCHES, height), dpi=_DPI, facecolor="white")
        figure.subplots_adjust(left=_LEFT / _WIDTH_INCHES, right=1 - _RIGHT / _WIDTH_INCHES,
                               top=1 - _TOP / height, bottom=_BOTTOM / height)
        ax = figure.subplots()
        thick = 0.36
        ax.barh([r + thick / 2 for r in rows], budget, height=thick, color=BUDGET, zorder=2)
        ax.barh([r - thick / 2 for r in rows], actual, height=thick, zorder=2,
                color=[OVER if o else ACTUAL for o in over])
        ax.barh([r - thick / 2 for r in rows], committed, left=actual, height=thick, color=COMMITTED, zorder=2)
        ax.set_yticks(rows, [_label(v) for v in shown])
        ax.tick_params(axis="y", length=0, labelsize=8)
        ax.tick_params(axis="x", labelsize=7, length=2)
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        ax.grid(axis="x", color=_GRID, lw=0.6, zorder=0)
        ax.set_ylim(-0.6, len(shown) - 0.4)
        ax.legend(handles=[Patch(color=BUDGET, label="Budget, year to date"),
                           Patch(color=ACTUAL, label="Actual"), Patch(color=OVER, label="Actual, unfavourable"),
                           Patch(color=COMMITTED, label="Committed (approved, not invoiced)")],
                  loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, frameon=False, fontsize=7,
                  handlelength=1.2, borderaxespad=0.2)
        return png(figure)
