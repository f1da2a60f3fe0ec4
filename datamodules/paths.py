"""Where generated data lives, and the one way files are written (temp file + rename).

Everything the suite writes under `cache/` (prepared tables, feature shards, splits, models
unpacked from packages) and under `runs/` goes through `atomic_write_bytes`, so a reader
never sees half a file and an interrupted step leaves the old file or none.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# A corpus name becomes a folder under cache/: one path component, no hidden or parent folder.
CORPUS_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class CorpusError(Exception):
    """A corpus, manifest or prepared table that cannot be read; the message names the file."""


def cache_root() -> Path:
    """Root of generated data: `$SER_CACHE` if set, else `<repo>/cache`."""
    return Path(os.environ.get("SER_CACHE", REPO_ROOT / "cache"))


def check_corpus_name(name: str) -> str:
    """`name` if it is safe as one folder under cache/ ([A-Za-z0-9._-], no leading dot)."""
    if not isinstance(name, str) or not CORPUS_NAME.fullmatch(name):
        raise CorpusError(
            f"corpus name {name!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(not starting with '.'), so that it names one folder under the cache"
        )
    return name


def corpus_dir(name: str) -> Path:
    """`cache/<name>/`: a prepared corpus's table, features and splits (name checked)."""
    return cache_root() / check_corpus_name(name)


def table_path(name: str) -> Path:
    """`cache/<name>/utterances.csv`."""
    return corpus_dir(name) / "utterances.csv"


def current_umask() -> int:
    """The process umask: from /proc (Linux), else by setting it and putting it back, which
    other threads could see for an instant."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | Path, directory: bool = False) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the mode a plain open/mkdir would have had."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file.

    The file gets the mode the umask allows (mkstemp alone would leave it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
