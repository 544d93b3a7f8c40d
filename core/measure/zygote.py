"""The fork server: a process that imports the frameworks once and forks each case.

Started by core.measure.forkserver as ``python -m core.measure.zygote --preload KEY``
(a frozen build runs ``backbench zygote ...``), in a session of its own, with PDEATHSIG
set to its parent. It imports the modules of its preload set (torch and torchvision;
openvino; the converter's torch + openvino), then proves it is safe to fork: one thread,
no CUDA context, no OpenVINO Core (those are only ever created in a forked child). It
answers on stdout with one JSON line, then serves requests on stdin, one JSON line each:

- ``{"op": "fork", "job": {...}, "fifo": PATH, "stderr": PATH}``: open the FIFO for
  writing (the supervisor already holds its read end), fork, and answer
  ``{"forked": PID}``. The child starts a session of its own, sets PDEATHSIG, sends its
  stderr to PATH and runs the job exactly as an exec'd worker would
  (``core.measure.worker.serve``), then ``_exit``s;
- when a child ends, the server reaps it with ``wait4`` and reports
  ``{"exited": PID, "status": STATUS, "maxrss_kb": N}``: the supervisor cannot wait for
  a grandchild, so the exit status and peak RSS come this way;
- end of input: the server kills what it still runs and exits.

The server never runs a thread, so its loop waits in ``select`` on stdin and a
SIGCHLD wake-up pipe, and costs nothing between requests.

A thread that a preloaded library starts at import time makes forking unsafe. The
known one is OpenVINO's telemetry sender (a ThreadPoolExecutor that ``import openvino``
starts): the server shuts such executors down before it answers. OpenBLAS (numpy)
starts its pool at import unless ``OPENBLAS_NUM_THREADS=1``, so the server imports with
that set (a measured process's numpy BLAS is not on the timed path; the frameworks use
their own thread pools). ONNX Runtime starts a native thread at import, so the
onnxruntime set preloads numpy and backbench only, and each child imports onnxruntime
itself (0.2 s). Any other thread found makes the server say it is unsafe; the
supervisor then starts workers with fork+exec and records why.

This module stays compatible with Python 3.10, like the worker.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import sys
import time
from typing import Any, NoReturn

from core.measure.preload import ALWAYS, PRELOAD

EXIT_OK = 0
EXIT_UNSAFE = 4


def thread_names() -> list[str]:
    """The names of this process's threads, from /proc (native threads included)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:  # not Linux: threading's view is all there is
        import threading

        return [t.name for t in threading.enumerate()]
    names = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as fh:
                names.append(fh.read().strip())
        except OSError:
            continue  # a thread that just ended
    return names


def _stop_executors() -> int:
    """Shut down thread pools that imports started (OpenVINO's telemetry sender)."""
    from concurrent.futures import ThreadPoolExecutor

    stopped = 0
    for obj in gc.get_objects():
        if type(obj) is ThreadPoolExecutor:  # exact type: isinstance wakes lazy modules
            obj.shutdown(wait=True, cancel_futures=True)
            stopped += 1
    return stopped


def cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # a torch without CUDA support
        return False


def unsafe_reason(settle_s: float = 2.0) -> str | None:
    """Why forking now would be unsafe, or None. A thread that was joined may linger in
    /proc for a few milliseconds while the kernel tears it down: allow ``settle_s``."""
    names = thread_names()
    deadline = time.monotonic() + settle_s
    while len(names) > 1 and time.monotonic() < deadline:
        time.sleep(0.005)
        names = thread_names()
    if len(names) > 1:
        return f"{len(names)} threads are running ({', '.join(sorted(names))}); a fork copies only one"
    if cuda_initialized():
        return "torch has a CUDA context, which a forked child cannot use"
    return None


def preload(key: str) -> tuple[list[str], list[str]]:
    """Import a preload set; returns (imported, missing). A missing module is left to the
    child, which fails on it with the usual install hint."""
    if key not in PRELOAD:
        raise SystemExit(f"unknown preload set {key!r}")
    imported, missing = [], []
    with _single_threaded_blas():
        for name in (*ALWAYS, *PRELOAD[key]):
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
            except OSError:  # a wheel whose shared libraries cannot load
                missing.append(name)
            else:
                imported.append(name)
    _stop_executors()
    return imported, missing


@contextlib.contextmanager
def _single_threaded_blas() -> Any:
    """OpenBLAS reads OPENBLAS_NUM_THREADS once, when numpy loads it: set it for the
    imports, and restore it after, so a measured child's own subprocesses see the
    user's value."""
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if blas is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = blas


def _write_line(fd: int, obj: dict[str, Any]) -> None:
    data = memoryview((json.dumps(obj) + "\n").encode())
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _child(request: dict[str, Any], fifo_fd: int, zygote_pid: int, keep: tuple[int, ...]) -> None:
    """In the forked child: become a worker for one job, then _exit. Never returns."""
    code = 3
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        for fd in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND)
        os.dup2(err, 2)
        os.close(err)
        os.close(devnull)
        from core.measure import worker

        worker.set_parent_death_signal(zygote_pid)
        worker.set_process_name("bb-worker")
        code = worker.serve(request["job"], fifo_fd, parent_pid=zygote_pid, start="fork-server")
    except BaseException as exc:  # noqa: BLE001 - the child must reach _exit, whatever happens
        with contextlib.suppress(Exception):
            os.write(2, f"worker (forked): {type(exc).__name__}: {exc}\n".encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def serve(key: str, parent_pid: int) -> int:
    with _single_threaded_blas():  # the worker module imports numpy
        from core.measure.worker import current_rss_mb, set_parent_death_signal, set_process_name

    set_parent_death_signal(parent_pid)
    set_process_name("bb-forkserver")
    out = os.dup(1)  # answers; fd 1 itself goes to /dev/null so imports cannot write there
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    t0 = time.monotonic()
    imported, missing = preload(key)
    reason = unsafe_reason()
    _write_line(
        out,
        {
            "ready": reason is None,
            "pid": os.getpid(),
            "preload": key,
            "imported": imported,
            "missing": missing,
            "import_s": round(time.monotonic() - t0, 3),
            "rss_mb": current_rss_mb(),
            "threads": len(thread_names()),
            "cuda_initialized": cuda_initialized(),
            "unsafe": reason,
        },
    )
    if reason is not None:
        return EXIT_UNSAFE

    # Imported objects move out of the garbage collector's generations, so a child's
    # collections do not write to (and copy, and have charged to it) every page of them.
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up byte is written
    children: set[int] = set()
    pending = b""
    my_pid = os.getpid()
    try:
        while True:
            try:
                ready, _, _ = select.select([0, wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            _reap(children, out)
            if 0 not in ready:
                continue
            chunk = os.read(0, 1 << 20)
            if not chunk:
                return EXIT_OK  # the supervisor is done (or gone)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if request.get("op") != "fork":
                    _write_line(out, {"error": f"unknown request {request.get('op')!r}"})
                    continue
                reason = unsafe_reason()
                if reason is not None:
                    _write_line(out, {"error": f"unsafe to fork: {reason}"})
                    continue
                try:
                    fifo_fd = os.open(request["fifo"], os.O_WRONLY | os.O_NONBLOCK)
                    os.set_blocking(fifo_fd, True)
                except OSError as exc:
                    _write_line(out, {"error": f"cannot open the frame pipe: {exc}"})
                    continue
                threads_at_fork = len(thread_names())
                pid = os.fork()
                if pid == 0:
                    _child(request, fifo_fd, my_pid, keep=(out, wake_r, wake_w))
                os.close(fifo_fd)
                children.add(pid)
                _write_line(out, {"forked": pid, "threads": threads_at_fork})
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        _reap(children, out, block=True)


def _reap(children: set[int], out: int, block: bool = False) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        with contextlib.suppress(OSError):
            _write_line(out, {"exited": pid, "status": status, "maxrss_kb": usage.ru_maxrss})


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="backbench zygote", description=argparse.SUPPRESS)
    parser.add_argument("--preload", required=True, choices=sorted(PRELOAD))
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    code = serve(args.preload, args.parent_pid)
    from core.measure.worker import exit_now  # imported by serve already

    exit_now(code)


if __name__ == "__main__":
    main()
