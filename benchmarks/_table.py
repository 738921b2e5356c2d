"""One way to report a benchmark's figures, and the runner that prints every benchmark's figures as one table.

A benchmark prints one line per figure, `figure | ours | baseline | ratio`, the baseline measured in the same run:

    from benchmarks._table import Row, print_rows
    print_rows([Row("enqueue, year of data", 1.4, 1.3, "ms")])

With OPS_BENCH_TABLE=<file> set, `print_rows` also appends each row to that file as a JSON line. The runner sets
it for every benchmark it starts, so a `make bench` ends with one table however many scripts ran:

    .venv/bin/python benchmarks/_table.py [--smoke] [--only NAME ...] [-- args for every script]

A benchmark is every `benchmarks/*.py` not named `_*.py`, unless it declares `BENCHMARK = False` at module level
(a data generator, say); each must accept `--smoke` (a tiny size, seconds, figures meaningless) — tests/
test_benchmarks.py runs them so. A script that prints its rows plainly instead of through `print_rows` is read
from its output: the runner collects every line of that shape either way.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
PROJECT_ROOT = BENCHMARKS.parent
TABLE_ENV = "OPS_BENCH_TABLE"
HEADER = ("figure", "ours", "baseline", "ratio")
# `figure | ours | baseline | ratio…`: ours and baseline start with a number (a unit may follow).
_ROW = re.compile(r"^\s*(?P<figure>[^|]+?)\s+\|\s+(?P<ours>[-+]?\d[^|]*?)\s+\|\s+(?P<baseline>[-+]?\d[^|]*?)"
                  r"\s+\|\s+(?P<ratio>\S.*?)\s*$")


@dataclass(frozen=True)
class Row:
    figure: str
    ours: float
    baseline: float
    unit: str = "s"
    note: str = ""  # the target, or which way is better: shown after the ratio

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else math.inf

    def cells(self) -> tuple[str, str, str, str]:
        ratio = f"{self.ratio:.2f}×" + (f" ({self.note})" if self.note else "")
        return self.figure, _amount(self.ours, self.unit), _amount(self.baseline, self.unit), ratio


def _amount(value: float, unit: str) -> str:
    if not unit and float(value).is_integer():  # a count: 0, not 0.000
        return f"{int(value):,}"
    size = abs(value)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:,.{digits}f} {unit}".rstrip()


def row_line(cells: Sequence[str]) -> str:
    return " | ".join(cells)


def print_rows(rows: Iterable[Row], *, script: str | None = None) -> None:
    """Print `figure | ours | baseline | ratio` per row (under a header), and append them to $OPS_BENCH_TABLE."""
    rows = list(rows)
    print(row_line(HEADER))
    for row in rows:
        print(row_line(row.cells()))
    sys.stdout.flush()
    target = os.environ.get(TABLE_ENV)
    if target:
        name = script or Path(sys.argv[0]).stem
        with open(target, "a", encoding="utf-8") as table:
            for row in rows:
                table.write(json.dumps({"script": name, **asdict(row), "ratio": row.ratio}) + "\n")


def parse_rows(text: str) -> list[tuple[str, str, str, str]]:
    """Every `figure | ours | baseline | ratio` line in a benchmark's output, header lines left out."""
    found = []
    for line in text.splitlines():
        match = _ROW.match(line)
        if match and match["figure"].strip().lower() != "figure":
            found.append((match["figure"], match["ours"], match["baseline"], match["ratio"]))
    return found


def is_benchmark(script: Path) -> bool:
    """A public script in benchmarks/ that does not opt out with a module-level `BENCHMARK = False`."""
    if script.name.startswith("_") or script.suffix != ".py":
        return False
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id == "BENCHMARK" for t in node.targets)):
            return bool(node.value.value)
    return True


def discover() -> list[Path]:
    return sorted(path for path in BENCHMARKS.glob("*.py") if is_benchmark(path))


def clean_environment(table: Path | None) -> dict[str, str]:
    """The caller's environment without its registry and Prefect settings: a benchmark builds its own, and must
    never write to the database a test session or a running stack points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "PREFECT_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if table is not None:
        env[TABLE_ENV] = str(table)
    return env


@dataclass
class Outcome:
    script: str
    returncode: int
    seconds: float
    rows: list[tuple[str, str, str, str]]
    tail: str = ""  # the last lines it printed: what a failing run said


def run(script: Path, args: Sequence[str], table: Path, *, echo: bool = True, timeout: float | None = None) -> Outcome:
    """Run one benchmark, its output passed through as it comes; its rows from the JSON file, else its output."""
    began = time.perf_counter()
    before = _json_rows(table)
    process = subprocess.Popen([sys.executable, str(script), *args], cwd=PROJECT_ROOT, env=clean_environment(table),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert process.stdout is not None
    # A benchmark that hangs silently is killed all the same: the read below then sees the end of its output.
    watchdog = threading.Timer(timeout, _stop, [process]) if timeout is not None else None
    if watchdog is not None:
        watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if process.poll() is None:
            _stop(process)
    written = [Row(str(r["figure"]), float(r["ours"]), float(r["baseline"]),  # type: ignore[arg-type]
                   str(r["unit"]), str(r["note"])).cells() for r in _json_rows(table)[len(before):]]
    rows = written or parse_rows("".join(lines))
    return Outcome(script.stem, returncode, time.perf_counter() - began, rows, "".join(lines[-40:]))


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the benchmark's group (each benchmark stops the servers it started on it), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
            return


def _json_rows(table: Path) -> list[dict[str, object]]:
    if not table.exists():
        return []
    return [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines() if line.strip()]


def print_table(outcomes: Sequence[Outcome]) -> None:
    """One table: every figure of every benchmark, then any benchmark that failed."""
    header = ("benchmark", *HEADER)
    body = [(o.script, *cells) for o in outcomes for cells in o.rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(line)
    for cells in body:
        print("  ".join(c.ljust(w) if i in (0, 1) else c.rjust(w) if i in (2, 3) else c
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip())
    for outcome in outcomes:
        if outcome.returncode != 0:
            print(f"FAILED: {outcome.script} exited with {outcome.returncode} after {outcome.seconds:.0f} s")
        elif not outcome.rows:
            print(f"NO FIGURES: {outcome.script} printed no `figure | ours | baseline | ratio` line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="every benchmark at its tiny size (seconds each)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these benchmarks (file names, no .py)")
    parser.add_argument("args", nargs="*", help="passed to every benchmark (after --)")
    options = parser.parse_args()
    scripts = [s for s in discover() if not options.only or s.stem in options.only]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="ops-bench-table-") as scratch:
        table = Path(scratch) / "rows.jsonl"
        for script in scripts:
            print(f"\n=== {script.stem} ===", flush=True)
            outcomes.append(run(script, [*(["--smoke"] if options.smoke else []), *options.args], table))
    print_table(outcomes)
    raise SystemExit(0 if all(o.returncode == 0 and o.rows for o in outcomes) else 1)


if __name__ == "__main__":
    main()
