"""Read an offline W&B run's transaction log (`run-<id>.wandb`) without a server.

The file is W&B's LevelDB-style log: a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then
32 KiB blocks of chunks `crc32 (4) | length (2, LE) | type (1) | data`, type 1 = a whole
record, 2/3/4 = first/middle/last piece; each record is a `wandb_internal_pb2.Record`.
wandb 0.2x shipped a Python reader (`wandb.sdk.internal.datastore`); 0.3x reads it in Go only.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
CHUNK_HEADER = 7


def records(path: Path) -> Iterator[Any]:
    """Every protobuf Record of a `.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + CHUNK_HEADER])
        data = raw[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind in (1, 2):
            pending = data
        else:
            pending += data
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@dataclass
class OfflineRun:
    """What the tests look at: run identity, config, summary, metric definitions, history keys."""

    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # name -> MetricRecord
    history_keys: set[str] = field(default_factory=set)
    artifacts: list[str] = field(default_factory=list)


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def finished_records(path: Path, wait_s: float = 60.0) -> list[Any]:
    """The records once the log holds its `exit` record: `wandb.finish()` can return before
    W&B's writer process has flushed the file (seen under load). After `wait_s` the records
    as they are, so a run that never finishes fails the caller's assertions, not a hang."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            found = list(records(path))
        except Exception:  # noqa: BLE001 - a log caught mid-write: read it again
            found = []
        finished = any(r.WhichOneof("record_type") == "exit" for r in found)
        if finished or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def read_run(path: Path) -> OfflineRun:
    """Fold a finished run's records into its final config and summary."""
    out = OfflineRun()
    for r in finished_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.name, out.group, out.job_type = r.run.display_name, r.run.run_group, r.run.job_type
            for item in r.run.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in r.config.update:
                out.config[_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in r.summary.update:
                out.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            out.metrics[r.metric.name or r.metric.glob_name] = r.metric
        elif kind == "history":
            out.history_keys |= {_key(i) for i in r.history.item}
        elif kind == "artifact":
            out.artifacts.append(f"{r.artifact.type}:{r.artifact.name}")
    return out
