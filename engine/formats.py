"""Money and numbers as people read them, in the organisation's currency and locale (settings), formatted by babel.

One format everywhere: templates use these as the `money`, `number` and `percent` filters (engine.templates);
Python uses them only where a figure is frozen into stored text (a step's title). A step's details keep an
amount as `money_detail(...)`, so the page formats it when it is shown.
"""

from __future__ import annotations

from copy import copy
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.numbers import NumberPattern, format_currency, get_currency_precision, parse_pattern

from engine.settings import get_settings

MONEY = "money"
"""The key marking an amount in a step's details: {"money": "13000.00", "currency": "GBP"}."""


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        # Through str: a float's repr (0.1), not its binary expansion (0.1000000000000000055…).
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def money(value: Any, currency: str | None = None, locale: str | None = None, whole: bool = False) -> str:
    """An amount with its currency symbol, thousands separators and the currency's decimals (£13,000.00,
    13.000,00 €); a unit cost held to finer precision keeps it (£0.3333). None is "—". `whole`: rounded to whole
    units of the currency (£13,000), for a table of many large figures whose exact amounts are in its CSV."""
    if value is None:
        return "—"
    if isinstance(value, dict) and MONEY in value:
        value, currency = value[MONEY], currency or value.get("currency")
    settings = get_settings()
    currency = currency or settings.currency
    amount = _decimal(value)
    if whole:
        where = Locale.parse(locale or settings.locale)
        pattern = copy(where.currency_formats["standard"])
        pattern.frac_prec = (0, 0)
        rounded = amount.quantize(Decimal(1), ROUND_HALF_UP)
        return str(pattern.apply(abs(rounded) if rounded == 0 else rounded, where, currency=currency,
                                 currency_digits=False))
    if isinstance(value, float):  # a computed total (a sum at cost), to the currency's smallest unit
        amount = amount.quantize(Decimal(1).scaleb(-get_currency_precision(currency)), ROUND_HALF_UP)
    # A registry amount is exact, and shown so: a unit cost held to four places keeps them; -0.00 is 0.00.
    return str(format_currency(abs(amount) if amount == 0 else amount, currency,
                               locale=locale or settings.locale, decimal_quantization=False))


@lru_cache(maxsize=64)
def _parsed(kind: str, locale: str, digits: int | None) -> tuple[NumberPattern, Locale]:
    where = Locale.parse(locale)
    pattern = parse_pattern((where.percent_formats if kind == "percent" else where.decimal_formats)[None])
    if digits is not None:
        pattern = copy(pattern)
        pattern.frac_prec = (digits, digits)
    return pattern, where


def _pattern(kind: str, value: Decimal, digits: int | None, locale: str | None) -> str:
    pattern, where = _parsed(kind, locale or get_settings().locale, digits)
    if digits is not None:
        # Half up, as people round (babel's own is half even: 2.5 → 2).
        value = value.quantize(Decimal(1).scaleb(-(digits + (2 if kind == "percent" else 0))), ROUND_HALF_UP)
    return str(pattern.apply(abs(value) if value == 0 else value, where))


def number(value: Any, digits: int | None = None, locale: str | None = None) -> str:
    """A count or measure with the locale's separators (54,279; 54.279): to `digits` places, or as many as it
    has up to three. None is "—"."""
    if value is None:
        return "—"
    return _pattern("decimal", _decimal(value), digits, locale)


def percent(share: Any, digits: int = 1, locale: str | None = None) -> str:
    """A share (0.123) as the locale writes a percentage (12.3%; 12,3 %). None is "—"."""
    if share is None:
        return "—"
    return _pattern("percent", _decimal(share), digits, locale)


def money_detail(amount: Decimal, currency: str | None = None) -> dict[str, str]:
    """An amount as a step's details keep it (JSON): the page shows it with `money`."""
    return {MONEY: str(amount), "currency": currency or get_settings().currency}
