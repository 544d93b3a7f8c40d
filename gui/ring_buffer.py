"""Fixed-capacity numpy ring buffers for live telemetry.

Appending a batch is one or two slice copies; reading the newest ``n`` rows in order is a
view, never a copy: every row is written twice, at ``i`` and ``i + capacity``, so the last
``capacity`` rows always sit contiguously. A redraw at 30 Hz can then hand pyqtgraph
the data without reallocating, whatever the sample rate.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


class RingBuffer:
    """The newest ``capacity`` rows of ``width`` columns; ``total`` counts all rows ever
    appended, so ``total - len(self)`` rows have been overwritten."""

    def __init__(self, capacity: int, width: int = 1, dtype: npt.DTypeLike = np.float64) -> None:
        if capacity < 1 or width < 1:
            raise ValueError("a ring buffer needs capacity >= 1 and width >= 1")
        self.capacity = capacity
        self.width = width
        self._data = np.zeros((2 * capacity, width), dtype=dtype)
        self._next = 0  # where the next row goes, in [0, capacity)
        self._size = 0
        self.total = 0

    def __len__(self) -> int:
        return self._size

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def clear(self) -> None:
        self._next = 0
        self._size = 0

    def append(self, rows: npt.ArrayLike) -> None:
        """Append rows shaped (k, width) (or (k,) when width is 1)."""
        block = np.asarray(rows, dtype=self._data.dtype)
        if block.ndim == 1 and self.width == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] != self.width:
            raise ValueError(f"expected rows of width {self.width}, got shape {block.shape}")
        k = len(block)
        if k == 0:
            return
        self.total += k
        cap = self.capacity
        if k >= cap:  # only the newest capacity rows survive
            block = block[-cap:]
            self._data[:cap] = block
            self._data[cap:] = block
            self._next = 0
            self._size = cap
            return
        start = self._next
        first = min(k, cap - start)
        self._data[start : start + first] = block[:first]
        self._data[start + cap : start + cap + first] = block[:first]
        rest = k - first
        if rest:
            self._data[:rest] = block[first:]
            self._data[cap : cap + rest] = block[first:]
        self._next = (start + k) % cap
        self._size = min(cap, self._size + k)

    def latest(self, n: int | None = None) -> np.ndarray:
        """The newest ``n`` rows (all held rows by default), oldest first, as a view."""
        count = self._size if n is None else max(0, min(n, self._size))
        end = self._next + self.capacity  # one past the newest row in the upper copy
        return self._data[end - count : end]

    def column(self, index: int, n: int | None = None) -> np.ndarray:
        return self.latest(n)[:, index]
