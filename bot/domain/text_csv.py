"""CSV cells a spreadsheet won't run as formulas.

Here rather than in the Discord layer's ``text`` module because the services build the CSV exports
(``bot.services.credits.usage_csv``); ``bot.discord.text`` re-exports both for the Discord layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


@overload
def csv_safe(cell: str) -> str: ...
@overload
def csv_safe(cell: int | float | None) -> int | float | None: ...
def csv_safe(cell: str | int | float | None) -> str | int | float | None:
    """A CSV cell a spreadsheet won't run: text starting with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return (or their full-width forms, which some spreadsheets also take) is prefixed
    with ``'``. Numbers are left as numbers (``-5`` stays a number, not text)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_row(cells: Iterable[str | int | float | None]) -> list[str | int | float | None]:
    """``csv_safe`` on every cell of a row, for ``csv.writer.writerow``."""
    return [csv_safe(cell) for cell in cells]
