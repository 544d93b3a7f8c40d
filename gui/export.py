"""Export from the GUI: a plot as PNG or SVG, a table as CSV, the HTML report.

Every function returns the path written and raises UsageError (message + what to do)
when the target cannot be written.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UsageError

log = logging.getLogger(__name__)

PLOT_FORMATS: tuple[str, ...] = (".png", ".svg")
PNG_WIDTH_PX = 1200


def _target(path: str | os.PathLike[str], suffixes: Sequence[str]) -> Path:
    target = Path(path).expanduser()
    if target.suffix.lower() not in suffixes:
        raise UsageError(
            f"Cannot export to {target.name}: unknown file type {target.suffix or '(none)'}.",
            f"Give a file name ending in {' or '.join(suffixes)}.",
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"Cannot create the folder {target.parent}: {exc.strerror or exc}.",
            "Choose another folder.",
        ) from exc
    return target


def _written(target: Path) -> Path:
    if not target.is_file() or target.stat().st_size == 0:
        raise UsageError(f"Nothing was written to {target}.", "Check free space and permissions.")
    return target


@contextmanager
def _svg_close_path_shim() -> Iterator[None]:
    """Let pyqtgraph's SVGExporter read paths that Qt >= 6.10 closes with a "Z" token.

    pyqtgraph (0.13-0.14) re-parses every path as "x,y" pairs and fails on a bare "Z"
    (pyqtgraph issue #3485). Around the call, "Z" is taken off, the coordinates are
    transformed by pyqtgraph, and "Z" is put back, so closed shapes stay closed.
    """
    module = sys.modules.get("pyqtgraph.exporters.SVGExporter")
    original = getattr(module, "correctCoordinates", None)
    if module is None or original is None:
        yield
        return

    def correct(node: Any, defs: Any, item: Any, options: Any) -> Any:
        closed = []
        for path in node.getElementsByTagName("path"):
            tokens = path.getAttribute("d").split()
            kept = [t for t in tokens if t not in ("Z", "z")]
            if len(kept) != len(tokens):
                closed.append(path)
                path.setAttribute("d", " ".join(kept))
        result = original(node, defs, item, options)
        for path in closed:
            path.setAttribute("d", path.getAttribute("d").rstrip() + " Z")
        return result

    module.correctCoordinates = correct
    try:
        yield
    finally:
        module.correctCoordinates = original


def export_plot(item: Any, path: str | os.PathLike[str], width_px: int = PNG_WIDTH_PX) -> Path:
    """Write a pyqtgraph PlotItem (or a scene, for a multi-panel layout) as PNG or SVG,
    chosen by the file's suffix."""
    from pyqtgraph.exporters import ImageExporter, SVGExporter

    target = _target(path, PLOT_FORMATS)
    try:
        if target.suffix.lower() == ".png":
            exporter = ImageExporter(item)
            # pyqtgraph keeps the aspect ratio. At the plot's own width every text keeps
            # its size (scaled up, legend labels would not grow with the rest).
            exporter.parameters()["width"] = int(width_px)
            exporter.export(str(target))
        else:
            with _svg_close_path_shim():
                SVGExporter(item).export(str(target))
    except OSError as exc:
        raise UsageError(
            f"Cannot write {target}: {exc.strerror or exc}.", "Choose another file or folder."
        ) from exc
    log.info("exported a plot to %s", target)
    return _written(target)


def export_table_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV with raw (unrounded) values."""
    target = _target(path, (".csv",))
    try:
        frame.to_csv(target, index=False)
    except OSError as exc:
        raise UsageError(
            f"Cannot write {target}: {exc.strerror or exc}.", "Choose another file or folder."
        ) from exc
    log.info("exported %d rows to %s", len(frame), target)
    return _written(target)


def export_report(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    run_label: str | None = None,
    manifests: Sequence[Mapping[str, Any]] | None = None,
    predictor: bool = True,
    layer_profiles: Sequence[Any] = (),
) -> Path:
    """The HTML report of `backbench report` for ``frame``; returns its index.html.
    ``layer_profiles`` (Measurements with per-layer profiles) add its per-layer section.
    Raises DataError for unusable data and UsageError for a folder it cannot write."""
    try:
        from core.report.html import write_report
    except ImportError as exc:  # a trimmed install without the report module
        raise UsageError(
            "This installation cannot write HTML reports (core.report is missing).",
            "Reinstall backbench, or use `backbench report` from the command line.",
        ) from exc
    return write_report(
        frame, out_dir, title=title, run_label=run_label, manifests=manifests, predictor=predictor,
        layer_profiles=layer_profiles,
    )  # fmt: skip
