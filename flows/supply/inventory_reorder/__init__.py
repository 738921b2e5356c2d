"""The daily inventory reorder: what is at or below its reorder point becomes one purchase request per vendor."""

from engine.processes import Process
from flows.supply.inventory_reorder.imports import INVENTORY

PROCESS = Process(name="inventory-reorder", title="Inventory reorder", actor="inventory-reorder",
                  imports=(INVENTORY,))
