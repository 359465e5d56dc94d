# The two commands of the README: `make demo` and `make test`. Both create and use .venv/.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# The JupyterLab side panel: `pip install -e` builds it (npm install + tsc + jupyter-builder), so the install
# stamp depends on its sources; `make test` runs its jest tests.
FRONTEND     := jupyter_ext/frontend
FRONTEND_SRC := $(shell find $(FRONTEND)/src $(FRONTEND)/style -type f 2>/dev/null) \
                $(addprefix $(FRONTEND)/,package.json package-lock.json tsconfig.json install.json)

.PHONY: install demo test lint unit integration jstest bench bench-autoscale bench-deploy bench-drift bench-tune down clean

install: $(STAMP)

# the V2 gRPC modules are generated from the .proto by hatch_build.py at install, so they depend on it too
$(STAMP): pyproject.toml hatch_build.py ray_deploy/dataplane/grpc_v2/inference.proto $(FRONTEND_SRC)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# jsonschema's optional IRI format check (the format-nongpl extra jupyter-events asks for) compiles ~40 Lark
	# grammars on import: 1 s more for `import ray` in every Ray worker, so in every replica start. Nothing here
	# validates IRIs; without it jsonschema skips that one format.
	$(PY) -m pip uninstall -q -y rfc3987-syntax
	touch $(STAMP)

demo: install
	$(PY) -m ray_deploy.demo

lint: install
	$(PY) -m ruff check ray_deploy jupyter_ext tests bench
	$(PY) -m ruff format --check ray_deploy jupyter_ext tests bench
	$(PY) -m mypy ray_deploy jupyter_ext

unit: install
	$(PY) -m pytest tests/unit -q -n 2

integration: install
	$(PY) -m pytest tests/integration -q

jstest: install
	cd $(FRONTEND) && (test -d node_modules || npm ci) && npm test --silent

# unit tests (no cluster, CPU-bound) on both cores; then the tests that share one local cluster, in one process
test: lint jstest
	$(PY) -m pytest tests/unit -q -rs -n 2 --durations=10
	$(PY) -m pytest tests/integration tests/ui -q -rs --durations=20

bench: install
	$(PY) bench/serving.py

# a load step on a 1-2 replica deployment: time to a second replica, and back to one
bench-autoscale: install
	$(PY) bench/autoscale.py $(BENCH_AUTOSCALE_ARGS)

# first deploy, new version, scale, delete and scale from zero of a scikit-learn model, timed by phase
bench-deploy: install
	$(PY) bench/deploy.py $(BENCH_DEPLOY_ARGS)

bench-tune: install
	$(PY) bench/tune.py

down: install
	$(VENV)/bin/ray-deploy down

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(FRONTEND)/node_modules $(FRONTEND)/lib $(FRONTEND)/tsconfig.tsbuildinfo jupyter_ext/labextension

# Drift benchmark: ours vs a plain numpy/scipy pass vs Evidently. Evidently is NOT a dependency of ray-deploy:
# it lives in its own venv (.venv-bench). evidently 0.7 cannot import under pandas 3 (which .venv has), so the
# venv is separate (not --system-site-packages on .venv) with pandas<3; ray_deploy is taken from this tree via
# PYTHONPATH (the bench needs only ray_deploy.config/.drift: numpy, pandas, scipy, scikit-learn, pydantic).
# Smaller run: make bench-drift BENCH_DRIFT_ARGS="--rows 200000"
BENCH_VENV       ?= .venv-bench
BENCH_DRIFT_ARGS ?=

$(BENCH_VENV)/.installed:
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q evidently "pandas<3" numpy scipy scikit-learn pydantic pyyaml requests tqdm
	touch $(BENCH_VENV)/.installed

bench-drift: $(BENCH_VENV)/.installed
	PYTHONPATH=$(CURDIR) $(BENCH_VENV)/bin/python bench/drift.py $(BENCH_DRIFT_ARGS)
