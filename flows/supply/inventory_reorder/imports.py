"""What `ops import inventory` accepts: stock per SKU and location, each item bought from a vendor by its code."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field
from sqlmodel import col

from engine.importer import ImportKind, reference_by_code, register_kind, row_without, table_of
from registry import InventoryItem, Vendor


class InventoryRow(BaseModel):
    sku: str = Field(min_length=1)
    location: str = Field(min_length=1)
    description: str = ""
    on_hand: int = Field(ge=0)
    reorder_point: int = Field(ge=0)
    reorder_qty: int = Field(gt=0)
    lead_time_days: int = Field(7, ge=0)
    unit_cost: Decimal = Field(ge=0, max_digits=14, decimal_places=4)
    vendor_code: str = Field(min_length=1)


INVENTORY = register_kind(ImportKind(
    name="inventory", row_model=InventoryRow, table=table_of(InventoryItem), natural_key=("sku", "location"),
    to_record=row_without("vendor_code"),
    references=reference_by_code("vendor_code", col(Vendor.code), col(Vendor.id), into="vendor_id",
                                 missing="no such vendor; import vendors first"),
    multiline=frozenset({"description"}),
    description="sku,location,description,on_hand,reorder_point,reorder_qty,lead_time_days,unit_cost,vendor_code"))
