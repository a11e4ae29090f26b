# c2f — every target sets up .venv by itself from a machine that has only Python 3.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch/torchvision/torchaudio that work together (torchaudio 2.11 runs on torch 2.14.1).
TORCH  ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.*
ARGS   ?=
# the suite's tests are mostly single-threaded subprocesses: two workers keep two cores busy
TEST_WORKERS ?= 2
STEP_ARGS  ?=
EPOCH_ARGS ?=
REPORT ?= runs
DATASET ?=
SRC    ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-fast test-load bench bench-gpu prepare report lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	  || { echo "c2f needs Python 3.10 or later (tested on 3.10 to 3.13): give one, as in make run PYTHON=python3.13"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# tinysoundfont declares pyaudio, which does not build on Linux and is not needed
	$(BIN)/python -m pip install -q --no-deps tinysoundfont
	@touch $(STAMP)

setup: $(STAMP)  ## create or refresh the virtual environment

run: $(STAMP)  ## coarse-to-fine AST (Fshift 4->1) on the built-in dataset, on CPU, in minutes
	$(BIN)/python run.py compression=fshift schedule=2phase schedule.c=4 $(ARGS)

test: $(STAMP)  ## the whole test suite, as CI runs it (TEST_WORKERS processes, one file each)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-fast: $(STAMP)  ## the tests not marked slow
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(ARGS)

test-load: $(STAMP)  ## SLURM load test at full size: 50 jobs, failures, a kill, a preemption
	C2F_LOAD_JOBS=50 $(BIN)/python -m pytest -q -s tests/test_slurm_load.py $(ARGS)

bench: $(STAMP)  ## CPU: time vs FLOPs per method and C (AST, CNN14, HTS-AT), loop, frontend, dataset preparation, scoring -> bench/
	$(BIN)/python -m bench.step_time --out bench/results.md $(STEP_ARGS)
	$(BIN)/python -m bench.epoch_time --out bench/results_epoch.md $(EPOCH_ARGS)
	$(BIN)/python -m bench.prepare_speed --out bench/results_prepare.md
	$(BIN)/python -m bench.model_ratios --out bench/results_models.md
	$(BIN)/python -m bench.metrics_speed --out bench/results_metrics.md

bench-gpu: $(STAMP)  ## one GPU, under 5 min: precisions, FLOPs, epoch time vs FLOPs -> bench/results_gpu.md
	$(BIN)/python -m bench.gpu --out bench/results_gpu.md $(ARGS)

prepare: $(STAMP)  ## a dataset from your downloads: make prepare DATASET=vggsound SRC=/data/vggsound
	@test -n "$(DATASET)" -a -n "$(SRC)" || { echo "usage: make prepare DATASET=NAME SRC=FOLDER [ARGS='--workers 8 ...']"; \
	  $(BIN)/python -m c2f.data.prepare --help | sed -n '/positional/,$$p'; exit 2; }
	$(BIN)/python -m c2f.data.prepare $(DATASET) --src $(SRC) $(ARGS)

report: $(STAMP)  ## savings tables, plots and dashboard from run directories -> $(REPORT)/report
	$(BIN)/python -m c2f.report $(REPORT) $(ARGS)

lint: $(STAMP)  ## ruff
	$(BIN)/python -m ruff check c2f tests run.py bench hydra_plugins

clean:  ## remove runs, outputs and the virtual environment (data/ is kept)
	rm -rf runs outputs multirun $(VENV)
