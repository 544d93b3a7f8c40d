"""Numbers as people read them: the one home of display formatting.

Values stay raw everywhere else; they are rounded only here, on the way to a reader. The
CLI's tables, the HTML report, the GUI's tables, tool tips and labels all format through
these functions, so a value reads the same wherever it is shown:

- ``fixed``: a fixed number of decimals, for columns of like values (the CLI's tables).
- ``significant``: significant figures with thousands grouped, for values of any size
  (the report, the analysis commands, the GUI).
- ``percent``: a fraction as a percentage.

Each shows a missing value (None, NaN, infinity) as ``missing``: ``MISSING`` by default,
plain ASCII for terminals, CSV and HTML; the GUI passes ``EN_DASH``. Standard library
only: the GUI imports it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MISSING = "-"
EN_DASH = "–"  # the GUI's mark for a missing number
TINY = 1e-3  # below this (and above zero) significant() switches to an exponent


def as_real(value: Any) -> float | None:
    """``value`` as a finite float when it is a real number; None for a missing one
    (None, NaN, infinity) and for anything that is not a number, bools included."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isfinite(float(value))


def fixed(value: Any, decimals: int = 2, *, missing: str = MISSING) -> str:
    """A float with ``decimals`` decimals: ``fixed(3.14159, 3)`` is ``"3.142"``.

    Integers keep every digit and no grouping (``fixed(1234)`` is ``"1234"``): a count
    has no decimals to fix. Anything that is not a number (bools, text) is shown as
    ``str(value)``; a missing value as ``missing``.
    """
    if _is_missing(value):
        return missing
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.{decimals}f}"


def significant(value: Any, digits: int = 3, *, missing: str = MISSING) -> str:
    """A number rounded to ``digits`` significant figures, readable at any size.

    ``significant(0.123456)`` is ``"0.123"``. Integers are shown whole and grouped
    (``"12,345"``); so is any number of ``10**digits`` or more (``12345.6`` gives
    ``"12,346"``), rather than in exponent form. A number closer to zero than ``TINY``
    takes an exponent with three significant figures (``"1.23e-05"``); zero is ``"0"``.
    Anything that is not a number (bools, text) is shown as ``str(value)``; a missing
    value as ``missing``.
    """
    if _is_missing(value):
        return missing
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    number = float(value)
    magnitude = abs(number)
    if magnitude == 0:
        return "0"
    if magnitude >= 10**digits:
        return f"{number:,.0f}"
    if magnitude < TINY:
        return f"{number:.2e}"
    return f"{number:.{digits}g}"


def percent(value: Any, decimals: int = 1, *, missing: str = MISSING) -> str:
    """A fraction as a percentage: ``percent(0.8345)`` is ``"83.5%"``. Anything that is
    not a number (a bool included) is shown as ``missing``, like a missing value."""
    number = as_real(value)
    if number is None:
        return missing
    return f"{100.0 * number:.{decimals}f}%"


# -- values quoted in error messages -------------------------------------------------------


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a sentence: "an integer", "an array", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, (list, tuple)) else "an object"


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting untrusted input in an
    error message; a huge integer is described rather than printed (its repr is slow,
    or refused)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return "an integer far out of range"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
