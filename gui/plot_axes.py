"""Axes for data plotted in log space: pyqtgraph draws log10(value) (or log2(batch)) on a
linear view, and these axes label the ticks with the values themselves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg

__all__ = ["Log2Axis", "LogAxis", "log_wanted"]


class LogAxis(pg.AxisItem):
    """An axis for data plotted as log10(value), labelled with the values themselves:
    ticks at 1, 2, 5 x 10^k (every integer multiple when the range is narrow)."""

    def tickValues(
        self, minVal: float, maxVal: float, size: float
    ) -> list[tuple[float, list[float]]]:
        low, high = sorted((float(minVal), float(maxVal)))
        if not (math.isfinite(low) and math.isfinite(high)) or high - low > 30:
            return []
        decades = range(math.floor(low), math.ceil(high) + 1)
        major = [float(k) for k in decades if low <= k <= high]
        for multiples in ((2, 5), (2, 3, 4, 5, 6, 7, 8, 9)):
            minor = [k + math.log10(m) for k in decades for m in multiples]
            minor = [v for v in minor if low <= v <= high]
            if len(major) + len(minor) >= 3 or high - low > 1.5:
                break
        if len(major) + len(minor) < 2:  # a very narrow range: plain linear ticks in value
            values = np.linspace(10**low, 10**high, 5)[1:-1]
            return [(1.0, [math.log10(v) for v in values if v > 0])]
        if high - low > 4:  # many decades: decades only, or labels collide
            return [(1.0, major)]
        return [(1.0, major), (0.3, minor)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{10**v:.3g}" for v in values]


class Log2Axis(pg.AxisItem):
    """A batch-size axis: data plotted as log2(batch), ticks at the measured sizes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    def tickValues(
        self, minVal: float, maxVal: float, size: float
    ) -> list[tuple[float, list[float]]]:
        low, high = sorted((float(minVal), float(maxVal)))
        sizes = self.batch_sizes or [2**k for k in range(0, 11)]
        return [(1.0, [math.log2(b) for b in sizes if low <= math.log2(b) <= high])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{2**v:.0f}" for v in values]


def log_wanted(values: Sequence[float], ratio: float = 20.0) -> bool:
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) >= ratio
