# Two commands a user needs: `make run` (main job) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU build of torch, pinned: a bare `torch` pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test-tools test parity bench-generator run proto images image-test helm clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-da3.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[test]'
	# Depth-Anything-3 without its heavy declared dependencies (see the file's comments).
	$(BIN)/pip install -q --no-deps -r requirements-da3.txt
	touch $(STAMP)

run: install
	$(BIN)/inspatio run --sample --traj orbit_left.txt --out outputs

# Debian's Prometheus for the metrics tests, Chromium + chromedriver for the viewer test (apt-get, only when missing).
test-tools:
	tools/install_test_tools.sh

test: install test-tools
	$(BIN)/python -m pytest -q

parity: install
	$(BIN)/inspatio parity $(or $(PACK),../shared/parity)

bench-generator: install
	$(BIN)/inspatio bench generator

# Regenerate the gRPC stubs (libs/inspatio_world/rpc/generated) from protos/.
proto: install
	$(BIN)/python protos/generate.py

# The four service images (needs a Docker engine); TAG=..., REGISTRY=... to push. See deploy/docker/README.md.
images:
	deploy/docker/build.sh $(TAG)

# Builds the four images with podman and runs a job through them on 127.0.0.1 (root; podman, mmdebstrap).
image-test: install
	PYTHON=$(abspath $(BIN))/python deploy/docker/image-test/run.sh

# helm into .tools/bin (the chart tests fetch it themselves).
helm:
	$(PYTHON) tools/get_helm.py

clean:
	rm -rf $(VENV) .pytest_cache
