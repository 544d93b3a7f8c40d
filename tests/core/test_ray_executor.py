"""The Ray executor (issue 14) on a real multi-node Ray cluster built in this process.

As Ray's own tests do, ``ray.cluster_utils.Cluster`` starts a head and worker nodes here,
each a real raylet with its own resources; the sweeps run real workers (tiny ONNX models
on ONNX Runtime) through the real runner into a real store. Removing a node kills its
processes for real. The simulated nodes share this machine's cores, so cases that run
side by side read as disturbed: the tests expect that.

Without Ray installed the cluster tests are skipped (failed under CI=true); the checks
that need no cluster (the resource policy, the refusals, the message without Ray) run
everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.errors import ClusterError, ModelFileError, UsageError
from core.measure.executors import make_executor
from core.measure.executors.base import SweepObserver
from core.measure.executors.resources import CPU_RESOURCE, resource_of, task_options
from core.measure.runner import run_sweep
from core.results import (
    Backend,
    Case,
    FailureKind,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    Status,
    StoppingRule,
)
from core.store import Store
from tests.realenv import missing

REPO = Path(__file__).resolve().parents[2]
# The fast stopping rule: a case is a second or two of a worker's life.
QUICK = StoppingRule(target_ci=0.5, min_iters=5, max_time_s=0.3, warmup_iters=1, warmup_time_s=0)
# A case that lasts its max_time (the CI target cannot be met): long enough to lose a
# node under it.
LONG = StoppingRule(target_ci=1e-6, min_iters=5, max_time_s=3.0, max_iters=10_000_000,
                    warmup_iters=1, warmup_time_s=0)  # fmt: skip
# Fast failure detection for the node-loss test (Ray's own tests shorten it the same way).
HEAD_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def case(device: str, backend: Backend = Backend.ONNXRUNTIME) -> Case:
    return Case("m.onnx", backend, device, Precision.FP32, 1, Mode.LATENCY)


# -- the resource policy and the refusals (no cluster) --------------------------------------


@pytest.mark.parametrize(
    ("backend", "device", "options"),
    [
        (Backend.ONNXRUNTIME, "cpu", {"num_cpus": 0, "num_gpus": 0, "resources": {CPU_RESOURCE: 1}}),
        (Backend.TORCH, "cpu", {"num_cpus": 0, "num_gpus": 0, "resources": {CPU_RESOURCE: 1}}),
        (Backend.OPENVINO, "CPU", {"num_cpus": 0, "num_gpus": 0, "resources": {CPU_RESOURCE: 1}}),
        (Backend.TORCH, "cuda", {"num_cpus": 0, "num_gpus": 1}),
        (Backend.ONNXRUNTIME, "cuda:0", {"num_cpus": 0, "num_gpus": 1}),
        (Backend.OPENVINO, "MYRIAD", {"num_cpus": 0, "num_gpus": 0, "resources": {"openvino:MYRIAD": 1}}),
        (Backend.OPENVINO, "GPU.1", {"num_cpus": 0, "num_gpus": 0, "resources": {"openvino:GPU.1": 1}}),
    ],
)
def test_each_case_reserves_exactly_its_device(backend: Backend, device: str, options: dict[str, Any]) -> None:
    assert task_options(case(device, backend)) == options


@pytest.mark.parametrize(
    ("backend", "device", "says"),
    [
        (Backend.TORCH, "cuda:1", "Use --device cuda"),
        (Backend.OPENVINO, "AUTO", "Name one device"),
        (Backend.OPENVINO, "MULTI:GPU,CPU", "Name one device"),
        (Backend.OPENVINO, "HETERO:GPU,CPU", "Name one device"),
    ],
)
def test_a_device_ray_cannot_reserve_is_refused(backend: Backend, device: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        resource_of(case(device, backend))
    assert says in str(info.value)


def test_the_cli_refuses_ray_address_without_the_ray_executor() -> None:
    with pytest.raises(UsageError) as info:
        make_executor("local", ray_address="auto")
    assert "--executor ray" in str(info.value)


def test_without_ray_the_executor_says_how_to_install_it(tmp_path: Path) -> None:
    """`backbench run --executor ray` where Ray is not installed: one line, the pip line."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        from core.cli.main import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "-m", "resnet18", "--executor", "ray",
         "--db", str(tmp_path / "r.db")],  # fmt: skip
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "needs Ray, which is not installed" in text
    assert "pip install 'backbench[cluster]'" in text


def test_backbench_run_on_a_ray_instance_of_its_own(tmp_path: Path) -> None:
    """`backbench run --executor ray` without --ray-address: a private Ray instance on this
    machine, started for the sweep and stopped after it."""
    from core.measure.executors.ray_executor import ray_installed

    if not ray_installed():
        missing("Ray is not installed: pip install 'backbench[cluster]' (make test installs it)")
    models = tiny_models(tmp_path, 2)
    db = tmp_path / "results.db"
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "run", "-m", models[0], "-m", models[1],
         "--backend", "onnxruntime", "--executor", "ray", "--db", str(db), "--name", "private",
         "--max-time", "0.3", "--min-iters", "5", "--target-ci", "0.5"],  # fmt: skip
        capture_output=True, text=True, timeout=240, cwd=REPO,
        env={**os.environ, "COLUMNS": "200", "BACKBENCH_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Cases by node:" in proc.stderr
    with Store(db) as store:
        run = store.get_run("private")
        ms = store.measurements(run.id)
    assert run.status == "finished" and run.spec.executor == "ray"
    assert run.manifest["executor"]["address"] == "local"
    assert [m.status for m in ms] == [Status.OK, Status.OK]
    assert len({m.conditions["node"]["id"] for m in ms}) == 1


def test_cases_whose_resource_every_node_lost_fail_rather_than_wait_forever() -> None:
    """The starvation check on its own: a Ray stand-in whose nodes no longer declare the
    waiting case's resource."""
    from core.measure.executors.base import SweepContext
    from core.measure.executors.ray_sweep import DriverOptions, Flight, RaySweep
    from core.results import Run

    committed: list[Measurement] = []
    cancelled: list[Any] = []
    fake_ray = SimpleNamespace(
        remote=lambda **options: (lambda fn: fn),
        nodes=lambda: [{"Alive": True, "Resources": {"CPU": 1.0}},
                       {"Alive": False, "Resources": {CPU_RESOURCE: 1.0}}],
        cancel=lambda ref, force=False: cancelled.append(ref),
    )  # fmt: skip
    spec = onnx_spec(("a.onnx",))
    observer = Recorder()
    sweep = SweepContext(
        spec=spec, run=Run(1, "r", spec, {}, 0.0, "running"), store=None, todo=spec.cases(),  # type: ignore[arg-type]
        observer=observer, cancel=None, commit=lambda m: committed.append(m) or m,
        commit_interrupted=lambda case, t: None, check_lease=lambda: None,
    )  # fmt: skip
    driver = RaySweep(fake_ray, sweep, DriverOptions(starve_s=0.0))
    driver.flights["task"] = Flight(0, spec.cases()[0])
    driver.check_starved()  # first sight: starved from now on
    driver.check_starved()  # starve_s later: failed
    assert cancelled == ["task"] and not driver.flights
    assert len(committed) == 1 and committed[0].status is Status.FAILED
    assert "no alive node of the cluster declares 'backbench_cpu'" in (committed[0].error or "")
    assert observer.ends == committed


# -- a cluster in this process --------------------------------------------------------------


class Recorder(SweepObserver):
    """The sweep's hooks as they came, from the driver's thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[Case] = []
        self.placed: list[tuple[Case, dict[str, Any]]] = []
        self.retries: list[Measurement] = []
        self.ends: list[Measurement] = []
        self.on_placed: Any = None
        self.on_end: Any = None

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        with self.lock:
            self.starts.append(case)

    def on_case_placed(self, index: int, total: int, case: Case, node: dict[str, Any]) -> None:
        with self.lock:
            self.placed.append((case, node))
        if self.on_placed is not None:
            self.on_placed(case, node)

    def on_case_retry(self, index: int, total: int, measurement: Measurement) -> None:
        with self.lock:
            self.retries.append(measurement)

    def on_case_end(self, index: int, total: int, measurement: Measurement) -> None:
        with self.lock:
            self.ends.append(measurement)
        if self.on_end is not None:
            self.on_end(measurement)


def tiny_models(folder: Path, count: int) -> tuple[str, ...]:
    """``count`` different tiny ONNX models (their own files, so their own sha256)."""
    from service.selftest import make_onnx

    paths = []
    for i in range(count):
        sub = folder / f"model{i}"
        sub.mkdir(parents=True, exist_ok=True)
        paths.append(str(make_onnx(sub, channels=4 + 2 * i)))
    return tuple(paths)


def onnx_spec(models: tuple[str, ...], rule: StoppingRule = QUICK) -> RunSpec:
    return RunSpec(models=models, backend=Backend.ONNXRUNTIME, device="cpu", stopping=rule)


def node_id(node: Any) -> str:
    value = node.node_id
    return value if isinstance(value, str) else value.hex()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A head (no measuring resource: the driver's) and two measuring nodes, each with
    one ``backbench_cpu`` and a resource of its own (``node_a``, ``node_b``)."""
    # Read as Ray is imported: otherwise Ray's crash handler takes over this process's
    # SIGTERM and SIGSEGV for the rest of the session (the executor sets it too).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        missing("Ray is not installed: pip install 'backbench[cluster]' (make test installs it)")
    cache = tmp_path_factory.mktemp("node-cache")
    saved = os.environ.get("BACKBENCH_CACHE_DIR")
    os.environ["BACKBENCH_CACHE_DIR"] = str(cache)  # the nodes inherit it
    t0 = time.monotonic()
    made = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": HEAD_SYSTEM_CONFIG},
    )
    a = made.add_node(num_cpus=1, resources={CPU_RESOURCE: 1, "node_a": 1})
    b = made.add_node(num_cpus=1, resources={CPU_RESOURCE: 1, "node_b": 1})
    made.wait_for_nodes()
    made.connect()
    startup_s = time.monotonic() - t0
    print(f"cluster of 3 nodes up in {startup_s:.1f} s")
    try:
        yield SimpleNamespace(cluster=made, a=a, b=b, ids={node_id(a): "a", node_id(b): "b"},
                              cache=cache, startup_s=startup_s)  # fmt: skip
    finally:
        ray.shutdown()
        made.shutdown()
        if saved is None:
            os.environ.pop("BACKBENCH_CACHE_DIR", None)
        else:
            os.environ["BACKBENCH_CACHE_DIR"] = saved


@pytest.fixture(scope="module")
def tiny_sweep(cluster: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Six tiny models, batch 1, across the two nodes: one sweep that tests (a) and (c)
    look at."""
    folder = tmp_path_factory.mktemp("tiny")
    models = tiny_models(folder, 6)
    store = Store(folder / "results.db")
    observer = Recorder()
    t0 = time.monotonic()
    with make_executor("ray") as executor:
        run = run_sweep(onnx_spec(models), store, executor=executor, observer=observer)
    wall_s = time.monotonic() - t0
    print(f"six tiny cases on two nodes in {wall_s:.1f} s")
    return SimpleNamespace(run=run, store=store, observer=observer, models=models,
                           measurements=store.measurements(run.id, include_samples=True), wall_s=wall_s)  # fmt: skip


def manifest_of(store: Store, env_id: str) -> dict[str, Any]:
    rows = store.query("SELECT manifest_json FROM environments WHERE id = ?", (env_id,))
    return dict(json.loads(rows[0][0]))


def test_a_sweep_across_two_nodes_lands_in_the_store_tagged_with_its_nodes(
    cluster: SimpleNamespace, tiny_sweep: SimpleNamespace
) -> None:
    run, store, ms = tiny_sweep.run, tiny_sweep.store, tiny_sweep.measurements
    assert run.status == "finished"
    assert sorted(m.case.model for m in ms) == sorted(tiny_sweep.models)  # the driver's paths
    assert all(m.status is Status.OK and m.stats is not None and m.stats.n >= 5 for m in ms), [
        (m.status, m.error) for m in ms
    ]
    assert all(len(m.samples_ns) == m.stats.n for m in ms)  # type: ignore[union-attr]
    # Each row is tagged with the node that measured it, and both nodes measured.
    tags = {m.conditions["node"]["id"] for m in ms}
    assert tags == set(cluster.ids), (tags, cluster.ids)
    nodes = {n["id"]: n for n in run.manifest["executor"]["nodes"]}
    for m in ms:
        tag = m.conditions["node"]
        assert tag["resource"] == CPU_RESOURCE
        # The node that the tag names is the one that declared its own resource ...
        own = f"node_{cluster.ids[tag['id']]}"
        assert own in nodes[tag["id"]]["resources"], nodes[tag["id"]]
        # ... and the row points at the manifest that node read of itself.
        manifest = manifest_of(store, str(m.environment_id))
        assert manifest["ray_node"]["id"] == tag["id"] and manifest["cpu_model"]
        assert manifest["packages"]["onnxruntime"]
        # The same isolation as a local run: a worker process of its own, its memory.
        assert m.conditions["start"] in ("fork-server", "exec")
        assert m.peak_rss_mb and m.baseline_rss_mb and m.phase_s.get("measure")
    # The live hooks saw every case start on the node that then measured it.
    placed = {c: n["id"] for c, n in tiny_sweep.observer.placed}
    assert {m.case: m.conditions["node"]["id"] for m in ms} == placed
    assert len(tiny_sweep.observer.ends) == len(ms) == len(tiny_sweep.observer.starts)
    # The model files reached the nodes through the object store, kept by sha256.
    cached = sorted(p.name for p in (cluster.cache / "cluster").glob("*/selftest.onnx"))
    assert len(cached) == len(tiny_sweep.models)


def test_two_cases_never_share_a_device_while_the_nodes_work_side_by_side(
    cluster: SimpleNamespace, tiny_sweep: SimpleNamespace
) -> None:
    ms = tiny_sweep.measurements
    spans: dict[str, list[tuple[float, float]]] = {}
    for m in ms:
        assert m.started_at is not None and m.duration_s is not None
        spans.setdefault(m.conditions["node"]["id"], []).append((m.started_at, m.started_at + m.duration_s))
    assert len(spans) == 2
    for node, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
            assert end <= start, f"two cases on node {node} at once: {intervals}"
    # Cases on the two nodes did run at the same time (a serial run cannot pass) ...
    (first, second) = spans.values()
    overlap = max(
        min(e1, e2) - max(s1, s2) for s1, e1 in first for s2, e2 in second
    )
    assert overlap > 0, spans
    # ... on this machine's shared cores, which the disturbance check sees.
    assert any(m.disturbed for m in ms)


def test_the_file_cache_refetches_a_damaged_copy_and_refuses_a_wrong_hash(
    cluster: SimpleNamespace, tmp_path: Path
) -> None:
    import hashlib

    import ray

    from core.measure.executors.node import bundle_key, cache_root, materialize

    data = b"weights " * 1000
    digest = hashlib.sha256(data).hexdigest()
    bundle = {"files": [{"name": "w.pth", "sha256": digest, "ref": [ray.put(data)]}]}
    path = Path(materialize(bundle))
    assert path.read_bytes() == data and path.parent == cache_root() / bundle_key(bundle["files"])
    path.write_bytes(b"damaged")
    assert Path(materialize(bundle)).read_bytes() == data  # fetched again
    wrong = {"files": [{"name": "x.pth", "sha256": "0" * 64, "ref": [ray.put(data)]}]}
    with pytest.raises(ModelFileError) as info:
        materialize(wrong)
    assert "sha256" in str(info.value)
    assert not (cache_root() / bundle_key(wrong["files"]) / "x.pth").exists()


def test_a_case_that_crashes_its_worker_fails_once_and_is_not_retried(
    cluster: SimpleNamespace, tmp_path: Path
) -> None:
    models = tiny_models(tmp_path, 2)
    store = Store(tmp_path / "results.db")
    with make_executor("ray", faults={0: "segfault"}) as executor:
        run = run_sweep(onnx_spec(models), store, executor=executor)
    every = store.measurements(run.id, all_attempts=True)
    assert run.status == "finished" and len(every) == 2
    crashed = next(m for m in every if m.case.model == models[0])
    assert crashed.status is Status.FAILED and crashed.failure is FailureKind.CRASHED
    assert "SIGSEGV" in (crashed.error or "") and crashed.attempt == 1
    assert next(m for m in every if m.case.model == models[1]).status is Status.OK


def test_a_resource_no_node_declares_is_refused_before_the_run(
    cluster: SimpleNamespace, tmp_path: Path
) -> None:
    spec = RunSpec(models=("resnet18",), backend=Backend.OPENVINO, device="MYRIAD")
    store = Store(tmp_path / "results.db")
    with make_executor("ray") as executor, pytest.raises(ClusterError) as info:
        run_sweep(spec, store, executor=executor)
    assert "openvino:MYRIAD" in str(info.value) and "ray start" in str(info.value)
    assert store.list_runs() == []


def test_nodes_of_another_backbench_version_are_refused_never_mixed(
    cluster: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the sweep, the nodes are asked their version and the sweep is refused; a
    node that escaped the check (one that joined later) refuses each case itself."""
    import core.measure.executors.ray_executor as ray_executor
    import core.measure.executors.ray_sweep as ray_sweep

    models = tiny_models(tmp_path, 2)
    store = Store(tmp_path / "results.db")
    for module in (ray_executor, ray_sweep):  # the driver is another version
        monkeypatch.setattr(module, "__version__", "9.9.9")
    with make_executor("ray") as executor, pytest.raises(ClusterError) as info:
        run_sweep(onnx_spec(models), store, executor=executor)
    assert "another backbench version than this one (9.9.9)" in str(info.value)
    assert store.list_runs() == []
    with make_executor("ray") as executor:
        executor._checked = (CPU_RESOURCE,)  # as if every node had answered 9.9.9
        run = run_sweep(onnx_spec(models), store, executor=executor)
    every = store.measurements(run.id, all_attempts=True)
    # Each case: refused, re-queued once, refused again; nothing measured by the node.
    assert len(every) == 4 and all(m.status is Status.FAILED and m.stats is None for m in every)
    assert all("refused the case" in (m.error or "") and "0.1.0" in (m.error or "") for m in every)


def test_cancel_stops_the_sweep_and_keeps_what_completed(cluster: SimpleNamespace, tmp_path: Path) -> None:
    models = tiny_models(tmp_path, 5)
    store = Store(tmp_path / "results.db")
    cancel = threading.Event()
    observer = Recorder()
    observer.on_end = lambda m: cancel.set()  # once the first case has a result
    rule = StoppingRule(target_ci=1e-6, min_iters=5, max_time_s=1.5, max_iters=10_000_000,
                        warmup_iters=1, warmup_time_s=0)  # fmt: skip
    with make_executor("ray") as executor:
        run = run_sweep(onnx_spec(models, rule), store, executor=executor, observer=observer, cancel=cancel)
    every = store.measurements(run.id, all_attempts=True)
    assert run.status == "cancelled"
    done = [m for m in every if m.status is Status.OK]
    assert done and len(done) < len(models)  # what completed stays; not everything ran
    for m in every:
        assert m.status in (Status.OK, Status.CANCELLED), (m.status, m.error)
    # A resume measures the rest: every case without a result, the cut-off ones too.
    assert len(store.measured_cases(run.id)) == len(done)


def test_the_agent_runs_a_job_on_the_cluster_with_the_same_job_events(
    cluster: SimpleNamespace, tmp_path: Path
) -> None:
    """`backbench-agent --executor ray --ray-address ADDR`: a client's job runs on the
    nodes, and the client (the GUI, `remote watch`) sees the usual job events."""
    from tests.service.agentlib import Agent, job_events, make_tiny_onnx, ort_spec, submit, until

    models = tmp_path / "models"
    models.mkdir()
    make_tiny_onnx(models / "tiny.onnx")
    agent = Agent(tmp_path, "--model-dir", str(models), "--executor", "ray",
                  "--ray-address", str(cluster.cluster.address))  # fmt: skip
    try:
        agent.start()
        with agent.client() as client:
            client.call("subscribe", topics=["jobs"])
            job_id = submit(client, ort_spec([1, 2, 4]), "ray-1")
            events = [e["method"] for e in job_events(until(client, job_id, timeout_s=120), job_id)]
            assert events[:2] == ["job.queued", "job.started"] and events[-1] == "job.finished"
            assert events.count("job.case_started") == events.count("job.case_finished") == 3
            results = client.call("get_results", run=client.call("status", job_id=job_id)["job"]["run_id"])
        assert results["run"]["status"] == "finished"
        assert [m["status"] for m in results["measurements"]] == ["ok"] * 3
        assert {m["conditions"]["node"]["id"] for m in results["measurements"]} <= set(cluster.ids)
    finally:
        code = agent.stop() if agent.proc is not None else 0
        log = agent.log()
        agent.close()
    assert code == 0 and "Traceback" not in log, log


def test_a_node_lost_mid_sweep_requeues_its_case_and_keeps_what_completed(
    cluster: SimpleNamespace, tmp_path: Path
) -> None:
    """Node c joins, measures a case, and is removed while it measures its second: that
    case fails with the reason and is measured again on a or b; nothing is lost."""
    made = cluster.cluster
    c = made.add_node(num_cpus=1, resources={CPU_RESOURCE: 1, "node_c": 1})
    made.wait_for_nodes()
    c_id = node_id(c)
    models = tiny_models(tmp_path, 7)
    store = Store(tmp_path / "results.db")
    observer = Recorder()
    on_c = []
    second_on_c = threading.Event()

    def placed(case: Case, node: dict[str, Any]) -> None:
        if node.get("id") == c_id:
            on_c.append(case)
            if len(on_c) == 2:
                second_on_c.set()

    observer.on_placed = placed
    removed: list[float] = []

    def remove_c() -> None:
        if second_on_c.wait(timeout=180):
            time.sleep(1.0)  # well inside the case's 3 s timed loop
            made.remove_node(c, allow_graceful=False)
            removed.append(time.time())

    remover = threading.Thread(target=remove_c, daemon=True)
    remover.start()
    t0 = time.monotonic()
    with make_executor("ray") as executor:
        run = run_sweep(onnx_spec(models, LONG), store, executor=executor, observer=observer)
    wall_s = time.monotonic() - t0
    remover.join(timeout=10)
    print(f"seven 3-s cases on three nodes, one lost, in {wall_s:.1f} s")
    assert removed, "node c never took a second case"
    assert run.status == "finished"
    current = store.measurements(run.id)
    every = store.measurements(run.id, all_attempts=True)
    # Every case has a result that counts, and it is ok.
    assert sorted(m.case.model for m in current) == sorted(models)
    assert all(m.status is Status.OK for m in current), [(m.case.model, m.error) for m in current]
    # The case cut off on c: a failed attempt saying why, then one on a surviving node.
    lost = [m for m in every if m.status is not Status.OK]
    assert len(lost) == 1, [(m.status, m.error) for m in lost]
    assert lost[0].failure is FailureKind.INTERRUPTED and lost[0].conditions["node"]["id"] == c_id
    assert "was lost" in (lost[0].error or "") and "re-queued" in (lost[0].error or "")
    again = next(m for m in current if m.case == lost[0].case)
    assert again.attempt == 2 and again.conditions["node"]["id"] in cluster.ids
    assert observer.retries and observer.retries[0].case == lost[0].case
    # What c completed before it went stays, and counts.
    from_c = [m for m in current if m.conditions["node"]["id"] == c_id]
    assert len(from_c) == 1 and from_c[0].status is Status.OK
    assert len(current) + 1 == len(every)
