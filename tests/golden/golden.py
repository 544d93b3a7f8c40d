"""The golden outputs of ``models``, ``results``, ``analyze --json`` and ``report``, on
``fixture.db``, with what legitimately changes from run to run masked: the temporary
paths, wall-clock stamps and durations. ``record.py`` writes them; ``test_golden.py``
compares against them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixture.db"
EXPECTED = HERE / "expected"

# (output name, argv after `backbench`; {db} is a private copy of the fixture store)
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("models.txt", ("models",)),
    ("models_paper.json", ("models", "--suite", "paper", "--format", "json")),
    ("results.txt", ("results", "--db", "{db}")),
    ("results.csv", ("results", "--db", "{db}", "--format", "csv")),
    ("analyze.json", ("analyze", "--db", "{db}", "--json")),
)
# Report files compared byte for byte once masked; figures are compared by name only,
# since a matplotlib upgrade may move a pixel without changing what the report says.
REPORT_TEXT_FILES = ("index.html", "analysis.json", "prediction.json")

_MASKS = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r'"(created_at|finished_at|generated_at|duration_s|elapsed_s)": [0-9.e+-]+'), r'"\1": <T>'),
    (re.compile(r"\bin \d+(\.\d+)? ?(s|ms)\b"), "in <T>"),
)


def backbench() -> str:
    return str(Path(sys.executable).parent / "backbench")


def mask(text: str, workdir: Path) -> str:
    text = text.replace(str(workdir), "<WORK>")
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    # rich centres a title on its length, and the temporary path's length varies.
    lines = [line.strip() if "<WORK>" in line else line.rstrip() for line in text.split("\n")]
    return "\n".join(lines)


def produce(workdir: Path) -> dict[str, str]:
    """Every golden output, masked, keyed by file name."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "results.db"
    shutil.copyfile(FIXTURE, db)
    env = {**os.environ, "COLUMNS": "200", "XDG_DATA_HOME": str(workdir / "xdg"),
           "XDG_CACHE_HOME": str(workdir / "cache"), "NO_COLOR": "1", "TERM": "dumb"}  # fmt: skip
    outputs: dict[str, str] = {}
    for name, argv in COMMANDS:
        args = [backbench(), *(a.format(db=db) for a in argv)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=workdir)
        if proc.returncode != 0:
            raise RuntimeError(f"backbench {' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        outputs[name] = mask(proc.stdout, workdir)
    report = workdir / "report"
    proc = subprocess.run([backbench(), "report", "--db", str(db), "-o", str(report)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=workdir)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"backbench report exited {proc.returncode}: {proc.stderr}")
    for name in REPORT_TEXT_FILES:
        outputs[f"report_{name}"] = mask((report / name).read_text(encoding="utf-8"), workdir)
    for table in sorted((report / "tables").glob("*.csv")):
        outputs[f"report_tables_{table.name}"] = mask(table.read_text(encoding="utf-8"), workdir)
    listing = sorted(p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file())
    outputs["report_files.txt"] = "\n".join(listing) + "\n"
    return outputs
