from __future__ import annotations

from datetime import UTC, datetime

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
