"""Random JSON values for the fuzz tests of everything a client can send."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

ALPHABET = 'abc_.-/\\ é\u2603\ud800\x00\n"{}[]' + "0123456789abcdef"


def random_json(rng: random.Random, keys: Sequence[str], max_depth: int = 4, depth: int = 0) -> Any:
    """A random JSON value: edge-case numbers, hostile text, nested arrays and objects
    whose keys are drawn from ``keys`` (so some of them reach the checks behind a key)."""
    kind = rng.randrange(9 if depth < max_depth else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, 2**53, rng.randrange(-9, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e-300, rng.uniform(-1e6, 1e6)])
    if kind in (4, 5):
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 80)))
    if kind == 6:
        return [random_json(rng, keys, max_depth, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(keys): random_json(rng, keys, max_depth, depth + 1) for _ in range(rng.randrange(4))}
