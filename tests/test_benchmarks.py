"""Every benchmark runs at its tiny size (`--smoke`) and prints its figures, so none can break unseen.

The scripts are found as `make bench` finds them (benchmarks/_table.py: every benchmarks/*.py not named `_*`,
unless it declares `BENCHMARK = False`), so a new benchmark is tested without being listed here, and one that
does not take `--smoke` fails. Figures are never asserted: only that the script exits 0 and printed at least one
`figure | ours | baseline | ratio` row. The scripts run side by side (three at a time) to keep the whole under a
minute; each gets an environment without the test session's OPS_ and PREFECT_ settings, so none touches the
registry or Prefect server the other tests use.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks import _table

SCRIPTS = _table.discover()
# One script: the two topology benchmarks take one to two minutes on a busy 2-core machine, over three when it is
# very busy (191 s seen); a limit only stops a hung one, so it has room.
SMOKE_TIMEOUT = 300.0
SIDE_BY_SIDE = 3
# The first test's setup runs every script (the module fixture): the per-test timeout must cover all of them.
_ALL_SCRIPTS_SECONDS = SMOKE_TIMEOUT * (len(SCRIPTS) // SIDE_BY_SIDE + 1) + 60

pytestmark = [pytest.mark.slow,  # several start a Prefect server of their own
              pytest.mark.timeout(_ALL_SCRIPTS_SECONDS)]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[_table.Outcome, Path]]:
    folder = tmp_path_factory.mktemp("bench-smoke")

    def one(script: Path) -> tuple[_table.Outcome, Path]:
        table = folder / f"{script.stem}.jsonl"
        return _table.run(script, ["--smoke"], table, echo=False, timeout=SMOKE_TIMEOUT), table

    with ThreadPoolExecutor(max_workers=SIDE_BY_SIDE) as pool:
        return dict(zip((s.stem for s in SCRIPTS), pool.map(one, SCRIPTS), strict=True))


def test_the_benchmarks_are_found() -> None:
    names = {s.stem for s in SCRIPTS}
    assert {"operations_report", "approval_latency", "reorder_check"} <= names
    assert not any(name.startswith("_") for name in names)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.stem)
def test_a_benchmark_runs_at_its_smoke_size_and_prints_its_table(
        script: Path, smoke_runs: dict[str, tuple[_table.Outcome, Path]]) -> None:
    outcome, table = smoke_runs[script.stem]
    assert outcome.returncode == 0, (f"{script.name} --smoke exited {outcome.returncode} after "
                                     f"{outcome.seconds:.0f} s; it printed last:\n{outcome.tail}")
    assert outcome.rows, f"{script.name} --smoke printed no `figure | ours | baseline | ratio` row"
    for figure, ours, baseline, _ratio in outcome.rows:
        assert figure and ours and baseline
    if table.exists():  # rows printed through _table.print_rows were also written where make bench reads them
        written = [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines()]
        assert all(row["script"] == script.stem and row["figure"] for row in written)


def test_the_table_reads_plain_rows_and_leaves_out_headers_and_prose() -> None:
    text = "\n".join(["figure | ours | baseline | ratio", "  enqueue, empty outbox | 1.30 ms | 1.20 ms | 1.08×",
                      "drill (msg/s) | 123 | 128 | 0.96 target ≥ 0.9 met", "a | b | c | d", "just prose"])
    assert _table.parse_rows(text) == [("enqueue, empty outbox", "1.30 ms", "1.20 ms", "1.08×"),
                                       ("drill (msg/s)", "123", "128", "0.96 target ≥ 0.9 met")]


def test_a_script_can_opt_out_of_being_run_as_a_benchmark(tmp_path: Path) -> None:
    generator, benchmark, private = tmp_path / "year.py", tmp_path / "bench.py", tmp_path / "_helper.py"
    generator.write_text('"""A generator."""\nBENCHMARK = False\n')
    benchmark.write_text('"""A benchmark."""\nimport sys\n')
    private.write_text("")
    assert [_table.is_benchmark(p) for p in (generator, benchmark, private)] == [False, True, False]
