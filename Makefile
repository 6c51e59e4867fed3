# Two entry points (README): `make run` runs the main job, `make test` runs the test suite.
# Both create .venv and install everything on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHOTS ?= 10%
MODEL ?= test_resnet

.PHONY: run test bench sources clean

sources:
	bash scripts/fetch_sources.sh

$(STAMP): pyproject.toml constraints.txt scripts/fetch_sources.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	bash scripts/fetch_sources.sh
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gaia-bench run --model $(MODEL) --shots $(SHOTS)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/linear_probe.py

clean:
	rm -rf $(VENV) build *.egg-info
