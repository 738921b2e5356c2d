"""Checks every write must pass, whichever code path made it (mapper events, not form models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from croniter import croniter
from sqlalchemy import event

from registry.compliance import Control
from registry.errors import RegistryValidationError
from registry.people import Person
from registry.supply import InventoryItem, Vendor


def check_cron(entity: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise RegistryValidationError(entity, field, value, "not a valid cron expression (e.g. '0 7 1 */3 *')")


def check_channel(entity: str, field: str, value: Any) -> None:
    import apprise  # only where channels are written: it costs every flow process ~80 ms at start

    if not isinstance(value, str) or apprise.Apprise.instantiate(value, suppress_exceptions=True) is None:
        shown = value.split("://", 1)[0] + "://…" if isinstance(value, str) and "://" in value else value
        raise RegistryValidationError(entity, field, shown, "not a channel URL Apprise can deliver to")


def _validate_person(_mapper: Any, _conn: Any, person: Person) -> None:
    for url in person.channels or []:
        check_channel("Person", "channels", url)
    if not person.email or "@" not in person.email:
        raise RegistryValidationError("Person", "email", person.email, "not an e-mail address")


def _validate_control(_mapper: Any, _conn: Any, control: Control) -> None:
    if control.owner_id is None:
        raise RegistryValidationError("Control", "owner_id", control.ref, "every control needs an owner")
    check_cron("Control", "cadence", control.cadence)


def _validate_vendor(_mapper: Any, _conn: Any, vendor: Vendor) -> None:
    check_cron("Vendor", "review_cadence", vendor.review_cadence)


def _validate_item(_mapper: Any, _conn: Any, item: InventoryItem) -> None:
    for name in ("on_hand", "reorder_point", "reorder_qty", "lead_time_days"):
        value = getattr(item, name)
        if value is None or value < 0 or (name == "reorder_qty" and value == 0):
            raise RegistryValidationError("InventoryItem", name, value, "must be a positive whole number")


def install() -> None:
    checks: list[tuple[type, Callable[..., None]]] = [
        (Person, _validate_person), (Control, _validate_control), (Vendor, _validate_vendor),
        (InventoryItem, _validate_item),
    ]
    for kind in ("before_insert", "before_update"):
        for model, check in checks:
            if not event.contains(model, kind, check):
                event.listen(model, kind, check)
