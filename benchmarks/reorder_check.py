"""The daily reorder check over a large inventory: the flow's selection against the same selection in raw SQL.

    .venv/bin/python benchmarks/reorder_check.py [--items 100000] [--repeat 41] [--postgres URL]
    .venv/bin/python benchmarks/reorder_check.py --smoke     # 1,000 items, 3 rounds: seconds, ratio not judged

Generates the inventory (Core insert executemany) in a throw-away SQLite registry migrated like any other —
and, given --postgres (a URL like postgresql+psycopg://postgres@127.0.0.1:55432/ops_test), in a fresh database
created on that server and dropped afterwards. About 5% of the items are at or below their reorder point; some of
those are already on open purchase requests (fully or partly covering them), some on rejected or received ones
(which must not count). Then, alternating, it times `select_reorder_lines` — exactly what the flow's selection
task runs, typed rows and order quantities included — against one hand-written SQL query returning the same rows,
order quantities computed in SQL by the same rule, through the bare DB-API cursor; checks both give the same
orders, prints the median of each, their ratio against the 1.2× target, and the query plans
showing the partial index `ix_inventory_at_or_below_reorder` at work.
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
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="ops-reorder-bench-"))
# Prefect (imported with the flow module) reads its home when first imported; keep it out of the user's.
os.environ.update({"PREFECT_HOME": str(WORK / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "OPS_DATA_DIR": str(WORK / "data")})
sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

from benchmarks._postgres import throwaway_database  # noqa: E402
from benchmarks._table import Row, print_rows  # noqa: E402
from flows.supply.inventory_reorder.rules import order_quantity  # noqa: E402
from flows.supply.inventory_reorder.tasks import reorder_statement, select_reorder_lines  # noqa: E402
from registry import InventoryItem, Person, PurchaseRequest, PurchaseRequestLine, Vendor, get_engine  # noqa: E402
from registry.clock import utcnow  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

PARTIAL_INDEX = "ix_inventory_at_or_below_reorder"
TARGET_RATIO = 1.2
AT_OR_BELOW = 0.05
VENDORS = 250
OPEN = ("pending_approval", "approved", "ordered")

# The same selection as the flow's statement, written by hand, and the same order quantity (the rule of
# flows/supply/inventory_reorder/rules.py: the reorder quantity, topped up to one above the reorder point when
# that would not lift the position on hand plus on order above it), computed by the database.
RAW_SQL = """
SELECT i.id, i.vendor_id, i.on_hand, COALESCE(o.qty, 0) AS open_qty, i.reorder_point,
       CASE WHEN i.reorder_qty > i.reorder_point - i.on_hand - COALESCE(o.qty, 0) THEN i.reorder_qty
            ELSE i.reorder_point - i.on_hand - COALESCE(o.qty, 0) + 1 END AS quantity,
       i.unit_cost
FROM inventory_item AS i
LEFT JOIN (SELECT l.item_id, SUM(l.quantity) AS qty
           FROM purchase_request_line AS l JOIN purchase_request AS r ON r.id = l.request_id
           WHERE r.status IN ('pending_approval', 'approved', 'ordered')
           GROUP BY l.item_id) AS o ON o.item_id = i.id
WHERE i.on_hand <= i.reorder_point AND i.on_hand + COALESCE(o.qty, 0) <= i.reorder_point
ORDER BY i.vendor_id, i.id
"""


def ours_lines(engine: sa.Engine) -> list[Any]:
    """The flow's selection in a session of its own, as its task runs it."""
    with Session(engine) as db:
        return select_reorder_lines(db)


def raw_rows(engine: sa.Engine) -> list[Any]:
    """RAW_SQL's rows through a pooled connection's bare DB-API cursor, as the flow's selection reads its own."""
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(RAW_SQL)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def same_orders(lines: list[Any], rows: list[Any]) -> bool:
    """The flow's lines and the raw query's rows name the same items in the same order, with the same open and
    order quantities and costs (SQLite's driver returns the cost as a float: compared to the cent)."""
    def cost(value: Any) -> Decimal:
        return value if isinstance(value, Decimal) else Decimal(f"{value:.2f}")

    return [(*line[:6], cost(line[6])) for line in lines] == [(*row[:6], cost(row[6])) for row in rows]


@dataclass
class Generated:
    items: int
    at_or_below: int
    on_open_requests: int
    expected: dict[int, tuple[int, int]]  # item id → (open quantity, quantity to order)


def generate(engine: sa.Engine, items: int, seed: int = 20261125) -> Generated:
    """The inventory, vendors and purchase requests, inserted set-wise; what the selection must return."""
    rnd = random.Random(seed)
    with engine.begin() as db:
        db.execute(sa.insert(Person), [{"name": "Pia Planner", "email": "pia@bench.example", "channels": [],
                                        "timezone": "UTC", "active": True, "roles": ["inventory_planner"]}])
        owner = db.execute(sa.select(Person.id)).scalar_one()  # type: ignore[call-overload]
        db.execute(sa.insert(Vendor), [
            {"code": f"V{n:04d}", "name": f"Vendor {n}", "owner_id": owner, "contact_id": None, "standing": "approved",
             "review_cadence": "0 7 1 1,4,7,10 *", "active": True} for n in range(VENDORS)])
        vendor_ids = list(db.execute(sa.select(Vendor.id)).scalars())  # type: ignore[call-overload]
        rows = []
        for n in range(items):
            point = rnd.randint(5, 200)
            low = rnd.random() < AT_OR_BELOW
            rows.append({"sku": f"SKU-{n:07d}", "location": rnd.choice(("MAIN", "LEEDS", "BRISTOL")),
                         "description": f"Item {n}", "on_hand": rnd.randint(0, point) if low else
                         rnd.randint(point + 1, point * 6), "reorder_point": point,
                         "reorder_qty": rnd.randint(10, 400), "lead_time_days": 7,
                         "unit_cost": Decimal(rnd.randint(50, 250_000)) / 100, "vendor_id": rnd.choice(vendor_ids)})
        for start in range(0, len(rows), 20_000):
            db.execute(sa.insert(InventoryItem), rows[start:start + 20_000])
        table = InventoryItem.__table__  # type: ignore[attr-defined]
        low_items = db.execute(sa.select(table.c.id, table.c.vendor_id, table.c.on_hand, table.c.reorder_point,
                                         table.c.reorder_qty).where(table.c.on_hand <= table.c.reorder_point)
                               .order_by(table.c.id)).all()  # ordered: the same draws on both engines
        open_qty = _requests(db, rnd, owner, low_items)
    expected = {}
    for item_id, _vendor, on_hand, point, reorder_qty in low_items:
        quantity = order_quantity(on_hand=on_hand, open_qty=open_qty.get(item_id, 0), reorder_point=point,
                                  reorder_qty=reorder_qty)
        if quantity:
            expected[item_id] = (open_qty.get(item_id, 0), quantity)
    return Generated(items=items, at_or_below=len(low_items), on_open_requests=len(open_qty), expected=expected)


def _requests(db: sa.Connection, rnd: random.Random, owner: int, low_items: list[Any]) -> dict[int, int]:
    """A third of the low items on open requests (most covered, some partly), a tenth on closed ones."""
    statuses = [*OPEN, "rejected", "received"]
    lines: dict[str, list[tuple[int, int]]] = {status: [] for status in statuses}
    open_qty: dict[int, int] = {}
    for item_id, _vendor, on_hand, point, _qty in low_items:
        draw = rnd.random()
        if draw < 1 / 3:
            short = point - on_hand + 1
            quantity = short if rnd.random() < 0.8 else max(1, short // 2)  # covering, or only partly
            lines[rnd.choice(OPEN)].append((item_id, quantity))
            open_qty[item_id] = open_qty.get(item_id, 0) + quantity
        elif draw < 1 / 3 + 0.1:
            lines[rnd.choice(("rejected", "received"))].append((item_id, 10_000))
    for status, own in lines.items():
        for start in range(0, len(own), 50):  # requests of 50 lines, as a day's vendor requests might be
            key = f"bench-{status}-{start}"
            request_id = db.execute(sa.insert(PurchaseRequest).values(
                key=key, vendor_id=1, requester_id=owner, amount=Decimal(0), status=status, approvers=[],
                approved_levels=0, decision_note="", created_at=utcnow())
                .returning(PurchaseRequest.__table__.c.id)).scalar_one()  # type: ignore[attr-defined]
            db.execute(sa.insert(PurchaseRequestLine), [
                {"request_id": request_id, "item_id": item_id, "quantity": quantity, "unit_cost": Decimal(1)}
                for item_id, quantity in own[start:start + 50]])
    return open_qty


def _plan(engine: sa.Engine, sql: str) -> list[str]:
    with engine.connect() as db:
        if engine.dialect.name == "sqlite":
            return [f"{row[3]}" for row in db.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
        return [row[0] for row in db.exec_driver_sql(f"EXPLAIN {sql}")]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


MISMATCHES: list[str] = []
ROWS: list[Row] = []  # the figures of every database run, printed as one table at the end


def run(label: str, engine: sa.Engine, items: int, repeat: int) -> bool:
    started = time.perf_counter()
    data = generate(engine, items)
    with engine.begin() as db:
        db.exec_driver_sql("ANALYZE")  # statistics, as on any database that has been in use for a while
    print(f"\n{label}: {data.items:,} items generated in {time.perf_counter() - started:.1f} s; "
          f"{data.at_or_below:,} at or below their reorder point, {data.on_open_requests:,} of them on open "
          f"requests; {len(data.expected):,} to order")

    flow_sql = str(reorder_statement().compile(engine, compile_kwargs={"literal_binds": True}))
    for name, sql in (("flow's statement", flow_sql), ("raw SQL", RAW_SQL)):
        plan = _plan(engine, sql)
        used = "uses" if any(PARTIAL_INDEX in step for step in plan) else "DOES NOT use"
        print(f"  plan of the {name} ({used} {PARTIAL_INDEX}):")
        print("\n".join(f"    {step}" for step in plan))

    ours: list[float] = []
    raw: list[float] = []
    lines: list[Any] = []
    rows: list[Any] = []
    for _ in range(repeat + 1):  # the first round warms caches (pages, statement cache) and is not counted
        # Each side from taking its connection from the pool to giving it back, as the flow's task pays it.
        took, lines = _timed(lambda: ours_lines(engine))
        ours.append(took)
        took, rows = _timed(lambda: raw_rows(engine))
        raw.append(took)
    got = {line.item_id: (line.open_qty, line.quantity) for line in lines}
    same = got == data.expected and same_orders(lines, rows)
    if not same:
        MISMATCHES.append(label)
    flow_ms, raw_ms = statistics.median(ours[1:]), statistics.median(raw[1:])
    ratio = flow_ms / raw_ms
    print(f"  result: {len(lines):,} lines from the flow's selection, {len(rows):,} rows from raw SQL — "
          f"{'the same items, open quantities and order quantities as generated' if same else 'MISMATCH'}")
    print(f"  median of {repeat}: flow's selection {flow_ms:.1f} ms, raw SQL {raw_ms:.1f} ms, ratio {ratio:.2f}× — "
          f"target ≤ {TARGET_RATIO:.1f}× {'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    ROWS.append(Row(f"reorder selection over {items:,} items, {engine.dialect.name}: ours vs raw SQL", flow_ms,
                    raw_ms, "ms", note=f"target ≤ {TARGET_RATIO:.1f}"))
    return same and ratio <= TARGET_RATIO


def _sqlite(items: int, repeat: int) -> bool:
    import sqlite3

    path = WORK / "registry.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return run(f"SQLite {sqlite3.sqlite_version} (scratch file, removed afterwards)", get_engine(url), items, repeat)


def _postgres(admin_url: str, items: int, repeat: int) -> bool:
    with throwaway_database(admin_url) as url:
        engine = get_engine(url)
        upgrade(url)
        with engine.connect() as db:
            version = db.exec_driver_sql("SHOW server_version").scalar()
        name = sa.make_url(url).database
        return run(f"PostgreSQL {version} (database {name}, dropped afterwards)", engine, items, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="inventory items to generate (default 100,000)")
    parser.add_argument("--repeat", type=int, default=41, help="timed repetitions of each query (default 41: "
                        "a round takes ~20 ms, and more rounds hold the median steady on a busy machine)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (a fresh database)")
    parser.add_argument("--smoke", action="store_true", help="1,000 items and 3 rounds: seconds, figures meaningless")
    args = parser.parse_args()
    if args.smoke:
        args.items, args.repeat = 1_000, 3
    print("Reorder check: the flow's selection (select_reorder_lines) against one raw SQL query")
    try:
        ok = _sqlite(args.items, args.repeat)
        if args.postgres:
            ok = _postgres(args.postgres, args.items, args.repeat) and ok
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print()
    print_rows(ROWS)
    if args.smoke:  # a tiny table's timings say nothing; the result must still be right
        ok = not MISMATCHES
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
