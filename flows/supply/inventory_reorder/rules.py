"""The inventory reorder's rule: how much of an item to order. Plain functions, no Prefect, no database."""

from __future__ import annotations


def order_quantity(on_hand: int, open_qty: int, reorder_point: int, reorder_qty: int) -> int:
    """How many to order for an item; 0 when stock plus what is already on order is above the reorder point.

    Normally the item's reorder quantity. When even that would leave the inventory position (on hand plus open
    plus this order) at or below the reorder point — a reorder quantity set too small, or a sudden draw-down —
    the order is topped up to one unit above the point: otherwise tomorrow's run would find the same item
    still due and order it again, a day later, for the same need.

    Positional parameters and no `max()`: the reorder calls it for each of thousands of items due, where a call
    by keyword costs twice the rule itself.
    """
    short = reorder_point - on_hand - open_qty + 1  # what lifts the position one above the point
    if short <= 0:
        return 0
    return reorder_qty if reorder_qty >= short else short
