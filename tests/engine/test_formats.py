"""Money and numbers in the organisation's currency and locale: one format, babel's, everywhere."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.formats import money, money_detail, number, percent

NBSP = "\xa0"


@pytest.mark.parametrize(("value", "currency", "locale", "shown"), [
    (Decimal("13000.00"), "GBP", "en_GB", "£13,000.00"),
    (Decimal("13000.00"), "EUR", "en_GB", "€13,000.00"),
    (Decimal("13000.00"), "EUR", "de_DE", f"13.000,00{NBSP}€"),
    (Decimal("13000.00"), "GBP", "de_DE", f"13.000,00{NBSP}£"),
    (0, "GBP", "en_GB", "£0.00"),
    (Decimal("-0.00"), "GBP", "en_GB", "£0.00"),
    (0, "EUR", "de_DE", f"0,00{NBSP}€"),
    (Decimal("-250.5"), "GBP", "en_GB", "-£250.50"),
    (Decimal("-250.5"), "EUR", "de_DE", f"-250,50{NBSP}€"),
    (Decimal("1234567890.12"), "GBP", "en_GB", "£1,234,567,890.12"),
    (Decimal("1234567890.12"), "EUR", "de_DE", f"1.234.567.890,12{NBSP}€"),
    (Decimal("0.3333"), "GBP", "en_GB", "£0.3333"),  # a unit cost held to four places keeps them
    ("13000.00", "GBP", "en_GB", "£13,000.00"),  # as a message's stored context holds it
    (2000, "GBP", "en_GB", "£2,000.00"),
    (0.1, "EUR", "de_DE", f"0,10{NBSP}€"),
    (54279.373, "GBP", "en_GB", "£54,279.37"),  # a computed float total, to the penny
    (54279.375, "EUR", "de_DE", f"54.279,38{NBSP}€"),
    (1234.5, "JPY", "en_GB", "JP¥1,235"),  # to the currency's own smallest unit
    (None, "GBP", "en_GB", "—"),
])
def test_money_is_in_the_currency_and_locale_given(value: object, currency: str, locale: str, shown: str) -> None:
    assert money(value, currency, locale) == shown


@pytest.mark.parametrize(("value", "digits", "locale", "shown"), [
    (54279, None, "en_GB", "54,279"),
    (54279, None, "de_DE", "54.279"),
    (54279.4, 0, "en_GB", "54,279"),
    (0, None, "en_GB", "0"),
    (0, 1, "de_DE", "0,0"),
    (-0.04, 1, "en_GB", "0.0"),  # never "-0.0"
    (-1234.56, 1, "en_GB", "-1,234.6"),
    (-1234.56, 1, "de_DE", "-1.234,6"),
    (2.5, 0, "en_GB", "3"),  # half up, as people round
    (12345678901, None, "en_GB", "12,345,678,901"),
    (12345678901, None, "de_DE", "12.345.678.901"),
    (Decimal("96.25"), 1, "en_GB", "96.3"),
    ("7", None, "en_GB", "7"),
    (None, 1, "en_GB", "—"),
])
def test_numbers_use_the_locales_separators(value: object, digits: int | None, locale: str, shown: str) -> None:
    assert number(value, digits, locale) == shown


@pytest.mark.parametrize(("share", "digits", "locale", "shown"), [
    (0.123, 1, "en_GB", "12.3%"),
    (0.123, 1, "de_DE", f"12,3{NBSP}%"),
    (0, 0, "en_GB", "0%"),
    (-0.0004, 1, "en_GB", "0.0%"),
    (-0.05, 1, "en_GB", "-5.0%"),
    (12.5, 0, "en_GB", "1,250%"),
    (None, 1, "en_GB", "—"),
])
def test_percentages_use_the_locales_form(share: object, digits: int, locale: str, shown: str) -> None:
    assert percent(share, digits, locale) == shown


@pytest.mark.parametrize(("currency", "locale", "shown"), [("GBP", "en_GB", "£13,000.00"),
                                                           ("EUR", "de_DE", f"13.000,00{NBSP}€")])
def test_the_organisations_settings_are_the_default(currency: str, locale: str, shown: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import get_settings

    monkeypatch.setenv("OPS_CURRENCY", currency)
    monkeypatch.setenv("OPS_LOCALE", locale)
    get_settings.cache_clear()
    try:
        assert money(Decimal("13000")) == shown
        assert money(money_detail(Decimal("13000"))) == shown, "a step's detail keeps its currency"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.parametrize(("name", "value", "refused"), [("OPS_LOCALE", "en_XX", "OPS_LOCALE 'en_XX'"),
                                                        ("OPS_LOCALE", "de-DE", "OPS_LOCALE 'de-DE'"),
                                                        ("OPS_CURRENCY", "GPB", "OPS_CURRENCY 'GPB'")])
def test_an_unknown_locale_or_currency_is_refused_by_name(name: str, value: str, refused: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from engine.settings import Settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=refused):
        Settings()


@pytest.mark.parametrize(("locale", "currency", "amount", "shown"), [
    ("en_GB", "GBP", "1301021.50", "£1,301,022"), ("en_GB", "GBP", "-1301021.49", "-£1,301,021"),
    ("en_GB", "GBP", "-0.40", "£0"), ("de_DE", "EUR", "12500.50", "12.501\xa0€"), ("en_GB", "JPY", "1234", "JP¥1,234"),
])
def test_money_in_whole_units_rounds_half_up_in_the_locale_s_pattern(locale: str, currency: str, amount: str,
                                                                     shown: str) -> None:
    """A table of many large figures (the variance pack) shows whole units; the CSV beside it keeps the cents."""
    assert money(Decimal(amount), currency, locale, whole=True) == shown
