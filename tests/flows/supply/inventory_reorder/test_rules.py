from __future__ import annotations

import pytest

from flows.supply.inventory_reorder.rules import order_quantity


@pytest.mark.parametrize(
    ("on_hand", "open_qty", "reorder_point", "reorder_qty", "expected"),
    [
        (11, 0, 10, 50, 0),   # above the point: nothing
        (10, 0, 10, 50, 50),  # exactly at the point: the reorder quantity
        (3, 0, 10, 50, 50),
        (3, 7, 10, 50, 50),   # stock plus open orders exactly at the point: still due
        (3, 8, 10, 50, 0),    # open orders already lift it above the point
        (0, 0, 100, 20, 101),  # the reorder quantity would leave it at or below: topped up to one above
        (0, 0, 20, 20, 21),   # exactly back to the point is not enough either
        (0, 0, 19, 20, 20),   # one above the point: the reorder quantity suffices
        (-5, 0, 10, 5, 16),   # back-orders count as negative stock
        (2, 0, 10, 0, 9),     # no reorder quantity configured: just enough to clear the point
    ],
)
def test_order_quantity(on_hand: int, open_qty: int, reorder_point: int, reorder_qty: int, expected: int) -> None:
    quantity = order_quantity(on_hand=on_hand, open_qty=open_qty, reorder_point=reorder_point,
                              reorder_qty=reorder_qty)
    assert quantity == expected
    if quantity:
        assert on_hand + open_qty + quantity > reorder_point, "tomorrow's run must not order it again"
