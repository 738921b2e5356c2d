"""What the procurement manager answers from a link: the engine's approval form, one step per change of standing,
and what its page shows of the change beside it."""

from __future__ import annotations

from typing import Any

from engine.forms import Approval
from registry import Person, Vendor, VendorScorecard

FORMS = (Approval,)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def standing_change_details(vendor: Vendor, card: VendorScorecard, owner: Person | None) -> dict[str, Any]:
    """The facts of one proposed change, shown on its approval page."""
    return {"vendor": f"{vendor.name} ({vendor.code})", "owner": owner.name if owner else "",
            "period": card.period, "deliveries": card.deliveries, "score": card.score,
            "on-time rate": _percent(card.on_time_rate), "fill rate": _percent(card.fill_rate),
            "defect rate": _percent(card.defect_rate), "price variance": _percent(card.price_variance),
            "current standing": card.standing_before.value, "proposed standing": card.standing_proposed.value}
