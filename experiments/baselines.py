"""Classic baselines the suite's models are compared with, one split (fold) at a time.

- `functionals(files, corpus=..., speed=...) -> (N, 6373)`: openSMILE ComParE_2016
  functionals, cached per corpus in `cache/<corpus>/functionals/` (npz, read without pickle);
  with `speed` != 1 of each file played that much faster (`datamodules.audio.change_speed`,
  the models' speed perturbation), cached apart.
- `svm_on_functionals(train_X, train_y, test_X, test_y, val=...)`: standardised functionals
  and a linear SVM, C picked on the validation part's UA.
- `logistic_probe(train_states, train_y, test_states, test_y, val=...)`: a logistic regression
  on pooled frame states (mean ⊕ std), e.g. a front end's or an encoder layer's outputs.
- `standardise_by_speaker(arrays, speakers)`: each speaker's frames or feature vectors
  z-scored with that speaker's own statistics, the baselines' counterpart of the models'
  `--data.normalization speaker` (no labels used; test speakers use their own audio).
- `baseline_scores(corpus, split)`: the SVM baseline on a split dict of `datamodules.splits`.
- `functional_matrix` / `svm_on_split`: the functionals of a whole corpus (per speed,
  standardised per speaker or not) and the SVM on one split of it with speed-perturbed
  copies, as `experiments.benchmark` fits them.

Every scorer returns `{"wa", "ua", "macro_f1", ...}`. The standardisation is part of the
fitted pipeline, so it sees only the rows the classifier is fitted on, never test rows.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.corpus import as_corpus
from datamodules.paths import atomic_write_bytes, corpus_dir
from lightning_modules.probe_init import C_GRID as PROBE_C_GRID

FEATURE_SET = "ComParE_2016"
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


class BaselineError(Exception):
    """A baseline input that cannot be used (no audio, a missing part); the message says why."""


def scores(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> dict[str, float]:
    """WA (accuracy), UA (mean per-class recall) and macro F1 of label arrays."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with warnings.catch_warnings():  # a class absent from y_pred: recall 0, no warning wanted
        warnings.simplefilter("ignore")
        return {
            "wa": float(accuracy_score(y_true, y_pred)),
            "ua": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        }


def _cache_file(corpus: str, files: Sequence[str], speed: float = 1.0) -> Path:
    h = hashlib.sha256(FEATURE_SET.encode())
    for f in files:  # the file list and each file's size and mtime
        st = os.stat(f)
        h.update(f"\n{f}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    tag = "" if speed == 1.0 else f"-sp{speed:g}"
    return corpus_dir(corpus) / "functionals" / f"{FEATURE_SET}{tag}-{h.hexdigest()[:16]}.npz"


def _sped_up_functionals(smile: Any, files: Sequence[str], speed: float) -> np.ndarray:
    from datamodules.audio import SAMPLE_RATE, change_speed, load_audio

    rows = [
        smile.process_signal(change_speed(load_audio(f), speed), SAMPLE_RATE).to_numpy()[0]
        for f in files
    ]
    return np.stack(rows).astype(np.float32)


def functionals(
    files: Sequence[str], *, corpus: str, workers: int = 1, speed: float = 1.0
) -> np.ndarray:
    """(N, 6373) float32 ComParE_2016 functionals of whole audio files, cached per corpus;
    `speed` != 1: of each file read at 16 kHz and played that many times as fast (one
    process), as the models' copies are."""
    import opensmile

    files = [str(f) for f in files]
    missing = [f for f in files if not f or not os.path.isfile(f)]
    if missing:
        raise BaselineError(
            f"corpus '{corpus}': {len(missing)} audio files missing, e.g. {missing[0]!r}"
        )
    path = _cache_file(corpus, files, speed)
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            if data["files"].tolist() == files:
                return data["x"]
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.Functionals,
        multiprocessing=workers > 1,
        num_workers=workers,
    )
    if speed == 1.0:
        x = smile.process_files(files).to_numpy(dtype=np.float32)
    else:
        x = _sped_up_functionals(smile, files, speed)
    buf = io.BytesIO()
    np.savez(buf, x=x, files=np.array(files, dtype=str))
    atomic_write_bytes(path, buf.getvalue())
    return x


def pool_states(states: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) sequences of (T, D) frame states -> (N, 2D): mean ⊕ std over time."""
    return np.stack(
        [np.concatenate([s.mean(0), s.std(0)]) for s in (np.asarray(x, np.float64) for x in states)]
    ).astype(np.float32)


def standardise_by_speaker(
    arrays: Sequence[np.ndarray], speakers: Sequence[str]
) -> list[np.ndarray]:
    """Each array ((T, D) frames or a (D,) feature vector) minus its speaker's mean over all of
    that speaker's rows, divided by their sd (1 where a dimension is constant)."""
    if len(arrays) != len(speakers):
        raise BaselineError(f"{len(arrays)} arrays but {len(speakers)} speakers")
    out: list[np.ndarray] = [np.asarray(a) for a in arrays]
    groups: dict[str, list[int]] = {}
    for i, spk in enumerate(speakers):
        groups.setdefault(str(spk), []).append(i)
    for members in groups.values():
        rows = np.concatenate([np.atleast_2d(np.asarray(arrays[i], np.float64)) for i in members])
        mean, sd = rows.mean(0), rows.std(0)
        sd[sd < 1e-8] = 1.0
        for i in members:
            out[i] = ((np.asarray(arrays[i], np.float64) - mean) / sd).astype(np.float32)
    return out


def _fit_scored(
    make: Any,
    grid: Sequence[float],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    refit: bool = True,
    val_copies: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Pick the grid value on val UA (fitted on train), refit on train + val (with `refit`;
    otherwise keep the train-only fit, the data a neural model trains on), score on test.
    `val_copies`: rows that join val in the refit only (its speed-perturbed copies)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(c: float, x: np.ndarray, y: np.ndarray) -> Any:
        # the scaler is fitted inside the pipeline: on these rows only
        clf = make_pipeline(StandardScaler(), make(c))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at tiny C
            return clf.fit(np.nan_to_num(x), y)

    (xtr, ytr), (xte, yte) = train, test
    if len(set(np.asarray(ytr).tolist())) < 2:
        raise BaselineError("the training part holds fewer than two classes")
    val_ua: dict[float, float] = {}
    if val is not None and len(val[1]) and len(grid) > 1:
        val_ua = {
            c: scores(val[1], fit(c, xtr, ytr).predict(np.nan_to_num(val[0])))["ua"] for c in grid
        }
        best = max(grid, key=lambda c: (val_ua[c], -c))
        if refit:
            extra = [val, *([val_copies] if val_copies is not None else [])]
            xtr = np.concatenate([xtr, *(x for x, _ in extra)])
            ytr = np.concatenate([ytr, *(y for _, y in extra)])
    else:
        best = grid[len(grid) // 2]
    t0 = time.perf_counter()
    clf = fit(best, xtr, ytr)
    fit_s = time.perf_counter() - t0
    return {
        **scores(yte, clf.predict(np.nan_to_num(xte))),
        "C": best,
        "val_ua_by_C": {str(c): round(v, 3) for c, v in val_ua.items()},
        "fit_s": round(fit_s, 2),
    }


def svm_on_functionals(
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    grid: Sequence[float] = C_GRID,
    refit: bool = True,
    val_copies: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Standardised features + linear SVM; C on val UA, then refit on train + val (`refit`,
    with `val_copies` too); test scores."""
    from sklearn.svm import LinearSVC

    def make(c: float) -> Any:
        return LinearSVC(C=c, max_iter=20000, dual=True)

    out = _fit_scored(make, grid, (train_X, train_y), (test_X, test_y), val, refit, val_copies)
    return {**out, "feature_dim": int(np.asarray(train_X).shape[1])}


def logistic_probe(
    train_states: Sequence[np.ndarray],
    train_y: np.ndarray,
    test_states: Sequence[np.ndarray],
    test_y: np.ndarray,
    val: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    grid: Sequence[float] = PROBE_C_GRID,
    refit: bool = True,
) -> dict[str, Any]:
    """Logistic regression on (T, D) states pooled to mean ⊕ std; C on val UA, then refit on
    train + val (`refit`); test scores."""
    from sklearn.linear_model import LogisticRegression

    def make(c: float) -> Any:
        return LogisticRegression(C=c, max_iter=2000)

    pooled_val = (pool_states(val[0]), np.asarray(val[1])) if val is not None else None
    train = (pool_states(train_states), np.asarray(train_y))
    test = (pool_states(test_states), np.asarray(test_y))
    out = _fit_scored(make, grid, train, test, pooled_val, refit)
    return {**out, "feature_dim": int(train[0].shape[1])}


def probe_on_split(
    frames: Mapping[str, np.ndarray],
    split: Mapping[str, Sequence[str]],
    label_of: Mapping[str, int],
    refit: bool = True,
) -> dict[str, Any]:
    """`logistic_probe` on one split {train, val, test: [utterance ids]} of the utterances that
    have frames, C chosen on val (when it has any); `label_of`: utterance id -> class index."""
    part = {p: [u for u in split.get(p) or () if u in frames] for p in ("train", "val", "test")}
    x = {p: [frames[u] for u in ids] for p, ids in part.items()}
    y = {p: np.array([label_of[u] for u in ids], dtype=np.int64) for p, ids in part.items()}
    val = (x["val"], y["val"]) if part["val"] else None
    return logistic_probe(x["train"], y["train"], x["test"], y["test"], val=val, refit=refit)


def functional_matrix(
    corpus: Any, speed: float, norm: bool, workers: int, memo: dict[tuple, tuple[np.ndarray, str]]
) -> tuple[np.ndarray, str]:
    """The corpus's functionals in table order (of its clips played at `speed`), standardised
    per speaker with `norm` (a copy's speaker is a speaker of its own: its own statistics),
    and their digest for the baseline cache's keys (hashed once, not once per fit)."""
    from experiments.baseline_cache import digest_arrays

    key = (corpus.name, speed, norm)
    if key not in memo:
        paths = corpus.table["audio_path"].astype(str).tolist()
        x = functionals(paths, corpus=corpus.name, workers=workers, speed=speed)
        if norm:
            x = np.stack(standardise_by_speaker(list(x), corpus.table["speaker"].astype(str)))
        memo[key] = x, digest_arrays([x])
    return memo[key]


def svm_on_split(
    x: dict[float, np.ndarray],
    y: dict[str, np.ndarray],
    idx: dict[str, list[int]],
    factors: tuple[float, ...],
    fit: str,
) -> dict[str, Any]:
    """The SVM on functionals of one split: `x` the table's functionals per speed, trained on
    the training rows and their copies at `factors`, C on val (its copies join the refit)."""
    copies = {p: [x[s][idx[p]] for s in factors] for p in ("train", "val")}
    return svm_on_functionals(
        np.concatenate([x[1.0][idx["train"]], *copies["train"]]),
        np.concatenate([y["train"]] * (1 + len(factors))),
        x[1.0][idx["test"]], y["test"], val=(x[1.0][idx["val"]], y["val"]),
        refit=fit == "train+val",
        val_copies=(np.concatenate(copies["val"]),
                    np.concatenate([y["val"]] * len(factors))) if factors else None,
    )  # fmt: skip


def baseline_scores(corpus: str, split: dict[str, list[str]], workers: int = 1) -> dict[str, Any]:
    """ComParE functionals + linear SVM on one split {train, val, test: [utterance ids]}."""
    prepared = as_corpus(corpus)
    table = prepared.table
    if table[["start_s", "end_s"]].notna().to_numpy().any():
        raise BaselineError(f"corpus '{prepared.name}' cuts segments from files; not supported")
    for part in ("train", "test"):
        if not split.get(part):
            raise BaselineError(f"split of '{prepared.name}' has no {part} utterances")
    # One cache per corpus: the whole table in table order, whatever the split.
    ids = table["utterance_id"].tolist()
    t0 = time.perf_counter()
    feats = functionals(
        table["audio_path"].astype(str).tolist(), corpus=prepared.name, workers=workers
    )
    feat_s = time.perf_counter() - t0
    row = {u: i for i, u in enumerate(ids)}
    index = {c: i for i, c in enumerate(prepared.classes)}

    def xy(part: str) -> tuple[np.ndarray, np.ndarray]:
        us = split.get(part) or []
        return feats[[row[u] for u in us]], np.array([index[prepared.label_of[u]] for u in us])

    val = xy("val") if split.get("val") else None
    out = svm_on_functionals(*xy("train"), *xy("test"), val=val)
    return {
        **out,
        "classes": prepared.classes,
        "n": {p: len(split.get(p) or []) for p in ("train", "val", "test")},
        "functionals_s": round(feat_s, 1),
    }
