"""Re-records the golden outputs in expected/. Only do this for an intended change of
output, and say so in the commit."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden import EXPECTED, produce  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        outputs = produce(Path(tmp))
    shutil.rmtree(EXPECTED, ignore_errors=True)
    EXPECTED.mkdir()
    for name, text in outputs.items():
        (EXPECTED / name).write_text(text, encoding="utf-8")
    print(f"recorded {len(outputs)} outputs in {EXPECTED}")
