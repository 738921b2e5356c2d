from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.templates import TemplateProblem, in_sentence, render_message, render_page


def _link(step_id: int) -> str:
    return f"https://gw.test/s/token-{step_id}"


def _context(timezone: str) -> dict[str, object]:
    return {"recipient": {"name": "Ann", "timezone": timezone},
            "audit": {"framework": "ISO", "period": "2026-Q4",
                      "evidence_due_at": datetime(2026, 12, 2, 17, tzinfo=UTC)},
            "controls": [{"ref": "AC-1", "title": "Access review", "step_id": 4}]}


@pytest.mark.parametrize(("timezone", "shown"), [("UTC", "17:00 UTC"), ("America/New_York", "12:00 EST"),
                                                  ("Asia/Tokyo", "02:00 JST")])
def test_deadlines_are_shown_in_the_recipients_time_zone(timezone: str, shown: str) -> None:
    message = render_message("compliance/audit/evidence_request", _context(timezone), _link)
    assert shown in message.text and shown in message.html


def test_links_appear_in_both_bodies() -> None:
    message = render_message("compliance/audit/evidence_request", _context("UTC"), _link)
    assert "https://gw.test/s/token-4" in message.text and 'href="https://gw.test/s/token-4"' in message.html


def test_a_missing_value_names_the_template_instead_of_rendering_blank() -> None:
    context = _context("UTC")
    del context["audit"]
    with pytest.raises(TemplateProblem, match="compliance/audit/evidence_request.*audit"):
        render_message("compliance/audit/evidence_request", context, _link)


def test_pages_escape_what_people_typed() -> None:
    html = render_page("pages/refused.html", {"title": "<b>x</b>", "detail": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(("title", "expected"), [
    ("Fire evacuation", "fire evacuation"), ("IT outage tabletop", "IT outage tabletop"),
    ("A", "a"), ("", ""), ("ERP", "ERP"),
])
def test_a_title_reads_inside_a_sentence_without_losing_its_acronyms(title: str, expected: str) -> None:
    assert in_sentence(title) == expected


@pytest.mark.parametrize(("currency", "locale", "shown"), [
    ("GBP", "en_GB", "£13,000.00 for 54,279 items, 12.5% of stock"),
    ("EUR", "de_DE", "13.000,00\xa0€ for 54.279 items, 12,5\xa0% of stock"),
])
def test_templates_format_money_and_numbers_in_the_organisations_currency_and_locale(
        currency: str, locale: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import get_settings
    from engine.templates import environment

    monkeypatch.setenv("OPS_CURRENCY", currency)
    monkeypatch.setenv("OPS_LOCALE", locale)
    get_settings.cache_clear()
    try:
        template = environment().from_string("{{ a | money }} for {{ n | number }} items, {{ s | percent }} of stock")
        assert template.render(a="13000.00", n=54279, s=0.125) == shown
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_steps_details_are_shown_as_people_read_them_and_lists_as_tables() -> None:
    from types import SimpleNamespace

    from engine.formats import money_detail

    person = SimpleNamespace(id=1, name="Max Manager", timezone="UTC")
    step = SimpleNamespace(id=7, title="Approve", due_at=datetime(2026, 12, 3, 17, tzinfo=UTC))
    details = {"amount": money_detail(Decimal("13230.00"), "GBP"), "RTO (minutes)": 2400, "target": None,
               "urgent": False, "approvers": ["Max Manager", "Dana Director"],
               "lines": [{"SKU": "A-1", "quantity": 1200, "unit cost": money_detail(Decimal("0.3333"), "GBP")},
                         {"SKU": "B-2", "quantity": 3, "unit cost": money_detail(Decimal("130"), "GBP")}]}
    html = render_page("pages/step.html", {"step": step, "person": person, "asked": person, "details": details,
                                           "csrf": "x", "attachment": None, "fields": [], "form_error": "",
                                           "multipart": False})
    assert "<td>£13,230.00</td>" in html and "<td>2,400</td>" in html and "<td>—</td>" in html
    assert "<td>no</td>" in html and "<td>Max Manager, Dana Director</td>" in html
    assert '<th>SKU</th><th class="n">Quantity</th><th class="n">Unit cost</th>' in html
    assert '<td>A-1</td><td class="n">1,200</td><td class="n">£0.3333</td>' in html
    assert "Lines" in html and "[{" not in html and "on-behalf" not in html
