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
import mmap
import multiprocessing
import os
import shutil
import signal
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

from datamodules.audio import AudioError, change_speed, load_audio
from datamodules.corpus import PreparedCorpus, as_corpus
from datamodules.features.acoustic import (
    ACOUSTIC_DIM,
    AcousticError,
    AcousticExtractor,
    voiced_frames,
)
from datamodules.features.config import (
    FeatureConfig,
    FeatureError,
    acoustic_part_hash,
    feature_key_for_table,
    lexical_part_hash,
    shard_hashes,
)
from datamodules.features.frontends import (
    AcousticFrontEnd,
    WhisperEncoder,
    build_frontend,
    frontend_frame_step,
)
from datamodules.features.lexical import LexicalEncoder
from datamodules.locks import PidLock
from datamodules.paths import atomic_write_bytes, atomic_write_text, corpus_dir
from datamodules.processes import die_with_parent
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
    shard: tuple[int, int] = (0, 1)  # (K, N) this process built
    complete: bool = True  # False: a shard process finished before the other shards

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
    skipped: dict[str, str] | None = None,
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
    if skipped:
        index["skipped"] = skipped
    atomic_write_text(part_dir / f"{_shard_name(i)}.json", json.dumps(index))


def read_index(part_dir: Path, i: int) -> dict[str, Any] | None:
    """The index (ids, offsets, checksum) of cache shard `i` of a part folder; None if absent."""
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
    index = read_index(part_dir, i)
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


def open_verified(path: Path, entry: dict[str, Any]) -> np.ndarray:
    """A read-only array mapped from a `.npy` shard file, its sha256 checked on the way in.

    The file is mapped once: sha256 reads each page as it hashes, and the array is a view of
    the same mapping, so the bytes come off the disk once (no second pass, no private copy;
    processes loading the same cache share its pages). A flipped byte is a FeatureError
    naming the file, never NaNs handed to training.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != entry["bytes"] or size == 0:
                raise FeatureError(f"{path} has {size} bytes, expected {entry['bytes']}")
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise FeatureError(f"cannot read feature cache file {path}: {exc}") from exc
    if hashlib.sha256(mapped).hexdigest() != entry["sha256"]:
        mapped.close()
        raise FeatureError(
            f"feature cache file {path} fails its sha256 checksum (corrupt on disk); "
            "run extract again to rebuild it"
        )
    try:
        header = io.BytesIO(mapped[: min(size, 1 << 16)])
        version = np.lib.format.read_magic(header)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(header)
        count = int(np.prod(shape, dtype=np.int64))
        flat = np.frombuffer(mapped, dtype=dtype, count=count, offset=header.tell())
    except ValueError as exc:  # the checksum matched a file that was never a valid array
        raise FeatureError(f"feature cache file {path} is not a .npy array: {exc}") from exc
    return flat.reshape(shape, order="F" if fortran else "C")


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
    shard_size: int = SHARD_SIZE
    claim: tuple[int, int] = (0, 1)  # (K, N): this process builds the shards i with i % N == K

    def claimed(self, i: int) -> bool:
        return i % self.claim[1] == self.claim[0]

    @property
    def sharded(self) -> bool:
        return self.claim[1] > 1

    def all_present(self) -> bool:
        """Every shard's index and files there with the right sizes (no checksum)."""
        return all(
            check_shard(self.dir, i, ids, self.contents[i], checksum=False) is None
            for i, ids in enumerate(self.shards)
        )

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
        """Create the folder and drop temp files an interrupted run left.

        One of N shard processes leaves other processes' temp files alone, and marks the part
        incomplete only when no process has described it yet (so it never undoes the
        "complete" that the last shard to finish writes)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.sharded:
            for tmp in self.dir.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            self.write_info(complete=False)
        elif self.info().get("hash") != self.hash:
            self.write_info(complete=False)

    def finish(self, **extra: Any) -> bool:
        """Mark the part complete once every shard is there (the last shard process does);
        True when it is complete."""
        if self.sharded and not self.all_present():
            return False
        self.write_info(complete=True, **extra)
        return True

    def write_info(self, complete: bool, **extra: Any) -> None:
        info = {
            "part": self.name,
            "hash": self.hash,
            "shard_size": self.shard_size,
            "n_shards": len(self.shards),
            "complete": complete,
            **extra,
        }
        atomic_write_text(self.dir / "part.json", json.dumps(info, indent=2))

    def info(self) -> dict[str, Any]:
        path = self.dir / "part.json"
        if not path.is_file():
            return {}
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(info, dict):
                return info
        except (OSError, ValueError):
            pass
        log.warning("%s is corrupt; the part is checked and part.json rebuilt", path)
        return {}

    def todo(self, counts: Counter[str]) -> list[int]:
        """Shards to compute: missing ones, after taking what siblings have; corrupt ones logged."""
        todo = []
        for i, ids in enumerate(self.shards):
            if not self.claimed(i):
                continue
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

    def arrays(self) -> Iterator[tuple[list[str], dict[str, Any], dict[str, np.ndarray]]]:
        """(ids, index, memory-mapped arrays) of each shard, each file checksummed."""
        for i in range(len(self.shards)):
            yield self.shard(i)

    def shard(self, i: int) -> tuple[list[str], dict[str, Any], dict[str, np.ndarray]]:
        """(ids, index, memory-mapped arrays) of shard i; sizes checked, then each file's sha256
        while it is mapped (`open_verified`)."""
        ids = self.shards[i]
        problem = check_shard(self.dir, i, ids, self.contents[i], checksum=False)
        if problem is not None:
            raise FeatureError(
                f"feature cache {self.dir}/{_shard_name(i)}: {problem}; run extract again "
                f"(python -m experiments.features {self.dir.parent.parent.name})"
            )
        index = read_index(self.dir, i)
        assert index is not None  # check_shard found it
        arrays = {n: open_verified(self.dir / e["file"], e) for n, e in index["files"].items()}
        return ids, index, arrays


def shard_ids(ids: Sequence[str], size: int = SHARD_SIZE) -> list[list[str]]:
    """Utterance ids in cache shards of `size` (the unit of work and of `--shard K/N`)."""
    return [list(ids[s : s + size]) for s in range(0, len(ids), size)] or [[]]


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int]:
    """ "K/N" (0 <= K < N) -> (K, N); None -> (0, 1), the whole corpus."""
    if text is None:
        return (0, 1)
    if isinstance(text, tuple):
        k, n = text
    else:
        try:
            k, n = (int(v) for v in str(text).split("/"))
        except ValueError as exc:
            raise FeatureError(f"shard must be K/N with integers, got '{text}'") from exc
    if not (n >= 1 and 0 <= k < n):
        raise FeatureError(f"shard K/N needs 0 <= K < N, got {k}/{n}")
    return (k, n)


def make_parts(
    key_dir: Path,
    table: pd.DataFrame,
    config: FeatureConfig,
    shard_size: int | None = None,
    claim: tuple[int, int] = (0, 1),
) -> dict[str, _Part]:
    """The acoustic and lexical parts of a key folder, with each shard's ids and content hash.

    `shard_size` None: the size an existing part was written with, else `SHARD_SIZE`.
    """
    if shard_size is None:
        stored: dict[str, Any] = {}
        for name in ("acoustic", "lexical"):
            try:
                value = json.loads((key_dir / name / "part.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # missing or corrupt: the part rebuilds it (_Part.info says so)
            if isinstance(value, dict) and value.get("shard_size"):
                stored = value
                break
        shard_size = int(stored.get("shard_size") or SHARD_SIZE)
    if shard_size < 1:
        raise FeatureError(f"shard_size must be >= 1, got {shard_size}")
    shards = shard_ids(table["utterance_id"].tolist(), shard_size)
    contents = shard_hashes(table, config, shards)
    hashes = {
        "acoustic": acoustic_part_hash(table, config),
        "lexical": lexical_part_hash(table, config),
    }
    return {
        name: _Part(name, key_dir / name, hashes[name], shards, contents[name], shard_size, claim)
        for name in MODALITIES
    }


def table_words(row: dict[str, Any]) -> list[Word]:
    """Words of a table row; a transcript without word timings is split on white space."""
    words = words_from_json(row["words"])
    if not words and row["transcript"]:
        words = [Word(t) for t in str(row["transcript"]).split()]
    return words


def _optional(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def row_speed(row: Any) -> float:
    """The speed a table row's audio is played at (1.0 without a `speed` column:
    `datamodules.perturb` adds one)."""
    value = _optional(row.get("speed"))
    return 1.0 if value is None else value


# ------------------------------------------------------------------------- acoustic workers

_WORKER: AcousticExtractor | None = None


def _init_worker(feature_set: str, parent: int | None = None) -> None:
    global _WORKER
    if parent is not None:  # a pool worker: never outlive a killed parent (no orphaned Smiles)
        die_with_parent(signal.SIGKILL, parent)
    _WORKER = AcousticExtractor(feature_set)


AudioTask = tuple[str, float | None, float | None, float]  # path, start_s, end_s, speed


def audio_task(row: Any) -> AudioTask:
    """What a table row's audio is: its file, segment (None: the whole file) and speed."""
    return (row["audio_path"], _optional(row["start_s"]), _optional(row["end_s"]), row_speed(row))


def _extract_one(task: AudioTask) -> np.ndarray | str:
    """(path, start_s, end_s, speed) -> (T, 65) float32, in a pool worker with its own Smile; a clip
    that cannot be used (truncated, undecodable, too short) gives the reason instead."""
    assert _WORKER is not None
    try:
        return _WORKER.from_file(*task)
    except Exception as exc:  # one bad file must not cost the rest of the corpus
        return f"{type(exc).__name__}: {exc}"


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
        workers, mp_context=context, initializer=_init_worker, initargs=(feature_set, os.getpid())
    )
    try:
        # small chunks keep all workers busy to the end and the progress bar moving
        yield from pool.map(fn, tasks, chunksize=max(1, min(8, len(tasks) // (workers * 8))))
    finally:  # on an interruption, drop the queued files instead of finishing them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()  # a worker busy on a long file would hold the exit up
            proc.join(timeout=5)


def _write_acoustic_shard(
    part: _Part,
    i: int,
    frames: Sequence[np.ndarray],
    dim: int,
    skipped: dict[str, str] | None = None,
) -> None:
    """Shard i of an acoustic part from each utterance's (T, F) frames; `skipped` utterances
    (id -> reason) have no features."""
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).tolist()
    stacked = np.concatenate(frames) if len(frames) else np.zeros((0, dim), np.float32)
    content = part.contents[i]
    assert content is not None  # parts being built come from make_parts
    write_shard(part.dir, i, part.shards[i], content, {"frames": stacked}, offsets, skipped)


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
    device: str = "cpu",
    frontend: AcousticFrontEnd | None = None,
) -> None:
    """Compute the missing acoustic shards of `part` (of this process's claim).

    ComParE LLDs run in `workers` processes; a neural front end runs in this process on
    `device`, a batch of utterances per call.
    """
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
            tasks.append(audio_task(row))
            seconds += float(row["duration_s"]) if pd.notna(row["duration_s"]) else 0.0
    name = config.acoustic_features
    if tasks:
        log.info(
            "%s: %s on %d utterances (%d shards, %s)",
            desc,
            name,
            len(tasks),
            len(todo),
            f"{workers} workers" if name == "compare_lld" else device,
        )
    if name == "compare_lld":
        results: Iterator[np.ndarray] = _pool_map(_extract_one, tasks, workers, config.feature_set)
        dim = ACOUSTIC_DIM
    else:
        if frontend is None and tasks:
            frontend = build_frontend(name, device=device, layer=config.acoustic_layer)
        # every shard linked from a sibling key: no front end, no frames (a generator all
        # the same, since `closing` below closes it)
        nothing: tuple[np.ndarray, ...] = ()
        results = _frontend_map(frontend, tasks) if frontend is not None else (x for x in nothing)
        dim = frontend.dim if frontend is not None else int(part.info().get("dim") or 0)
    with (
        closing(results),  # type: ignore[type-var]
        tqdm(total=len(tasks), desc=desc, unit="utt", disable=not progress or not tasks) as bar,
    ):
        for i in todo:
            frames: list[np.ndarray] = []
            skipped: dict[str, str] = {}
            for uid in part.shards[i]:
                out = next(results)
                if isinstance(out, str):  # kept as 0 frames, listed, and left out by load()
                    skipped[uid] = out
                    out = np.zeros((0, dim), np.float32)
                frames.append(out)
                bar.update(1)
            for uid, reason in skipped.items():
                log.warning("%s: utterance %s skipped: %s", desc, uid, reason)
            counts["acoustic_skipped"] += len(skipped)
            _write_acoustic_shard(part, i, frames, dim, skipped)
            counts["acoustic_computed"] += 1
    if not dim:  # every shard linked from a sibling key
        dim = int(part.shard(0)[2]["frames"].shape[1])
    layers = frontend.layers if frontend is not None else dim // _hidden_size(config, dim)
    part.finish(
        dim=dim,
        layers=layers,
        frame_step_s=frontend_frame_step(name),
        acoustic_features=name,
        audio_s=seconds if tasks else None,
    )


def _hidden_size(config: FeatureConfig, dim: int) -> int:
    """Width of one hidden state (dim unless layer "all")."""
    if config.acoustic_layer != "all":
        return dim
    if config.acoustic_features in WhisperEncoder.MODELS:
        return WhisperEncoder.MODELS[config.acoustic_features]
    path = Path(config.acoustic_features[3:]) / "config.json"
    return int(json.loads(path.read_text(encoding="utf-8"))["hidden_size"])


def _frontend_map(
    frontend: AcousticFrontEnd, tasks: list[AudioTask]
) -> Generator[np.ndarray, None, None]:
    """Frames of each (path, start_s, end_s, speed), in order; `batch` clips per encode call."""
    batch = int(getattr(frontend, "batch_size", 1))
    for s in range(0, len(tasks), batch):
        waves = []
        for path, start, end, factor in tasks[s : s + batch]:
            try:
                waves.append(change_speed(load_audio(path, start, end), factor))
            except AudioError as exc:
                raise AcousticError(str(exc)) from exc
        yield from frontend.encode_many(waves)


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
    lld = config.acoustic_features == "compare_lld"  # voiced frames from the LLD RMS energy
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
            if acoustic is not None:
                _, a_index, a_arrays = acoustic.shard(i)
                off = a_index["offsets"]
                for j in range(len(ids)):
                    frames = a_arrays["frames"][off[j] : off[j + 1]]
                    n_frames[j] = len(frames)
                    voiced[j] = voiced_frames(frames) if lld else None
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
    if part_dim is None:  # every shard came from a sibling (or another shard process)
        claimed = [i for i in range(len(part.shards)) if part.claimed(i)]
        _, _, arrays = part.shard(claimed[0] if claimed else 0)
        part_dim = int(arrays["cls"].shape[1])
    part.finish(dim=part_dim, encoder=config.encoder)


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
    device: str = "cpu",
    shard: str | tuple[int, int] | None = None,
    shard_size: int | None = None,
) -> ExtractReport:
    """Fill `cache/<corpus>/<key>/` with the requested modalities; what was done, and the key.

    No work when complete; resumes after an interruption; rebuilds corrupt shards. Lexical
    features of a corpus with audio also need the acoustic part (spans are frame indices).
    `device`: where a neural acoustic front end runs (cpu, cuda, auto).

    `shard` "K/N": this process builds only the cache shards i with i % N == K (a disjoint,
    deterministic subset), so N processes or machines fill one key folder without clashes;
    whichever finishes last marks the parts complete and writes meta.json, and any later
    `extract` of the whole corpus finds them complete. `shard_size` (utterances per cache
    shard; default: that of an existing part, else `SHARD_SIZE`) sets the unit of work.
    """
    claim = parse_shard(shard)
    modalities = _check_modalities(modalities)
    corpus = as_corpus(corpus)
    table = corpus.table
    key = feature_key_for_table(table, config, corpus.transcript_source)
    report = ExtractReport(corpus.name, key, shard=claim)
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
    parts = make_parts(corpus.dir / key, table, config, shard_size, claim)
    wanted = [p for n, p in parts.items() if n in modalities or (n == "acoustic" and n_audio)]
    if all(p.is_complete() for p in wanted) and _meta_current(corpus, key, config, parts):
        return report  # reading a complete cache writes nothing: a read-only cache serves
    workers = max(1, int(workers or os.cpu_count() or 1))
    # one extraction per key and shard claim at a time: a second process waits, then reuses
    # the shards (distinct claims of a sharded run proceed side by side)
    lock_name = ".extract.lock" if claim == (0, 1) else f".extract-{claim[0]}of{claim[1]}.lock"
    try:
        lock = PidLock(corpus.dir / key / lock_name, f"feature cache {corpus.dir / key}")
        with lock.acquire(
            wait=True,
            on_wait=lambda pid: log.warning(
                "%s: pid %s is extracting it; waiting", corpus.dir / key, pid
            ),
        ):
            _build(
                corpus,
                key,
                config,
                parts,
                modalities,
                n_audio,
                workers,
                progress,
                report,
                device,
                claim,
            )
    except OSError as exc:
        raise FeatureError(
            f"cannot write the feature cache {corpus.dir / key}: "
            f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or 'no file name'})"
        ) from exc
    return report


def _build(
    corpus: PreparedCorpus,
    key: str,
    config: FeatureConfig,
    parts: dict[str, _Part],
    modalities: Sequence[str],
    n_audio: int,
    workers: int,
    progress: bool,
    report: ExtractReport,
    device: str,
    claim: tuple[int, int],
) -> None:
    table = corpus.table
    name = corpus.name if claim == (0, 1) else f"{corpus.name} shard {claim[0]}/{claim[1]}"
    if n_audio and ("acoustic" in modalities or "lexical" in modalities):
        build_acoustic(
            parts["acoustic"],
            table,
            config,
            workers,
            progress,
            f"{name} acoustic",
            report.counts,
            device,
        )
    if "lexical" in modalities:
        acoustic = parts["acoustic"] if n_audio else None
        build_lexical(
            parts["lexical"], acoustic, table, config, progress, f"{name} lexical", report.counts
        )
    wanted = [m for m in modalities if m == "lexical" or n_audio]
    report.complete = all(parts[m].info().get("complete") for m in wanted)
    if report.complete or claim == (0, 1):  # a shard process leaves meta.json to the last one
        _write_meta(corpus, key, config, parts)


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
                words = [fn(u) for u in ids]
                dim = words[0][1].shape[-1] if words else dim
                _write_lexical_shard(part, i, words, dim)  # type: ignore[arg-type]
            report.counts[f"{name}_computed"] += 1
        extra = {"encoder": config.encoder} if name == "lexical" else {}
        part.write_info(complete=True, dim=dim, **extra)
    _write_meta(corpus, key, config, parts)
    return report


def _meta_current(
    corpus: PreparedCorpus, key: str, config: FeatureConfig, parts: dict[str, _Part]
) -> bool:
    """True when meta.json already says what `_write_meta` would write."""
    path = corpus.dir / key / "meta.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) == _meta(corpus, key, config, parts)
    except (OSError, ValueError):
        return False


def _write_meta(
    corpus: PreparedCorpus, key: str, config: FeatureConfig, parts: dict[str, _Part]
) -> None:
    if not _meta_current(corpus, key, config, parts):
        meta = _meta(corpus, key, config, parts)
        atomic_write_text(corpus.dir / key / "meta.json", json.dumps(meta, indent=2))


def _meta(
    corpus: PreparedCorpus, key: str, config: FeatureConfig, parts: dict[str, _Part]
) -> dict[str, Any]:
    infos = {name: p.info() for name, p in parts.items()}
    done = {name: info["hash"] for name, info in infos.items() if info.get("complete")}
    meta = {
        "key": key,
        "corpus": corpus.name,
        "config": asdict(config),
        "encoder": config.encoder,
        "table_sha256": corpus.table_sha256,
        "n": len(corpus.table),
        "frame_step_s": infos["acoustic"].get("frame_step_s")
        or frontend_frame_step(config.acoustic_features),
        "acoustic_features": config.acoustic_features,
        "acoustic_layers": infos["acoustic"].get("layers") or 1,
        "acoustic_dim": infos["acoustic"].get("dim") if "acoustic" in done else None,
        "lexical_dim": infos["lexical"].get("dim") if "lexical" in done else None,
        "parts": done,
        "shard_size": SHARD_SIZE,
    }
    return json.loads(json.dumps(meta))  # as read back (tuples become lists)


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
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["parts"].items()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FeatureError(
            f"feature cache {meta_path} is corrupt ({exc}); extract rebuilds it: "
            f"`python -m experiments.features {corpus}`"
        ) from exc
    ids: list[str] | None = None
    features = Features(ids=[], meta=meta)
    for name in modalities:
        if name not in meta["parts"]:
            raise FeatureError(
                f"corpus '{corpus}', key '{key}': no {name} features "
                f"(extract with modalities including '{name}')"
            )
        info = _Part(name, key_dir / name, "", [], []).info()  # {} when missing or corrupt
        if info.get("hash") != meta["parts"][name] or not info.get("complete"):
            raise FeatureError(f"feature cache {key_dir / name} is incomplete; run extract again")
        shards = []
        for i in range(info["n_shards"]):
            index = read_index(key_dir / name, i)
            shards.append((index or {}).get("ids", []))
        part = _Part(name, key_dir / name, info["hash"], shards, [None] * len(shards))
        part_ids: list[str] = []
        for s_ids, index, arrays in part.arrays():
            off = index["offsets"]
            part_ids += s_ids
            skipped = index.get("skipped") or {}
            for j, uid in enumerate(s_ids):
                if uid in skipped:  # a bad clip: no features (the datamodule leaves it out)
                    continue
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
