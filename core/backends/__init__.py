"""The inference backends, imported only when used.

``get_backend("openvino")`` imports OpenVINO and nothing else, so a host with one
framework installed measures with it, and the light parts of core (store, analysis, GUI)
never pay for torch.
"""

from __future__ import annotations

import importlib
import logging

from core.backends.base import BackendImpl, ModelSource, PreparedModel
from core.backends.convert import ConvertedModel
from core.errors import (
    BackbenchError,
    BackendUnavailableError,
    DeviceUnavailableError,
    PrecisionUnsupportedError,
)
from core.results import Backend, Case, parse_backend

log = logging.getLogger(__name__)

__all__ = [
    "BackendImpl",
    "ModelSource",
    "PreparedModel",
    "available_backends",
    "check_case",
    "ensure_converted",
    "get_backend",
    "needs_conversion",
]

# backend -> (implementation module, framework module, pip package)
_MODULES: dict[Backend, tuple[str, str, str]] = {
    Backend.TORCH: ("core.backends.torch_backend", "torch", "torch torchvision"),
    Backend.OPENVINO: ("core.backends.openvino_backend", "openvino", "openvino"),
    Backend.ONNXRUNTIME: ("core.backends.onnxruntime_backend", "onnxruntime", "onnxruntime"),
}
_loaded: dict[Backend, BackendImpl] = {}


def _framework_importable(framework: str) -> tuple[bool, str]:
    try:
        importlib.import_module(framework)
    except ImportError as exc:
        return False, str(exc)
    except OSError as exc:  # a wheel whose shared libraries cannot load
        return False, str(exc)
    return True, ""


def get_backend(backend: Backend | str) -> BackendImpl:
    """The backend implementation, importing its framework on first use.

    Raises BackendUnavailableError (with the install command) when the framework is
    missing or cannot load.
    """
    which = parse_backend(backend)
    if which in _loaded:
        return _loaded[which]
    module_name, framework, package = _MODULES[which]
    ok, reason = _framework_importable(framework)
    if not ok:
        others = [
            b.value for b in Backend if b is not which and _framework_importable(_MODULES[b][1])[0]
        ]
        available = ", ".join(others) if others else "none"
        raise BackendUnavailableError(
            f"The {which.value} backend is unavailable: {framework} is not installed or cannot load ({reason}).",
            f"Install it with `pip install 'backbench[measure]'` (or `pip install {package}`); "
            f"available backends are: {available}.",
        )
    impl: BackendImpl = importlib.import_module(module_name).BACKEND
    _loaded[which] = impl
    return impl


def available_backends() -> dict[str, list[str]]:
    """Backend name -> devices usable here, for the backends whose framework loads.

    Never raises: a backend that fails to load or to list devices is left out (and logged).
    """
    found: dict[str, list[str]] = {}
    for which in Backend:
        try:
            found[which.value] = list(get_backend(which).devices())
        except BackbenchError as exc:
            log.info("backend %s unavailable: %s", which.value, exc)
        except Exception:  # a framework that imports but breaks while probing devices
            log.warning("backend %s failed to list its devices", which.value, exc_info=True)
    return found


def check_case(case: Case) -> None:
    """Validate a case's device and precision before a sweep starts, so a typo fails in
    a second rather than after the first model has been converted."""
    impl = get_backend(case.backend)
    resolve = getattr(impl, "resolve_device", None)
    if resolve is not None:
        device = resolve(case.device)
    else:
        available = impl.devices()
        if case.device not in available:
            raise DeviceUnavailableError(
                f"Device {case.device!r} is not available to {case.backend.value}.",
                f"Available devices: {', '.join(available) or 'none'}.",
            )
        device = case.device
    supported = impl.precisions(device)
    if case.precision not in supported:
        raise PrecisionUnsupportedError(
            f"{case.backend.value} on {device} does not support {case.precision.value}.",
            f"Supported precisions there: {', '.join(p.value for p in supported) or 'none'}.",
        )


def needs_conversion(case: Case) -> bool:
    """Whether the case's backend reads a converted file of the model (OpenVINO IR, ONNX)
    that the sweep should make, in its own process, before the case runs. Light: reads
    the model card only."""
    from core.backends.convert import SourceKind, source_kind

    if case.backend is Backend.TORCH:
        return False
    try:
        kind = source_kind(case.model)
    except BackbenchError:
        return False  # the case itself reports the bad model
    return kind in (SourceKind.ZOO, SourceKind.TORCHSCRIPT)


def ensure_converted(case: Case, source: ModelSource) -> ConvertedModel | None:
    """Convert the model for the case's backend into the cache (a cache hit does nothing)."""
    if not needs_conversion(case):
        return None
    impl = get_backend(case.backend)
    convert = getattr(impl, "convert", None)
    return None if convert is None else convert(source)
