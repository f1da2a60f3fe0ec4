"""ComParE_2016 functionals of each clip as a model input (`data.utterance_functionals`).

The classic baseline's 6373 openSMILE ComParE_2016 functionals of a clip (`clip_functionals`),
here computed on the clip as the frames are (read at 16 kHz, its segment only, a
speed-perturbed copy played at its speed), so training and `experiments.predict` see the
same vector. With `data.utterance_functionals true` they follow each clip's utterance
statistics (`datamodules.utterance_stats`) and are standardised with them, per speaker where
the frames are; the acoustic branch reads them beside its pooled frames.

`ClipFunctionals` caches them per corpus view (the corpus or one of its speed-perturbed
copies) in `cache/<corpus>/functionals/clips-<key>/`, in chunks written atomically, so an
interrupted extraction resumes at the chunk it stopped in; the key covers every row's audio
file (path, size, modification time), segment and speed, so a changed file is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datamodules.audio import SAMPLE_RATE, AudioError, change_speed, load_audio
from datamodules.paths import atomic_write_bytes, corpus_dir

log = logging.getLogger(__name__)

FUNCTIONALS_DIM = 6373  # ComParE_2016 functionals per clip
CHUNK = 256  # clips per cache file


class FunctionalsError(Exception):
    """A clip whose functionals cannot be computed; the message names it."""


_SMILE: Any = None


def _smile() -> Any:
    global _SMILE
    if _SMILE is None:
        import opensmile

        _SMILE = opensmile.Smile(
            feature_set=opensmile.FeatureSet.ComParE_2016,
            feature_level=opensmile.FeatureLevel.Functionals,
        )
    return _SMILE


def clip_functionals(x: np.ndarray, name: str = "input") -> np.ndarray:
    """(N,) float32 16 kHz signal -> (6373,) float32 ComParE_2016 functionals (non-finite
    values set to 0, as the frames' are)."""
    x = np.asarray(x, dtype=np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            row = _smile().process_signal(x, SAMPLE_RATE).to_numpy(dtype=np.float32)[0]
    except Exception as exc:  # openSMILE's own errors: name the clip
        raise FunctionalsError(f"{name}: openSMILE functionals failed: {exc}") from exc
    if row.shape != (FUNCTIONALS_DIM,):
        raise FunctionalsError(f"{name}: {row.shape} functionals, expected ({FUNCTIONALS_DIM},)")
    return np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=0.0)


def row_functionals(row: Any) -> np.ndarray:
    """One table row's functionals: its audio (segment), played at its speed."""
    from datamodules.features.store import audio_task  # loads the features package

    path, start, end, speed = audio_task(row)
    try:
        x = change_speed(load_audio(path, start, end), speed)
    except AudioError as exc:
        raise FunctionalsError(f"{row['utterance_id']}: {exc}") from exc
    return clip_functionals(x, f"{row['utterance_id']} ({path})")


class ClipFunctionals:
    """Functionals of a corpus view's clips, cached (see the module docstring)."""

    def folder(self, view: Any) -> Path:
        from datamodules.features.store import audio_task

        h = hashlib.sha256(b"ComParE_2016 functionals, 16 kHz")
        for _, row in view.table.iterrows():
            path, start, end, speed = audio_task(row)
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}\t{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            h.update(f"\n{row['utterance_id']}\t{path}\t{start}\t{end}\t{speed}\t{stamp}".encode())
        return corpus_dir(view.name) / "functionals" / f"clips-{h.hexdigest()[:16]}"

    def load(self, view: Any, ids: set[str] | None = None) -> dict[str, np.ndarray]:
        """utterance id -> (6373,) for the view's rows (those in `ids` where given; computed
        and cached chunk by chunk where missing)."""
        table = view.table.reset_index(drop=True)
        folder = self.folder(view)
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(table), CHUNK):
            rows = table.iloc[start : start + CHUNK]
            wanted = rows if ids is None else rows[rows["utterance_id"].isin(ids)]
            if wanted.empty:
                continue
            out.update(self._chunk(folder / f"chunk-{start // CHUNK:05d}.npz", rows))
        return out if ids is None else {u: out[u] for u in ids if u in out}

    def _chunk(self, path: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        ids = rows["utterance_id"].astype(str).tolist()
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if data["ids"].tolist() == ids and data["x"].shape == (
                        len(ids),
                        FUNCTIONALS_DIM,
                    ):
                        return dict(zip(ids, data["x"], strict=True))
            except (OSError, ValueError, KeyError) as exc:  # half-written or foreign: redo
                log.warning("%s: unreadable (%s); computing it again", path, exc)
        log.info("functionals: %d clips -> %s", len(ids), path)
        x = np.stack([row_functionals(row) for _, row in rows.iterrows()])
        buf = io.BytesIO()
        np.savez(buf, ids=np.array(ids, dtype=str), x=x.astype(np.float32))
        atomic_write_bytes(path, buf.getvalue())
        return dict(zip(ids, x, strict=True))
