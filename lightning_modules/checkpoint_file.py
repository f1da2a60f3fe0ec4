"""Reading a checkpoint file safely: no pickle, no unbounded read, one error type naming the file.

`read_checkpoint` loads the raw dict with `torch.load(weights_only=True)`; `read_record`
returns its checked suite record (`checkpoint["ser"]`, described in
`lightning_modules.checkpoint`, which rebuilds models from it). Kept apart from that module
so that parts of the model (`lightning_modules.branch_init`) can read a checkpoint without
importing the LightningModule that imports them.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import torch

from lightning_modules.architectures import ARCHITECTURES
from lightning_modules.record import RECORD_FIELDS, RECORD_KEY, RECORD_VERSION

# The suite's checkpoints are a few MB; a file far above this is not one of them, and
# torch.load would read all of it into memory before saying so.
MAX_CHECKPOINT_BYTES = 2 << 30


class CheckpointError(Exception):
    """A checkpoint that cannot be read or rebuilt; the message names the file."""


def brief(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (torch and Hugging Face errors span paragraphs)."""
    text = str(exc) or type(exc).__name__
    if "WeightsUnpickler error:" in text:  # torch's advice to retry unsafely is left out
        rest = [x.strip() for x in text.split("WeightsUnpickler error:", 1)[1].splitlines()]
        text = "the unpickler refused it: " + next((x for x in rest if x), "unknown reason")
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded without pickle (`weights_only=True`)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO, a socket: reading would not end
        raise CheckpointError(f"{path} is not a regular file, so not a checkpoint")
    if st.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"checkpoint {path} is {st.st_size / 2**30:.1f} GiB, more than a checkpoint of this "
            f"suite ({MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB at most); not loaded"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a checkpoint this suite can load safely "
            f"(torch.load, weights_only=True): {brief(exc)}"
        ) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint (a {type(ckpt).__name__})")
    return ckpt


def read_record(ckpt: dict[str, Any] | str | Path, path: str | Path = "") -> dict[str, Any]:
    """The checked `checkpoint["ser"]` record of a checkpoint dict (or file)."""
    if not isinstance(ckpt, dict):
        path = ckpt
        ckpt = read_checkpoint(ckpt)
    record = ckpt.get(RECORD_KEY)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        found = record.get("version") if isinstance(record, dict) else None
        raise CheckpointError(
            f"checkpoint {path} holds no suite record of version {RECORD_VERSION} "
            f"(checkpoint['{RECORD_KEY}'] version {found}); it was not written by this "
            "version of experiments.train: train it again"
        )
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise CheckpointError(f"checkpoint {path}: its record lacks {missing}")
    if record["architecture"] not in ARCHITECTURES:
        raise CheckpointError(f"checkpoint {path}: unknown architecture {record['architecture']!r}")
    return record
