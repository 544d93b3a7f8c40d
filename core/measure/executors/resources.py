"""What a case reserves on a Ray cluster, so two measurements never share a device.

- A CUDA case (torch or ONNX Runtime on ``cuda:0``) takes ``num_gpus=1``: Ray gives the
  task one GPU of its node and sets CUDA_VISIBLE_DEVICES to it, so the case's
  ``cuda:0`` is that GPU. ``cuda:N`` for N > 0 names a GPU of one machine and is
  refused: on a cluster Ray chooses the GPU.
- An OpenVINO case on another device than the CPU takes one unit of the custom resource
  ``openvino:DEVICE`` (``openvino:MYRIAD`` for an NCS2, ``openvino:GPU``,
  ``openvino:NPU``), which a node declares when it joins:
  ``ray start ... --resources '{"openvino:MYRIAD": 1}'`` (as many units as it has
  such devices that OpenVINO shares out by itself, one per stick for MYRIAD).
  ``AUTO``, ``MULTI``, ``HETERO`` and ``BATCH`` let OpenVINO choose or combine devices on
  the node, which Ray cannot reserve: they are refused.
- A CPU case (any backend) takes one unit of ``backbench_cpu``. A node that measures
  CPU cases declares ``"backbench_cpu": 1``: one CPU case per node at a time, whatever
  its core count, because a case's framework uses every core it is given (OpenVINO's
  and ONNX Runtime's thread pools, torch's intra-op threads), so two cases side by side
  would time each other. A custom resource rather than ``num_cpus=<cores>``: nodes
  differ in cores (a 4-core edge box beside a 64-core server), a per-task CPU count
  cannot fit them all, and a node opts in to measuring CPU cases by declaring it (the
  driver's own machine need not).

Every case task asks for ``num_cpus=0``, so only its device gates it: Ray's CPU slots
stay free for Ray's own work and the probes. A node should be dedicated to backbench
while it measures; another Ray workload on it shows up in each case's disturbance
check (``interference``, ``disturbed``).
"""

from __future__ import annotations

from typing import Any

from core.errors import UsageError
from core.results import Backend, Case

CPU_RESOURCE = "backbench_cpu"
GPU_RESOURCE = "GPU"  # Ray's own name for num_gpus
OPENVINO_RESOURCE_PREFIX = "openvino:"
# OpenVINO devices that choose or combine devices on the node: nothing to reserve.
_OPENVINO_META = ("AUTO", "MULTI", "HETERO", "BATCH")


def resource_of(case: Case) -> str:
    """The one resource a case holds while it runs: ``GPU``, ``backbench_cpu`` or
    ``openvino:DEVICE``. UsageError for a device a cluster cannot reserve."""
    device = case.device
    if case.backend is Backend.OPENVINO:
        if device == "CPU":
            return CPU_RESOURCE
        if device.startswith(_OPENVINO_META) or "," in device or ":" in device:
            raise UsageError(
                f"OpenVINO device {device!r} lets OpenVINO choose or combine devices on each "
                "node, which Ray cannot reserve for one case.",
                "Name one device (CPU, GPU, NPU, MYRIAD) with --executor ray.",
            )
        return OPENVINO_RESOURCE_PREFIX + device
    if device == "cpu":
        return CPU_RESOURCE
    if device == "cuda:0":
        return GPU_RESOURCE
    if device.startswith("cuda:"):
        raise UsageError(
            f"--device {device} names one GPU of one machine; on a cluster Ray gives each "
            "case a GPU of its node, which the case sees as cuda:0.",
            "Use --device cuda with --executor ray.",
        )
    raise UsageError(
        f"Device {device!r} of {case.backend.value} has no Ray resource.",
        "With --executor ray use cpu or cuda (torch, onnxruntime), or one OpenVINO device.",
    )


def task_options(case: Case) -> dict[str, Any]:
    """The Ray task options that reserve the case's device (and nothing else)."""
    resource = resource_of(case)
    if resource == GPU_RESOURCE:
        return {"num_cpus": 0, "num_gpus": 1}
    return {"num_cpus": 0, "num_gpus": 0, "resources": {resource: 1}}


def node_has(node_resources: dict[str, Any], resource: str) -> bool:
    """Whether a node's total resources (``ray.nodes()``'s ``Resources``) include one
    unit of ``resource``."""
    try:
        return float(node_resources.get(resource, 0)) >= 1
    except (TypeError, ValueError):
        return False


def lost_resource_hint(resource: str) -> str:
    if resource == GPU_RESOURCE:
        return "Join a GPU node: ray start --address HEAD:6379 --num-gpus 1 (docs/CLUSTER.md)."
    declared = '{"' + resource + '": 1}'
    return f"Join a node that declares it: ray start --address HEAD:6379 --resources '{declared}' (docs/CLUSTER.md)."
