"""The outputs a user sees do not change when the code moves: ``models``, ``results``,
``analyze --json`` and ``report`` on a committed fixture store, against outputs recorded
before the architecture change (issue 8), timings and temporary paths masked."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.golden.golden import EXPECTED, produce


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return produce(tmp_path_factory.mktemp("golden"))


def expected_names() -> list[str]:
    return sorted(p.name for p in EXPECTED.iterdir())


def test_every_golden_output_is_still_produced(outputs: dict[str, str]) -> None:
    assert sorted(outputs) == expected_names()


@pytest.mark.parametrize("name", expected_names())
def test_output_matches_the_recorded_one(outputs: dict[str, str], name: str) -> None:
    expected = (EXPECTED / name).read_text(encoding="utf-8")
    actual = outputs.get(name)
    assert actual is not None, f"{name} was not produced"
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"expected/{name}", f"now/{name}", n=1))  # fmt: skip
        pytest.fail(f"{name} differs from the recorded output:\n{diff[:4000]}")


def test_the_masks_hide_only_run_to_run_noise(tmp_path: Path) -> None:
    # The fixture store is read, never changed: a second production is identical.
    first = produce(tmp_path / "a")
    assert first == produce(tmp_path / "b")
