"""core.text: the one number formatter of the CLI, the report and the GUI."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from core.text import EN_DASH, MISSING, as_real, fixed, percent, significant

MISSING_VALUES = (None, math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf"))


@pytest.mark.parametrize("value", MISSING_VALUES)
def test_a_missing_value_is_the_missing_mark_in_every_style(value: object) -> None:
    assert fixed(value) == MISSING
    assert significant(value) == MISSING
    assert percent(value) == MISSING
    assert fixed(value, missing=EN_DASH) == EN_DASH
    assert significant(value, missing="n/a") == "n/a"
    assert percent(value, missing=EN_DASH) == EN_DASH
    assert as_real(value) is None


def test_fixed_keeps_a_fixed_number_of_decimals() -> None:
    assert fixed(3.14159) == "3.14"
    assert fixed(3.14159, 3) == "3.142"
    assert fixed(2.5, 0) == "2"  # round half to even, as Python formats
    assert fixed(1234567.891, 1) == "1234567.9"  # no grouping: a column of like values
    assert fixed(0.000012, 3) == "0.000"
    assert fixed(-0.5, 1) == "-0.5"
    assert fixed(np.float64(1.25), 1) == "1.2"
    assert fixed(np.float32(1.5), 2) == "1.50"


def test_fixed_shows_counts_and_non_numbers_as_they_are() -> None:
    assert fixed(7) == "7" and fixed(7, 3) == "7"
    assert fixed(12345678) == "12345678"
    assert fixed(np.int64(42)) == "42"
    assert fixed(True) == "True" and fixed(False) == "False"
    assert fixed("n/a") == "n/a"


def test_significant_rounds_to_significant_figures() -> None:
    assert significant(0.123456) == "0.123"
    assert significant(3.14159) == "3.14"
    assert significant(3.14159, 4) == "3.142"
    assert significant(99.96) == "100"
    assert significant(-2.71828) == "-2.72"
    assert significant(np.float32(0.5)) == "0.5"


def test_significant_shows_big_numbers_whole_and_grouped() -> None:
    assert significant(12345.6) == "12,346"
    assert significant(1000.0) == "1,000"
    assert significant(1e12) == "1,000,000,000,000"
    assert significant(1234.5, 4) == "1234"  # below 10**digits: still significant figures
    assert significant(-98765.4) == "-98,765"


def test_significant_shows_integers_whole_and_grouped() -> None:
    assert significant(7) == "7"
    assert significant(12345) == "12,345"
    assert significant(np.int64(1234567)) == "1,234,567"
    assert significant(-4096) == "-4,096"


def test_significant_gives_tiny_numbers_an_exponent() -> None:
    assert significant(0.0000123) == "1.23e-05"
    assert significant(-0.00099) == "-9.90e-04"
    assert significant(1e-300) == "1.00e-300"
    assert significant(0.001) == "0.001"  # TINY itself is still plain
    assert significant(0.0) == "0" and significant(-0.0) == "0" and significant(0) == "0"


def test_significant_shows_non_numbers_as_they_are() -> None:
    assert significant(True) == "True" and significant(False) == "False"
    assert significant("resnet18") == "resnet18"
    assert significant(Fraction(1, 3)) == "0.333"


def test_percent_shows_a_fraction_as_a_percentage() -> None:
    assert percent(0.8345) == "83.5%"
    assert percent(0.834) == "83.4%"
    assert percent(1) == "100.0%" and percent(0) == "0.0%"
    assert percent(0.5, 0) == "50%"
    assert percent(1.5e-5, 3) == "0.002%"
    assert percent(12.5) == "1250.0%"
    assert percent(np.float32(0.25)) == "25.0%"


def test_percent_of_a_non_number_is_missing() -> None:
    assert percent(True) == MISSING and percent(False) == MISSING
    assert percent("0.5") == MISSING


def test_as_real_accepts_only_finite_real_numbers() -> None:
    assert as_real(3) == 3.0 and isinstance(as_real(3), float)
    assert as_real(np.int64(2)) == 2.0
    assert as_real(np.float32(0.5)) == 0.5
    assert as_real(True) is None and as_real("1") is None
