"""The approver's link page in a real browser: every line of the request listed, every amount in the
organisation's currency and locale.

Real parts: the reorder raising the request, the approval's own ask task, the SMTP catcher, the link gateway over
HTTP and headless Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from engine.settings import get_settings
from flows.supply.inventory_reorder.flow import inventory_reorder
from flows.supply.purchase_approval.tasks import ask_approver
from tests import browser
from tests.conftest import Gateway, Mailbox
from tests.flows.supply.purchasing import approval_link, low_item, organisation, purchase_requests

NBSP = "\xa0"
# What the organisation's settings make of the same request: its total, a unit cost and the first line's quantity.
SHOWN = {("GBP", "en_GB"): ("£13,230.00", "£130.00", "£0.3333", "100"),
         ("EUR", "de_DE"): (f"13.230,00{NBSP}€", f"130,00{NBSP}€", f"0,3333{NBSP}€", "100")}


@pytest.fixture(params=list(SHOWN), ids=lambda p: "-".join(p))
def organisation_format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    currency, locale = request.param
    monkeypatch.setenv("OPS_CURRENCY", currency)
    monkeypatch.setenv("OPS_LOCALE", locale)
    get_settings.cache_clear()
    yield currency, locale
    get_settings.cache_clear()


@pytest.mark.browser
def test_the_approval_page_lists_the_lines_with_amounts_in_the_organisations_currency(
        organisation_format: tuple[str, str], prefect_api: str, gateway: Gateway, smtp: Mailbox,
        tmp_path: Path) -> None:
    total, unit_cost, fine_cost, quantity = SHOWN[organisation_format]
    org = organisation()
    items = [low_item(org.vendor, qty=100, unit_cost="130.00"),  # 13,000
             low_item(org.vendor, qty=30, unit_cost="0.3333"),  # 10.00, a unit cost held to four places
             low_item(org.vendor, qty=11, unit_cost="20.00")]  # 220
    inventory_reorder()
    [request] = purchase_requests()
    ask_approver.fn(request.id or 0, 1, 2)
    url = approval_link(smtp, org.manager)

    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.goto(url)
        expect(page.locator("h1")).to_contain_text(total)
        expect(page.locator("#details")).to_contain_text(total)
        assert page.get_by_text("Lines 3").count() == 0
        lines = page.locator("#details-lines")
        headers = lines.locator("thead th").all_inner_texts()
        assert headers == ["SKU", "Description", "Quantity", "Unit cost", "Amount"]
        rows = [row.locator("td").all_inner_texts() for row in lines.locator("tbody tr").all()]
        assert [r[0] for r in rows] == sorted(i.sku for i in items)
        by_sku = {r[0]: r for r in rows}
        assert by_sku[items[0].sku][2:] == [quantity, unit_cost, total.replace("13,230", "13,000")
                                            .replace("13.230", "13.000")]
        assert by_sku[items[1].sku][3] == fine_cost
        # Figures are right-aligned, as in the messages.
        assert lines.locator("tbody tr").first.locator("td").nth(4).evaluate(
            "e => getComputedStyle(e).textAlign") == "right"
        page.screenshot(path=f"/tmp/purchase-approval-link-page-{'-'.join(organisation_format)}.png",
                        full_page=True)
