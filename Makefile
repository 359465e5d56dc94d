# The two commands of the README: `make demo` and `make test`. Both create and use .venv/.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint unit integration bench down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(PY) -m ray_deploy.demo

lint: install
	$(PY) -m ruff check ray_deploy jupyter_ext tests bench
	$(PY) -m ruff format --check ray_deploy jupyter_ext tests bench
	$(PY) -m mypy ray_deploy

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m pytest tests/integration -q

test: lint
	$(PY) -m pytest -q -rs

bench: install
	$(PY) bench/serving.py

down: install
	$(VENV)/bin/ray-deploy down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
