"""Errors the registry raises when a write is refused."""

from __future__ import annotations

from typing import Any


class RegistryValidationError(ValueError):
    """A write refused because one field holds a bad value; names the entity, the field and the value."""

    def __init__(self, entity: str, field: str, value: Any, reason: str) -> None:
        self.entity = entity
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{entity}.{field} = {value!r}: {reason}")
