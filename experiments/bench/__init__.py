"""Benchmarks (`make bench`): throughput, latency and memory, and a classic baseline's accuracy.

`python -m experiments.bench [--quick] [--only features,training,inference,memory,baseline]
[--repeats N] [--out bench/results.json]` prints one table and writes the JSON. Every timed
figure is the median of `--repeats` runs with min and max; the machine is recorded with them.

Sections, one module each, each calling the code users run:
- `features`: seconds of audio per second for the acoustic cache and for openSMILE alone
  (`experiments.features.measure_throughput`, same workers), lexical, cold and warm `extract`;
  the acoustic front ends through `experiments.bench_frontends` where that module exists.
  Also the IEMOCAP-sized synthetic feature cache, written by `features.store.write_features`.
- `training`: utterances per second (acoustic attention, MMMLA; bucketing on/off) over a fixed
  number of steps of the trainer `experiments.train.build` makes from the variant's config;
  the epoch time is extrapolated from that rate (train part only), and the share of step
  time spent waiting for data and the padding overhead are recorded (what bucketing cuts).
  The baseline section: `experiments.baselines` (openSMILE ComParE_2016 functionals +
  linear SVM) against the acoustic attention model trained by `python -m experiments.train
  fit` on the same speaker-independent split (UA, WA, macro F1).
- `inference`: model load time and latency p50/p95 of `experiments.inference.Predictor`
  (ASR, features, model) on 1, 5 and 20 s clips cut from the corpus's speech; memory: peak
  RSS (psutil, process tree) of a training child and of the predictor process.
- `cli`: the table, the arguments and `main`; `common`: figures, the machine, child
  processes, the shared `Context` and the corpora.

Everything runs in its own cache (`--cache`, default `cache/bench`).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
