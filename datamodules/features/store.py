"""The feature cache: `extract` fills `cache/<corpus>/<key>/`, `load` memory-maps it back.

Layout of `cache/<corpus>/<key>/`:
- `meta.json`: key, config, table hash, the parts' sub-hashes, dims, frame step, n.
- `acoustic/`: `part.json` (sub-hash, shard size) and per shard of `SHARD_SIZE` utterances
  `shard-00000.frames.npy` ((sum T, 65) float32) + `shard-00000.json` (ids, offsets, and
  the size and sha256 of each file: the checksum that finds a truncated or corrupt shard).
- `lexical/`: the same with `words.npy` ((sum W, D) float32), `spans.npy` ((sum W, 2) int64)
  and `cls.npy` ((n, D) float32).

Each part has its own sub-hash, and each shard a content hash (acoustic: feature set + the
shard's audio files and segments; lexical: encoder, layers, pooling, the shard's words, and
its acoustic hash since spans use the frames). A key whose shard is missing takes a verified
shard with the same content hash from a sibling key by hard link (or copy): another encoder
never re-runs openSMILE, a label change re-runs nothing, a changed transcript re-runs only
its lexical shard. Labels are not in the features, so they are only in the key.
Every file is written to a temp file and renamed; a shard counts as done only once its index
JSON exists, so an interrupted run resumes at the first missing shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from datamodules.corpus import PreparedCorpus, as_corpus
from datamodules.features.acoustic import ACOUSTIC_DIM, AcousticExtractor, voiced_frames
from datamodules.features.config import (
    FRAME_STEP_S,
    FeatureConfig,
    FeatureError,
    acoustic_part_hash,
    feature_key_for_table,
    lexical_part_hash,
    shard_hashes,
)
from datamodules.features.lexical import LexicalEncoder
from datamodules.paths import atomic_write_bytes, atomic_write_text, corpus_dir
from datamodules.utterances import Word, words_from_json

log = logging.getLogger(__name__)

SHARD_SIZE = 256  # utterances per shard
MODALITIES = ("acoustic", "lexical")


@dataclass
class ExtractReport:
    """What one `extract` call did: the key, and per part the shards "computed", "linked"
    (reused from a sibling key) and "rebuilt" (found corrupt), e.g. `counts["acoustic_computed"]`.
    """

    corpus: str
    key: str
    counts: Counter[str] = field(default_factory=Counter)

    def done(self) -> dict[str, int]:
        """The non-zero counts ({} when everything was cached)."""
        return {k: v for k, v in self.counts.items() if v}


@dataclass
class Features:
    """Cached features of a corpus, keyed by utterance id; arrays are read-only memory maps."""

    ids: list[str]
    acoustic: dict[str, np.ndarray] = field(default_factory=dict)  # (T, 65) float32
    words: dict[str, np.ndarray] = field(default_factory=dict)  # (W, D) float32
    cls: dict[str, np.ndarray] = field(default_factory=dict)  # (D,) float32
    spans: dict[str, np.ndarray] = field(default_factory=dict)  # (W, 2) int64 frame ranges
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- shards on disk


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def write_shard(
    part_dir: Path,
    i: int,
    ids: list[str],
    content: str,
    arrays: dict[str, np.ndarray],
    offsets: list[int],
) -> None:
    """Write one shard's arrays (temp + rename), then its index JSON, which marks it done."""
    files = {}
    for name, array in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        data = buf.getvalue()
        fname = f"{_shard_name(i)}.{name}.npy"
        atomic_write_bytes(part_dir / fname, data)
        files[name] = {
            "file": fname,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    index = {"ids": ids, "hash": content, "offsets": offsets, "files": files}
    atomic_write_text(part_dir / f"{_shard_name(i)}.json", json.dumps(index))


def _read_index(part_dir: Path, i: int) -> dict[str, Any] | None:
    path = part_dir / f"{_shard_name(i)}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"corrupt": f"{path.name} is not valid JSON"}


def check_shard(
    part_dir: Path, i: int, ids: list[str], content: str | None, checksum: bool = True
) -> str | None:
    """None if shard i holds `ids` with content hash `content` (None: any) and its files match
    their sizes (and sha256)."""
    index = _read_index(part_dir, i)
    if index is None:
        return "missing"
    if "corrupt" in index:
        return index["corrupt"]
    if index.get("ids") != ids:
        return f"{_shard_name(i)}.json lists other utterances"
    if content is not None and index.get("hash") != content:
        return f"{_shard_name(i)}.json was written from other table rows or settings"
    for entry in index["files"].values():
        path = part_dir / entry["file"]
        if not path.is_file():
            return f"{entry['file']} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{entry['file']} has {path.stat().st_size} bytes, expected {entry['bytes']}"
        if checksum and _sha256(path) != entry["sha256"]:
            return f"{entry['file']} fails its sha256 checksum"
    return None


def _open_array(path: Path) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return array


def _link_shard(src: Path, dst: Path, i: int) -> None:
    """Hard-link (or copy) shard i from part `src` into part `dst`; the index goes last."""
    index = json.loads((src / f"{_shard_name(i)}.json").read_text(encoding="utf-8"))
    names = [entry["file"] for entry in index["files"].values()] + [f"{_shard_name(i)}.json"]
    for name in names:
        target = dst / name
        tmp = dst / f".{name}.link.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src / name, tmp)
        except OSError:
            shutil.copy2(src / name, tmp)
        os.replace(tmp, target)


# ----------------------------------------------------------------------------- parts


@dataclass
class _Part:
    """One modality's folder inside a key folder, and the utterances of each shard."""

    name: str
    dir: Path
    hash: str
    shards: list[list[str]]  # utterance ids per shard
    contents: Sequence[str | None]  # content hash per shard (None: not checked, when loading)

    def is_complete(self) -> bool:
        """Marked complete for this hash and every shard present, of the right size and checksum."""
        info = self.info()
        if not (info.get("complete") and info.get("hash") == self.hash):
            return False
        return all(
            check_shard(self.dir, i, ids, self.contents[i]) is None
            for i, ids in enumerate(self.shards)
        )

    def prepare(self) -> None:
        """Create the folder and drop temp files an interrupted run left."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        self.write_info(complete=False)

    def write_info(self, complete: bool, **extra: Any) -> None:
        info = {
            "part": self.name,
            "hash": self.hash,
            "shard_size": SHARD_SIZE,
            "n_shards": len(self.shards),
            "complete": complete,
            **extra,
        }
        atomic_write_text(self.dir / "part.json", json.dumps(info, indent=2))

    def info(self) -> dict[str, Any]:
        path = self.dir / "part.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def todo(self, counts: Counter[str]) -> list[int]:
        """Shards to compute: missing ones, after taking what siblings have; corrupt ones logged."""
        todo = []
        for i, ids in enumerate(self.shards):
            problem = check_shard(self.dir, i, ids, self.contents[i])
            if problem is None:
                continue
            if problem != "missing":
                log.warning("%s/%s: %s; rebuilding it", self.dir, _shard_name(i), problem)
                counts[f"{self.name}_rebuilt"] += 1
            if self._take_from_sibling(i, ids):
                counts[f"{self.name}_linked"] += 1
                continue
            todo.append(i)
        return todo

    def _take_from_sibling(self, i: int, ids: list[str]) -> bool:
        for src in sorted(self.dir.parent.parent.glob(f"*/{self.name}")):
            if src == self.dir or check_shard(src, i, ids, self.contents[i]) is not None:
                continue
            _link_shard(src, self.dir, i)
            if check_shard(self.dir, i, ids, self.contents[i], checksum=False) is None:
                return True
        return False

    def arrays(
        self, checksum: bool = False
    ) -> Iterator[tuple[list[str], dict[str, Any], dict[str, np.ndarray]]]:
        """(ids, index, memory-mapped arrays) of each shard, after a size check."""
        for i, ids in enumerate(self.shards):
            problem = check_shard(self.dir, i, ids, self.contents[i], checksum=checksum)
            if problem is not None:
                raise FeatureError(
                    f"feature cache {self.dir}/{_shard_name(i)}: {problem}; run extract again "
                    f"(python -m experiments.features {self.dir.parent.parent.name})"
                )
            index = _read_index(self.dir, i)
            assert index is not None  # check_shard found it
            arrays = {n: _open_array(self.dir / e["file"]) for n, e in index["files"].items()}
            yield ids, index, arrays


def _shard_ids(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[s : s + SHARD_SIZE]) for s in range(0, len(ids), SHARD_SIZE)] or [[]]


def make_parts(key_dir: Path, table: pd.DataFrame, config: FeatureConfig) -> dict[str, _Part]:
    """The acoustic and lexical parts of a key folder, with each shard's ids and content hash."""
    shards = _shard_ids(table["utterance_id"].tolist())
    contents = shard_hashes(table, config, shards)
    return {
        "acoustic": _Part(
            "acoustic",
            key_dir / "acoustic",
            acoustic_part_hash(table, config),
            shards,
            contents["acoustic"],
        ),
        "lexical": _Part(
            "lexical",
            key_dir / "lexical",
            lexical_part_hash(table, config),
            shards,
            contents["lexical"],
        ),
    }


def table_words(row: dict[str, Any]) -> list[Word]:
    """Words of a table row; a transcript without word timings is split on white space."""
    words = words_from_json(row["words"])
    if not words and row["transcript"]:
        words = [Word(t) for t in str(row["transcript"]).split()]
    return words


def _optional(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


# ------------------------------------------------------------------------- acoustic workers

_WORKER: AcousticExtractor | None = None


def _init_worker(feature_set: str) -> None:
    global _WORKER
    _WORKER = AcousticExtractor(feature_set)


def _extract_one(task: tuple[str, float | None, float | None]) -> np.ndarray:
    """(path, start_s, end_s) -> (T, 65) float32, in a pool worker with its own Smile."""
    assert _WORKER is not None
    return _WORKER.from_file(*task)


def _pool_map(
    fn: Callable, tasks: list, workers: int, feature_set: str
) -> Generator[Any, None, None]:
    """fn over tasks in order: in-process for one worker, else a process pool (not threads)."""
    if workers <= 1:
        _init_worker(feature_set)
        yield from map(fn, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(feature_set,)
    )
    try:
        # small chunks keep all workers busy to the end and the progress bar moving
        yield from pool.map(fn, tasks, chunksize=max(1, min(8, len(tasks) // (workers * 8))))
    finally:  # on an interruption, drop the queued files instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)


def _write_acoustic_shard(part: _Part, i: int, frames: Sequence[np.ndarray], dim: int) -> None:
    """Shard i of an acoustic part from each utterance's (T, F) frames."""
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).tolist()
    stacked = np.concatenate(frames) if len(frames) else np.zeros((0, dim), np.float32)
    content = part.contents[i]
    assert content is not None  # parts being built come from make_parts
    write_shard(part.dir, i, part.shards[i], content, {"frames": stacked}, offsets)


LexicalOut = tuple[np.ndarray, np.ndarray, np.ndarray]  # words (W, D), cls (D,), spans (W, 2)


def _write_lexical_shard(part: _Part, i: int, out: Sequence[LexicalOut], dim: int) -> None:
    """Shard i of a lexical part from each utterance's (words, cls, spans)."""
    offsets = np.concatenate([[0], np.cumsum([len(v) for v, _, _ in out])]).tolist()
    arrays = {
        "words": np.concatenate([v for v, _, _ in out]) if out else np.zeros((0, dim), np.float32),
        "spans": np.concatenate([s for _, _, s in out]) if out else np.zeros((0, 2), np.int64),
        "cls": np.stack([c for _, c, _ in out]) if out else np.zeros((0, dim), np.float32),
    }
    content = part.contents[i]
    assert content is not None  # parts being built come from make_parts
    write_shard(part.dir, i, part.shards[i], content, arrays, offsets)


def build_acoustic(
    part: _Part,
    table: pd.DataFrame,
    config: FeatureConfig,
    workers: int,
    progress: bool,
    desc: str,
    counts: Counter[str],
) -> None:
    """Compute the missing acoustic shards of `part` (openSMILE across `workers` processes)."""
    if part.is_complete():
        # a complete part is left untouched: other processes (parallel sweep runs) may be
        # reading it, and prepare() would mark it incomplete for a moment
        return
    part.prepare()
    todo = part.todo(counts)
    rows = table.set_index("utterance_id", drop=False)
    tasks, seconds = [], 0.0
    for i in todo:
        for uid in part.shards[i]:
            row = rows.loc[uid]
            tasks.append((row["audio_path"], _optional(row["start_s"]), _optional(row["end_s"])))
            seconds += float(row["duration_s"]) if pd.notna(row["duration_s"]) else 0.0
    if tasks:
        log.info(
            "%s: openSMILE on %d utterances (%d shards, %d workers)",
            desc,
            len(tasks),
            len(todo),
            workers,
        )
    results = _pool_map(_extract_one, tasks, workers, config.feature_set)
    with (
        closing(results),
        tqdm(total=len(tasks), desc=desc, unit="utt", disable=not progress or not tasks) as bar,
    ):
        for i in todo:
            frames = []
            for _ in part.shards[i]:
                frames.append(next(results))
                bar.update(1)
            _write_acoustic_shard(part, i, frames, ACOUSTIC_DIM)
            counts["acoustic_computed"] += 1
    part.write_info(complete=True, dim=ACOUSTIC_DIM, audio_s=seconds if tasks else None)


def build_lexical(
    part: _Part,
    acoustic: _Part | None,
    table: pd.DataFrame,
    config: FeatureConfig,
    progress: bool,
    desc: str,
    counts: Counter[str],
    encoder: LexicalEncoder | None = None,
) -> None:
    """Compute the missing lexical shards (word vectors, [CLS], spans into the acoustic frames)."""
    if part.is_complete():
        return  # see build_acoustic
    part.prepare()
    todo = part.todo(counts)
    words = {r["utterance_id"]: table_words(r) for r in table.to_dict("records")}
    if encoder is None and todo:
        encoder = LexicalEncoder(config)
    acoustic_shards = list(acoustic.arrays()) if (acoustic is not None and todo) else None
    with tqdm(
        total=sum(len(part.shards[i]) for i in todo),
        desc=desc,
        unit="utt",
        disable=not progress or not todo,
    ) as bar:
        for i in todo:
            assert encoder is not None  # created above whenever there is a shard to do
            ids = part.shards[i]
            n_frames: list[int | None] = [None] * len(ids)
            voiced: list[np.ndarray | None] = [None] * len(ids)
            if acoustic_shards is not None:
                _, a_index, a_arrays = acoustic_shards[i]
                off = a_index["offsets"]
                for j in range(len(ids)):
                    frames = a_arrays["frames"][off[j] : off[j + 1]]
                    n_frames[j], voiced[j] = len(frames), voiced_frames(frames)
            out: list[LexicalOut] = []
            for s in range(0, len(ids), encoder.batch_size * 4):  # bar moves while a shard runs
                chunk = ids[s : s + encoder.batch_size * 4]
                out += encoder.encode_many(
                    [words[u] for u in chunk],
                    n_frames[s : s + len(chunk)],
                    voiced[s : s + len(chunk)],
                )
                bar.update(len(chunk))
            _write_lexical_shard(part, i, out, encoder.dim)
            counts["lexical_computed"] += 1
    part_dim: int | None = encoder.dim if encoder is not None else part.info().get("dim")
    if part_dim is None:  # every shard came from a sibling
        _, _, arrays = next(part.arrays())
        part_dim = int(arrays["cls"].shape[1])
    part.write_info(complete=True, dim=part_dim, encoder=config.encoder)


# ------------------------------------------------------------------------------ public API


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = tuple(m for m in modalities.split(",") if m)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise FeatureError(
            f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}"
        )
    return tuple(modalities)


def extract(
    corpus: str | PreparedCorpus,
    config: FeatureConfig = FeatureConfig(),
    modalities: Sequence[str] = MODALITIES,
    workers: int | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Fill `cache/<corpus>/<key>/` with the requested modalities; what was done, and the key.

    No work when complete; resumes after an interruption; rebuilds corrupt shards. Lexical
    features of a corpus with audio also need the acoustic part (spans are frame indices).
    """
    modalities = _check_modalities(modalities)
    corpus = as_corpus(corpus)
    table = corpus.table
    key = feature_key_for_table(table, config, corpus.transcript_source)
    report = ExtractReport(corpus.name, key)
    duplicated = table["utterance_id"][table["utterance_id"].duplicated()].tolist()
    if duplicated:
        raise FeatureError(
            f"corpus '{corpus.name}': utterance ids are not unique, e.g. '{duplicated[0]}'"
        )
    paths = table["audio_path"].astype(str)
    n_audio = int((paths != "").sum())
    if 0 < n_audio < len(table) or (n_audio == 0 and "acoustic" in modalities):
        missing = table.loc[paths == "", "utterance_id"].tolist()
        raise FeatureError(
            f"corpus '{corpus.name}': {len(missing)} of {len(table)} utterances have no audio "
            f"(e.g. '{missing[0]}'); acoustic features need audio for every utterance"
            + ("; use modalities=('lexical',) for a text-only corpus" if n_audio == 0 else "")
        )
    parts = make_parts(corpus.dir / key, table, config)
    workers = max(1, int(workers or os.cpu_count() or 1))
    name = corpus.name
    if n_audio and ("acoustic" in modalities or "lexical" in modalities):
        build_acoustic(
            parts["acoustic"], table, config, workers, progress, f"{name} acoustic", report.counts
        )
    if "lexical" in modalities:
        acoustic = parts["acoustic"] if n_audio else None
        build_lexical(
            parts["lexical"], acoustic, table, config, progress, f"{name} lexical", report.counts
        )
    _write_meta(corpus, key, config, parts)
    return report


def write_features(
    corpus: str | PreparedCorpus,
    config: FeatureConfig,
    acoustic: Callable[[str], np.ndarray] | None = None,
    lexical: Callable[[str], LexicalOut] | None = None,
) -> ExtractReport:
    """Write a complete cache from given features (not computed from audio): the cache format's
    public writer, for generated corpora (benchmarks) and tests.

    `acoustic(uid) -> (T, F)` frames and `lexical(uid) -> (words (W, D), cls (D,), spans (W, 2))`
    are called once per utterance, shard by shard, so memory stays at one shard.
    """
    corpus = as_corpus(corpus)
    key = feature_key_for_table(corpus.table, config, corpus.transcript_source)
    report = ExtractReport(corpus.name, key)
    parts = make_parts(corpus.dir / key, corpus.table, config)
    for name, fn in (("acoustic", acoustic), ("lexical", lexical)):
        if fn is None:
            continue
        part, dim = parts[name], 0
        part.prepare()
        for i, ids in enumerate(part.shards):
            if name == "acoustic":
                frames = [np.asarray(fn(u), np.float32) for u in ids]
                dim = frames[0].shape[1] if frames else dim
                _write_acoustic_shard(part, i, frames, dim)
            else:
                out = [fn(u) for u in ids]
                dim = out[0][1].shape[-1] if out else dim
                _write_lexical_shard(part, i, out, dim)
            report.counts[f"{name}_computed"] += 1
        extra = {"encoder": config.encoder} if name == "lexical" else {}
        part.write_info(complete=True, dim=dim, **extra)
    _write_meta(corpus, key, config, parts)
    return report


def _write_meta(
    corpus: PreparedCorpus, key: str, config: FeatureConfig, parts: dict[str, _Part]
) -> None:
    infos = {name: p.info() for name, p in parts.items()}
    done = {name: info["hash"] for name, info in infos.items() if info.get("complete")}
    meta = {
        "key": key,
        "corpus": corpus.name,
        "config": asdict(config),
        "encoder": config.encoder,
        "table_sha256": corpus.table_sha256,
        "n": len(corpus.table),
        "frame_step_s": FRAME_STEP_S,
        "acoustic_dim": infos["acoustic"].get("dim") if "acoustic" in done else None,
        "lexical_dim": infos["lexical"].get("dim") if "lexical" in done else None,
        "parts": done,
        "shard_size": SHARD_SIZE,
    }
    atomic_write_text(corpus.dir / key / "meta.json", json.dumps(meta, indent=2))


def load(
    corpus: str | PreparedCorpus, key: str, modalities: Sequence[str] = MODALITIES
) -> Features:
    """The cached features of `corpus` under `key`, as read-only memory-mapped views."""
    modalities = _check_modalities(modalities)
    corpus = corpus.name if isinstance(corpus, PreparedCorpus) else corpus
    key_dir = corpus_dir(corpus) / key
    meta_path = key_dir / "meta.json"
    if not meta_path.is_file():
        raise FeatureError(
            f"no features for corpus '{corpus}' under key '{key}' ({meta_path} is missing); "
            f"run `python -m experiments.features {corpus}`"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    ids: list[str] | None = None
    features = Features(ids=[], meta=meta)
    for name in modalities:
        if name not in meta["parts"]:
            raise FeatureError(
                f"corpus '{corpus}', key '{key}': no {name} features "
                f"(extract with modalities including '{name}')"
            )
        info_path = key_dir / name / "part.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        if info.get("hash") != meta["parts"][name] or not info.get("complete"):
            raise FeatureError(f"feature cache {key_dir / name} is incomplete; run extract again")
        shards = []
        for i in range(info["n_shards"]):
            index = _read_index(key_dir / name, i)
            shards.append((index or {}).get("ids", []))
        part = _Part(name, key_dir / name, info["hash"], shards, [None] * len(shards))
        part_ids: list[str] = []
        for s_ids, index, arrays in part.arrays():
            off = index["offsets"]
            part_ids += s_ids
            for j, uid in enumerate(s_ids):
                if name == "acoustic":
                    features.acoustic[uid] = arrays["frames"][off[j] : off[j + 1]]
                else:
                    features.words[uid] = arrays["words"][off[j] : off[j + 1]]
                    features.spans[uid] = arrays["spans"][off[j] : off[j + 1]]
                    features.cls[uid] = arrays["cls"][j]
        if ids is not None and part_ids != ids:
            raise FeatureError(
                f"feature cache {key_dir}: acoustic and lexical parts hold other utterances"
            )
        ids = part_ids
    features.ids = ids or []
    return features


def load_table_features(
    corpus: str | PreparedCorpus,
    config: FeatureConfig = FeatureConfig(),
    modalities: Sequence[str] = MODALITIES,
) -> Features:
    """`load` under the key of the corpus's current table (raises if not extracted)."""
    corpus = as_corpus(corpus)
    return load(
        corpus, feature_key_for_table(corpus.table, config, corpus.transcript_source), modalities
    )
