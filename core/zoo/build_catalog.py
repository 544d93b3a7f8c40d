"""Regenerates core/resources/zoo_catalog.json from the installed torchvision, or checks it.

    python -m core.zoo.build_catalog --write
    python -m core.zoo.build_catalog --check   # exit status 1 when the file is out of date

Needs torch and torchvision; reading the catalogue (core.zoo.catalog) needs neither.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.zoo.catalog import CATALOG_FORMAT, catalog_path, read_catalog
from core.zoo.complexity import measure_complexity
from core.zoo.registry import clear_caches

log = logging.getLogger(__name__)


def build_catalog(names: list[str] | None = None) -> dict[str, Any]:
    """Build the catalogue from the installed torchvision. Needs torch and torchvision.

    Each model is built on the meta device and counted there: no weights, no memory.
    """
    import torch
    import torchvision

    from core.zoo.torchvision_models import build_on_meta, card_from_torchvision, torchvision_names

    models: dict[str, Any] = {}
    for name in names if names is not None else torchvision_names():
        card = card_from_torchvision(name)
        complexity = measure_complexity(build_on_meta(name), card.input_size)
        models[name] = {"card": card.to_dict(), "complexity": complexity.to_dict()}
        log.info("catalogued %s: %d params, %d FLOPs", name, complexity.params, complexity.flops)
    return {
        "format": CATALOG_FORMAT,
        "generated_with": {"torch": torch.__version__, "torchvision": torchvision.__version__},
        "models": dict(sorted(models.items())),
    }


def write_catalog(path: str | Path | None = None) -> Path:
    """Regenerate the catalogue and replace the file atomically."""
    target = Path(path or catalog_path())
    text = json.dumps(build_catalog(), indent=1, sort_keys=False) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".zoo_catalog.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # a shipped resource, not a private temp file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    clear_caches()
    return target


def stale_entries(path: str | Path | None = None) -> list[str]:
    """Names whose stored card differs from the live torchvision metadata, or that one
    side lacks. Empty when the catalogue is up to date (complexity is not re-measured)."""
    from core.zoo.torchvision_models import card_from_torchvision, torchvision_names

    stored = read_catalog(path)
    live = set(torchvision_names())
    stale = sorted(set(stored) ^ live)
    for name in sorted(live & set(stored)):
        if stored[name].get("card") != card_from_torchvision(name).to_dict():
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.zoo.build_catalog", description="Regenerate or check the zoo catalogue."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rebuild core/resources/zoo_catalog.json")
    action.add_argument("--check", action="store_true", help="exit 1 if it is out of date")
    parser.add_argument("--path", help="another catalogue file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.write:
        target = write_catalog(args.path)
        log.info("wrote %s (%d models)", target, len(read_catalog(target)))
        return 0
    stale = stale_entries(args.path)
    if stale:
        log.error("out of date for: %s. Run with --write.", ", ".join(stale))
        return 1
    log.info("catalogue is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
