"""Baseline fits remembered between benchmark tables: `cache/<corpus>/baselines/<key>.json`.

A table's classic baselines (an SVM on functionals, a logistic probe on pooled states) are
refitted on every fold each time `experiments.benchmark` runs, and on speed-perturbed copies
that is most of a table's time (an SVM per fold and setting, ~1–2 min each on 2 cores). A
fit's scores depend only on its inputs, so they are kept under a key that hashes all of
them: the feature matrix (its bytes, as standardised), the rows of each split part, their
labels, the fit's options, this module's `VERSION` and scikit-learn's version. A table
redrawn over the same splits, or over more runs of the same folds, then reads its baselines
back in well under a second; anything that changed what a fit would see (other features,
another split, a re-prepared corpus, another scikit-learn) is a different key, never a stale
hit. Files are written atomically; one that cannot be read (cut short, edited by hand) is
refitted and overwritten, with a warning naming it. `--refit-baselines` refits every fit a
table needs and overwrites its file (to check a cached figure, or after changing a baseline's
code without raising `VERSION`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.paths import atomic_write_text, corpus_dir

log = logging.getLogger(__name__)

VERSION = 1  # raise when a baseline's recipe changes (grid, scaler, solver): old fits then miss


def digest_arrays(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fit_key(features: str, **inputs: Any) -> str:
    """The cache key of one fit: `features` (a digest of what it reads) and its other inputs
    (split rows, labels, options), with this module's and scikit-learn's versions."""
    import sklearn

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return digest_arrays([value])
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    record = {"version": VERSION, "sklearn": sklearn.__version__, "features": features}
    record.update({k: plain(v) for k, v in inputs.items()})
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def cached_fit(
    corpus: str, key: str, fit: Callable[[], dict[str, Any]], refresh: bool = False
) -> dict[str, Any]:
    """`fit()`'s result for `key`, read from the corpus's baseline cache when it is there,
    else computed and stored (atomically). `refresh`: computed and stored even where a result
    is cached (`experiments.benchmark --refit-baselines`)."""
    path = cache_path(corpus, key)
    if path.is_file() and not refresh:
        try:
            out = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(out, dict) and {"ua", "wa", "macro_f1"} <= set(out):
                return out
            log.warning("baseline cache %s lacks scores; refitting", path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("baseline cache %s is unreadable (%s); refitting", path, exc)
    out = fit()
    atomic_write_text(path, json.dumps(out, sort_keys=True))
    return out


def cache_path(corpus: str, key: str) -> Path:
    return corpus_dir(corpus) / "baselines" / f"{key}.json"
