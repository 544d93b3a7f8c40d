#!/usr/bin/env bash
# The OpenVINO 2022.3 LTS edge runtime: a venv of CPython 3.10 with openvino==2022.3.2
# (the last release that drives an Intel NCS2 / MYRIAD) and the few packages backbench's
# worker needs there (no torch: the agent or CLI converts zoo models to ONNX for it).
#
#   bash packaging/edge-runtime.sh VENV_DIR
#
# Finds the interpreter as $EDGE_PYTHON, else python3.10 on PATH, else pyenv's
# ~/.pyenv/versions/3.10*/bin/python3.10. Idempotent: a stamp file in VENV_DIR records
# what was installed, and a rerun with the same set is instant. Prints the runtime entry
# to paste into ~/.config/backbench/config.toml (CLI) or /etc/backbench/agent.toml
# (agent). Without a CPython 3.10 it says so in one line and exits 0.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
name=openvino-2022.3
# What the worker imports on this runtime: OpenVINO 2022.3 and its numpy 1.x, psutil
# (the worker's memory readings), tomli (3.10 has no tomllib), Pillow (accuracy jobs
# decode their dataset's images in the worker).
packages=("openvino==2022.3.2" "numpy>=1.23,<2" "psutil>=5.9" "tomli>=2" "pillow>=9")
stamp_text="backbench edge runtime 2: ${packages[*]}"

is_py310() {
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1
}

# The first candidate that runs as CPython 3.10 (pyenv's shim for python3.10 is on PATH
# even where no 3.10 is selected, and fails when run: the next candidate is tried).
find_python() {
    local cand
    if [ -n "${EDGE_PYTHON:-}" ]; then
        is_py310 "$EDGE_PYTHON" && { echo "$EDGE_PYTHON"; return 0; }
        echo "edge-runtime: EDGE_PYTHON=$EDGE_PYTHON is not a working CPython 3.10." >&2
        return 1
    fi
    for cand in "$(command -v python3.10 2>/dev/null || true)" "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
        if is_py310 "$cand"; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

if ! python=$(find_python); then
    echo "edge-runtime: no CPython 3.10 found (set EDGE_PYTHON, or install one with pyenv: pyenv install 3.10); the OpenVINO 2022.3 runtime tests are skipped."
    exit 0
fi

stamp=$venv/.backbench-edge-stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] && [ -x "$venv/bin/python" ]; then
    echo "edge-runtime: $venv is up to date ($(cat "$venv/.backbench-edge-version" 2>/dev/null || echo openvino 2022.3.2))."
else
    t0=$(date +%s)
    echo "edge-runtime: creating $venv with $("$python" --version 2>&1) and ${packages[*]} ..."
    rm -f "$stamp"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "${packages[@]}"
    # The check: the worker's framework imports and runs on the CPU device.
    version=$("$venv/bin/python" -c '
import sys
from openvino.runtime import Core, get_version
assert "CPU" in Core().available_devices, Core().available_devices
print("openvino %s on Python %s" % (get_version(), sys.version.split()[0]))')
    echo "$version" >"$venv/.backbench-edge-version"
    echo "$stamp_text" >"$stamp"
    echo "edge-runtime: $version, ready in $(( $(date +%s) - t0 )) s ($(du -sh "$venv" | cut -f1))."
fi

py_abs=$(cd "$venv" && pwd)/bin/python
cat <<EOF
# Paste into ~/.config/backbench/config.toml (backbench run --runtime $name) or
# /etc/backbench/agent.toml (backbench agent --config ...; clients: --runtime $name):
[runtimes."$name"]
python = "$py_abs"
pythonpath = ["$repo"]
description = "OpenVINO 2022.3.2 on CPython 3.10 (NCS2 / MYRIAD)"
EOF
