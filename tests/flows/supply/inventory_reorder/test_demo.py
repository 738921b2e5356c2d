"""The demo's first reorder, on a registry as `ops init` seeds it: Acme's request goes over the warehouse's budget
and asks Ian's manager, the warehouse's owner, then the Director — the over-budget story a new user tries."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlmodel import col, select

from engine.deployments import PROJECT_ROOT
from flows.supply.inventory_reorder.flow import inventory_reorder
from registry import CostCentre, Person, PurchaseRequest, Vendor, session
from tests.conftest import Mailbox


def test_the_demos_acme_reorder_is_over_the_warehouse_budget(prefect_api: str, smtp: Mailbox) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "init"], cwd=PROJECT_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    inventory_reorder()
    with session() as db:
        acme, centre = db.exec(select(PurchaseRequest, CostCentre)
                               .join(Vendor, col(Vendor.id) == PurchaseRequest.vendor_id)
                               .join(CostCentre, col(CostCentre.id) == PurchaseRequest.cost_centre_id)
                               .where(Vendor.code == "ACME")).one()
        emails = {p.id: p.email for p in db.exec(select(Person))}
    assert centre.code == "WH" and acme.over_budget_amount is not None and acme.over_budget_amount > 0
    assert [emails[i] for i in acme.approvers] == [
        "paula.procurement@demo.example", "will.warehouse@demo.example", "dora.director@demo.example"]
    told = [m for m in smtp.wait_for(1, to="ian.inventory@demo.example")
            if m.subject.startswith("Purchase request over budget") and acme.key in m.subject]
    assert len(told) == 1 and "cost centre WH (Warehouse and logistics)" in told[0].text
    # The demo's requests ordered before today (committed in the budget) are not ordered again.
    orders = [m.subject for m in smtp.messages() if m.subject.startswith("Purchase order")]
    assert orders and all(acme.key[-10:] in subject for subject in orders), orders
