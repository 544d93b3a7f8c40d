"""The options of a run, declared once for ``backbench run``, ``backbench remote submit``
and the GUI's run launcher."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def parse_weights(items: Sequence[str]) -> dict[str, str]:
    from core.errors import UsageError

    weights = {}
    for item in items:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise UsageError(f"--weights {item!r} is not MODEL=PATH.", "Example: --weights resnet18=./resnet18.pth")
        weights[model] = path
    return weights


def spec_from_args(args: argparse.Namespace) -> Any:
    from core.errors import UsageError
    from core.results import (
        RunSpec,
        StoppingRule,
        parse_backend,
        parse_batch_sizes,
        parse_mode,
        parse_precision,
    )
    from core.zoo import suite_models

    models: list[str] = list(args.model or [])
    if args.suite:
        models.extend(m for m in suite_models(args.suite) if m not in models)
    if not models:
        raise UsageError("No model given.", "Use -m MODEL (repeatable) or --suite NAME; `backbench models` lists them.")
    backend = parse_backend(args.backend)
    device = args.device or ("CPU" if backend.value == "openvino" else "cpu")
    rule = StoppingRule(min_iters=args.min_iters, target_ci=args.target_ci, max_time_s=args.max_time)
    return RunSpec(
        models=tuple(models),
        backend=backend,
        device=device,
        precision=parse_precision(args.precision),
        batch_sizes=parse_batch_sizes(args.batch),
        mode=parse_mode(args.mode),
        stopping=rule,
        name=args.name,
        weights=parse_weights(args.weights or []),
        isolate=not args.no_isolate,
    )

