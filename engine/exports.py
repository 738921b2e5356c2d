"""Files people open in a spreadsheet: no text cell is ever run as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

# What Excel, LibreOffice and Google Sheets read as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run, prefixed with a quote so it shows as text; None as empty.

    Only text is touched: a number (-3.5 from a float) is data, and stays a number a spreadsheet can sum.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A UTF-8 CSV of `rows` under `header`, every cell made spreadsheet-safe."""
    buffer = io.StringIO()
    # RFC 4180 line ends: the writer quotes a cell holding any of them, so a carriage return inside a name
    # (which it does not quote under a bare "\n") cannot split its row for the reader.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([spreadsheet_safe(name) for name in header])
    writer.writerows([spreadsheet_safe(value) for value in row] for row in rows)
    return buffer.getvalue().encode()
