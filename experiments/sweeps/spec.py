"""A sweep as data: the W&B sweep YAML read, checked and expanded into runs.

`load_sweep` reads the file, `build_runs` applies command-line overrides and expands the grid
(or `run_cap` seeded random draws) into `RunSpec`s, `data.fold: all` counted on the corpus;
`train_args` turns a run's parameters into train CLI options.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datamodules.splits import DEFAULT_FOLDS, SplitError
from datamodules.splits import n_folds as split_folds
from datamodules.utterances import read_table

# Short names for run folders; anything else uses the last dotted component.
SHORT_KEYS = {
    "config": "",
    "seed_everything": "seed",
    "data.protocol": "",
    "data.corpus": "",
    "trainer.max_epochs": "ep",
}


class SweepError(Exception):
    """A sweep file or option that cannot be used; the message names the file or key."""


@dataclass
class SweepSpec:
    """A parsed sweep YAML (W&B sweep format)."""

    name: str
    method: str
    metric: dict[str, Any]
    parameters: dict[str, dict[str, Any]]
    run_cap: int | None = None
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """One run of a sweep: its folder name and the train options it sets."""

    name: str
    params: dict[str, Any]


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep YAML."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SweepError(f"sweep file {path}: top level must be a mapping")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepError(f"sweep file {path}: method '{method}' is not grid or random")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepError(f"sweep file {path}: 'parameters' must be a non-empty mapping")
    for key, spec in params.items():
        if not isinstance(spec, dict) or not ({"value", "values", "distribution"} & spec.keys()):
            raise SweepError(
                f"sweep file {path}: parameter '{key}' needs 'value', 'values' or 'distribution'"
            )
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise SweepError(f"sweep file {path}: parameter '{key}': 'values' must be a list")
        if method == "grid" and "distribution" in spec and spec["distribution"] != "categorical":
            raise SweepError(
                f"sweep file {path}: parameter '{key}' has a distribution; grid needs values"
            )
    run_cap = raw.get("run_cap")
    if method == "random" and not run_cap:
        raise SweepError(f"sweep file {path}: method random needs 'run_cap'")
    return SweepSpec(
        name=str(raw.get("name", path.stem)),
        method=method,
        metric=raw.get("metric", {"name": "val/ua", "goal": "maximize"}),
        parameters=dict(params),
        run_cap=int(run_cap) if run_cap else None,
        seed=int(raw.get("seed", 0)),
        raw=raw,
    )


def override(spec: SweepSpec, values: dict[str, Any]) -> SweepSpec:
    """The spec with parameters fixed (a scalar) or re-swept (a list) from the command line; a
    value given as a parameter spec ({"value": [a, b]}) fixes a list-valued option."""
    params = dict(spec.parameters)
    for key, value in values.items():
        if isinstance(value, dict) and set(value) in ({"value"}, {"values"}):
            params[key] = dict(value)
        else:
            params[key] = {"values": list(value)} if isinstance(value, list) else {"value": value}
    return SweepSpec(spec.name, spec.method, spec.metric, params, spec.run_cap, spec.seed, spec.raw)


def n_folds(corpus: str, protocol: str, folds: int = DEFAULT_FOLDS) -> int:
    """Number of folds of `protocol` on a prepared corpus (sessions for loso, speakers for
    lospko, `data.folds` for speaker_kfold)."""
    try:
        return int(split_folds(read_table(corpus), protocol, folds))
    except SplitError as exc:
        raise SweepError(f"data.protocol '{protocol}' on corpus '{corpus}': {exc}") from exc


def _sample(key: str, spec: dict[str, Any], rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    dist = spec["distribution"]
    lo, hi = spec.get("min"), spec.get("max")
    if lo is None or hi is None:
        raise SweepError(f"parameter '{key}': distribution '{dist}' needs 'min' and 'max'")
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "uniform":
        return rng.uniform(float(lo), float(hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(float(lo)), math.log(float(hi))))
    if dist == "q_uniform":
        q = float(spec.get("q", 1))
        return round(rng.uniform(float(lo), float(hi)) / q) * q
    raise SweepError(f"parameter '{key}': distribution '{dist}' is not supported locally")


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    keys = list(spec.parameters)
    if spec.method == "grid":
        choices = [
            spec.parameters[k]["values"]
            if "values" in spec.parameters[k]
            else [spec.parameters[k]["value"]]
            for k in keys
        ]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]
    rng = random.Random(spec.seed)
    return [
        {k: _sample(k, spec.parameters[k], rng) for k in keys} for _ in range(spec.run_cap or 1)
    ]


def expand(spec: SweepSpec, fold_count: Callable[[str, int], int] | None = None) -> list[RunSpec]:
    """All runs of a sweep: grid product or `run_cap` seeded samples, `data.fold: all` expanded.

    `fold_count(protocol, folds)` gives the number of folds (`folds`: the run's `data.folds`);
    it is only asked when a fold is `all`.
    """
    swept = [k for k, s in spec.parameters.items() if "value" not in s]
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in _combinations(spec):
        folds = [combo.get("data.fold")]
        if combo.get("data.fold") == "all":
            if fold_count is None:
                raise SweepError("data.fold is 'all' but no corpus was given to count folds")
            protocol = str(combo.get("data.protocol", "sd8020"))
            k = int(combo.get("data.folds", DEFAULT_FOLDS))
            folds = list(range(fold_count(protocol, k)))
        for fold in folds:
            params = dict(combo)
            if fold is not None:
                params["data.fold"] = fold
            fold_swept = combo.get("data.fold") == "all"
            keys = [k for k in spec.parameters if k in swept or (k == "data.fold" and fold_swept)]
            name = run_name(params, keys)
            if name in seen:  # random search may draw the same point twice
                continue
            seen.add(name)
            runs.append(RunSpec(name, params))
    return runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def run_name(params: dict[str, Any], keys: Sequence[str]) -> str:
    """A stable, filesystem-safe folder name from the swept parameters."""
    if not keys:
        return "run"
    parts = []
    for key in keys:
        value = params[key]
        if key == "config":
            value = Path(str(value)).stem
        if isinstance(value, float):
            value = f"{value:.4g}"
        short = SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])
        parts.append(_slug(f"{short}-{value}" if short else str(value)))
    return "__".join(parts)


def config_path(value: str) -> str:
    """A variant name (`acoustic_attention`) or a path -> the config file path."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        return str(path)
    return str(Path("configs") / f"{value}.yaml")


def train_args(params: dict[str, Any], run_dir: Path) -> list[str]:
    """Train CLI options for one run (the config file first, as LightningCLI wants)."""
    args: list[str] = []
    if "config" in params:
        args += ["--config", config_path(str(params["config"]))]
    for key, value in params.items():
        if key == "config":
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        args += [f"--{key}", str(value)]
    args += ["--trainer.default_root_dir", str(run_dir)]
    return args


def build_runs(
    spec: SweepSpec,
    corpus: str | None = None,
    max_epochs: int | None = None,
    seeds: Sequence[int] | None = None,
    sets: dict[str, Any] | None = None,
) -> tuple[SweepSpec, list[RunSpec]]:
    """Apply the command-line overrides to a spec and expand it into runs."""
    values: dict[str, Any] = dict(sets or {})
    if corpus:
        values["data.corpus"] = corpus
    if max_epochs:
        values["trainer.max_epochs"] = int(max_epochs)
    if seeds:
        values["seed_everything"] = [int(s) for s in seeds]  # a list: the seed stays in names
    spec = override(spec, values)
    corpus_name = spec.parameters.get("data.corpus", {}).get("value")

    def fold_count(protocol: str, folds: int) -> int:
        if not corpus_name:
            raise SweepError("data.fold: all needs a corpus (--corpus NAME)")
        return n_folds(str(corpus_name), protocol, folds)

    return spec, expand(spec, fold_count)
