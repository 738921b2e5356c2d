"""The operations report's charts as PNG files: images show in a browser, in the PDF and inline in e-mail alike.

Drawn with matplotlib's object API on the Agg canvas (no pyplot): no global figure state, nothing to close, safe in
task threads. Margins are fixed in inches rather than left to a layout engine: constrained layout measured every
label twice and drew the figure twice, more than half of a report's chart time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from engine.charts import png
from engine.periods import Period
from flows.reporting.operations_report.rules import AgeRow, KpiRow, Status, chart_window

KPI_TRENDS = "kpi-trends.png"
FINDINGS_AGE = "findings-age.png"

_DPI = 160
_WIDTH_INCHES = 7.4  # the A4 text width at the report's margins
_INK, _MUTED, _GRID, _BAND = "#1d2733", "#5b6775", "#e3e7ec", "#e7f0fa"
_LINE = "#1d4e89"
STATUS_COLOURS = {Status.met: "#2b8a3e", Status.missed: "#c92a2a", Status.no_data: "#868e96"}
_STYLE: dict[Any, Any] = {
    "font.family": "sans-serif", "font.sans-serif": ["Liberation Sans", "DejaVu Sans"], "font.size": 8,
    "axes.edgecolor": _GRID, "axes.labelcolor": _MUTED, "xtick.color": _MUTED, "ytick.color": _MUTED,
    "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 8.5, "axes.titleweight": "bold",
}
# Room around the KPI panels, in inches: a title and its verdict line above each, date labels below, value
# labels (at most five characters, see _compact) to the left, half a date label past the right edge.
_ABOVE, _BELOW, _LEFT, _RIGHT, _BETWEEN_COLUMNS = 0.36, 0.22, 0.42, 0.22, 0.5
_MOST_DATE_TICKS = 7
_ROW_INCHES, _GRID_EXTRA_INCHES = 1.6, 0.3


def _figure(height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(_WIDTH_INCHES, height), dpi=_DPI, facecolor="white")


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(figure))
    return path


def _nothing_at(path: Path) -> None:
    # A rebuild with less data must not mail or show the chart an earlier build left there.
    path.unlink(missing_ok=True)


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def _compact(value: float, _position: object = None) -> str:
    """An axis label of at most five characters, so the fixed left margin always holds it."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def _date_axis(ax: Any, first: date, last: date) -> None:
    """Month (or year) ticks at a fixed step: no more than _MOST_DATE_TICKS on the window."""
    from matplotlib.dates import DateFormatter, MonthLocator, YearLocator

    months = max(1, round((last - first).days / 30.44))
    step = math.ceil(months / _MOST_DATE_TICKS)
    if step <= 12:  # a step dividing the year keeps the same months labelled every year (Jan, Mar, May…)
        whole = 12 % step == 0
        ax.xaxis.set_major_locator(MonthLocator(range(1, 13, step)) if whole else MonthLocator(interval=step))
        ax.xaxis.set_major_formatter(DateFormatter("%b %y"))
    else:
        ax.xaxis.set_major_locator(YearLocator(base=math.ceil(step / 12)))
        ax.xaxis.set_major_formatter(DateFormatter("%Y"))


def _grid(charts: int) -> tuple[int, int, float]:
    """Columns, rows and the height in inches of the KPI grid: every row as tall as every other."""
    columns = 2 if charts > 1 else 1
    rows = math.ceil(charts / columns)
    return columns, rows, _ROW_INCHES * rows + _GRID_EXTRA_INCHES


def kpi_strips(kpis: Sequence[KpiRow]) -> list[tuple[float, float]]:
    """Each row of the KPI grid as the part of the one picture to show: how far down the picture the row starts
    and how tall it is, in per cent of the picture's width (CSS paddings and margins in per cent are of the
    width). The page shows the picture once per row, cropped to it, so a page can break between rows (a picture
    cannot break) while the file, the PDF and the e-mail hold one picture."""
    drawn = sum(bool(k.points) for k in kpis)
    if not drawn:
        return []
    _, rows, height = _grid(drawn)
    pitch = height / rows  # the margins of _ABOVE/_BELOW make every row's share of the height the same
    return [(100 * i * pitch / _WIDTH_INCHES, 100 * pitch / _WIDTH_INCHES) for i in range(rows)]


def kpi_trends(kpis: Sequence[KpiRow], period: Period, path: Path) -> Path | None:
    """One small chart per KPI with measurements: a year of them, the target dashed, the period shaded and its
    mean drawn across it in the status colour. None (and no file at `path`) when no KPI has a measurement."""
    import matplotlib
    from matplotlib.ticker import FuncFormatter

    drawn = [k for k in kpis if k.points]
    if not drawn:
        _nothing_at(path)
        return None
    columns, rows, height = _grid(len(drawn))
    first, last = chart_window(period)
    panel_height = (height - _ABOVE - _BELOW - (rows - 1) * (_ABOVE + _BELOW)) / rows
    panel_width = (_WIDTH_INCHES - _LEFT - _RIGHT - (columns - 1) * _BETWEEN_COLUMNS) / columns
    with matplotlib.rc_context(_STYLE):
        figure = _figure(height)
        axes = figure.subplots(rows, columns, squeeze=False, gridspec_kw={
            "left": _LEFT / _WIDTH_INCHES, "right": 1 - _RIGHT / _WIDTH_INCHES, "top": 1 - _ABOVE / height,
            "bottom": _BELOW / height, "hspace": (_ABOVE + _BELOW) / panel_height,
            "wspace": _BETWEEN_COLUMNS / panel_width})
        for index, kpi in enumerate(drawn):
            ax = axes[index // columns][index % columns]
            days = [d for d, _ in kpi.points]
            values = [v for _, v in kpi.points]
            ax.axvspan(period.start, period.end + timedelta(days=1), color=_BAND, zorder=0, lw=0)
            ax.axhline(kpi.spec.target, color=_MUTED, lw=1, ls=(0, (4, 3)), zorder=1)
            ax.plot(days, values, color=_LINE, lw=1.3, marker="o", ms=2.2, zorder=2)
            colour = STATUS_COLOURS[kpi.status]
            if kpi.value is not None:
                ax.hlines(kpi.value, period.start, period.end + timedelta(days=1), color=colour, lw=2.4, zorder=3)
            ax.set_xlim(first, last + timedelta(days=1))
            # With y given, matplotlib skips its title placement pass (a measure of every tick label).
            ax.set_title(f"{kpi.spec.name} ({kpi.spec.unit})", loc="left", color=_INK, pad=13, y=1)
            verdict = "no data" if kpi.value is None else f"{_number(kpi.value)}, {kpi.status.value}"
            ax.text(0, 1.03, f"this period {verdict} · target {_number(kpi.spec.target)}", color=colour,
                    fontsize=7, transform=ax.transAxes, va="bottom")
            ax.grid(axis="y", color=_GRID, lw=0.6)
            _date_axis(ax, first, last)
            ax.yaxis.set_major_formatter(FuncFormatter(_compact))
            ax.tick_params(labelsize=7, length=2)
        for index in range(len(drawn), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        return _save(figure, path)


def findings_by_age(ages: Sequence[AgeRow], path: Path) -> Path | None:
    """Open findings, open corrective actions and the overdue among them, per age bucket; None (and no file at
    `path`) when none is open."""
    import matplotlib

    if not any(a.findings or a.actions for a in ages):
        _nothing_at(path)
        return None
    series = (("Open findings", [a.findings for a in ages], "#e8590c"),
              ("Open corrective actions", [a.actions for a in ages], _LINE),
              ("of which overdue", [a.overdue for a in ages], "#c92a2a"))
    width = 0.26
    with matplotlib.rc_context(_STYLE):
        figure = _figure(2.3)
        # Room for the count labels and the axis title to the left, the bucket names below.
        figure.subplots_adjust(left=0.62 / _WIDTH_INCHES, right=1 - 0.1 / _WIDTH_INCHES, top=1 - 0.1 / 2.3,
                               bottom=0.3 / 2.3)
        ax = figure.subplots()
        for offset, (label, counts, colour) in enumerate(series):
            positions = [i + (offset - 1) * width for i in range(len(ages))]
            bars = ax.bar(positions, counts, width * 0.92, label=label, color=colour)
            ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], fontsize=7, color=_INK, padding=1)
        ax.set_xticks(range(len(ages)), [a.bucket for a in ages])
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("open items")
        ax.grid(axis="y", color=_GRID, lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(frameon=False, fontsize=7, loc="upper right")
        ax.margins(y=0.15)
        return _save(figure, path)
