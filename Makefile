# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out

.PHONY: run test venv lint clean test-deps edge-runtime bundles test-bundles package package-full

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first, pinned to the builds this project is tested with.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# [cluster] (Ray) too: the Ray executor's tests run on an in-process cluster.
	$(PY) -m pip install -q -e '.[measure,gui,dev,cluster]'
	touch $(STAMP)

# A quick benchmark of the paper suite on the local CPU, with PyTorch (batch 1) and
# OpenVINO (batch 1, 2 and 4, so the report can fit time per image against batch size),
# then the report. Results land in $(OUT)/results.db; the report in $(OUT)/report.
run: $(STAMP)
	mkdir -p $(OUT)
	$(VENV)/bin/backbench run --suite paper --backend torch --device cpu --batch 1 \
	    --min-iters 10 --max-time 1 --target-ci 0.05 --db $(OUT)/results.db --name quick-torch-cpu
	$(VENV)/bin/backbench run --suite paper --backend openvino --device CPU --batch 1,2,4 \
	    --min-iters 10 --max-time 1 --target-ci 0.05 --db $(OUT)/results.db --name quick-openvino-cpu
	$(VENV)/bin/backbench results --db $(OUT)/results.db
	$(VENV)/bin/backbench report --db $(OUT)/results.db -o $(OUT)/report
	@echo "Report: $(OUT)/report/index.html"

# The layer contracts of docs/ARCHITECTURE.md (pyproject's [tool.importlinter]), then
# the whole suite.
test: $(STAMP) test-deps edge-runtime
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# System packages the real-component tests use (an sshd for the SSH tests).
test-deps:
	@bash packaging/test-deps.sh

# The OpenVINO 2022.3 LTS edge runtime, the last that drives an NCS2: a venv of pyenv's
# CPython 3.10 with openvino==2022.3.2, in $(EDGE_VENV). Without a CPython 3.10 it says
# so and the tests that need it are skipped (failed under CI=true). See docs/INSTALL.md.
EDGE_VENV ?= .venv-edge
edge-runtime: $(STAMP)
	@bash packaging/edge-runtime.sh $(EDGE_VENV)

# PyInstaller one-folder bundles, each built from its own clean venv under build/bundles:
# the GUI (no torch, no openvino) and the edge agent (openvino + onnxruntime, no torch).
BUNDLES ?= dist/bundles
bundles: $(STAMP)
	$(PY) packaging/bundles.py build gui agent-edge --out $(BUNDLES)

# CI's second step (.ci/run): build both bundles, run their --version and --self-test,
# and build and install the .debs from them into a scratch root.
test-bundles: bundles
	BACKBENCH_BUNDLES=$(BUNDLES) $(PY) -m pytest -q -p no:cacheprovider tests/bundles \
	    tests/packaging/test_packages.py::test_real_bundles

# The installers: backbench-agent and backbench-gui .debs and a tarball with install.sh.
package: bundles
	$(PY) packaging/build_packages.py --bundles $(BUNDLES) --out dist/packages

# The full agent (torch, torchvision, openvino): built outside CI (about 5 GB).
package-full: $(STAMP)
	$(PY) packaging/bundles.py build agent-full --out $(BUNDLES)
	$(PY) packaging/build_packages.py --bundles $(BUNDLES) --out dist/packages-full \
	    --agent-flavour full --compression zstd agent

lint: $(STAMP)
	$(VENV)/bin/ruff check core service gui tests bench

clean:
	rm -rf $(OUT) .pytest_cache
