"""Branch pretraining: a branch of a model started from the same branch of a trained checkpoint.

`model.init_lexical` / `model.init_acoustic` name a checkpoint of this suite; at the start of
`fit` the weights of that checkpoint's branch of the modality (an acoustic or lexical model's
whole encoder, or one branch of an mmb/mmmla model) are copied into this model's branch, and
with `model.freeze_init` that branch is frozen: no gradient, kept in eval mode (dropout off,
`StatsNorm` on its running statistics). The use it was built for: a lexical branch trained on a
text-only corpus many times larger than the paired one (e.g. the MELD lines a paired corpus
did not use, `experiments.pair_corpus --rest-out`), so that a fusion model's text branch brings
evidence from lines it never memorised.

With `model.posterior_branch` naming the branch (a `PosteriorBranch`), a one-branch
checkpoint's classifier head is copied too, so the fusion reads that model's own class
log-probabilities: C values it can weigh, where a 2H-d pooled vector would let the fusion's
projection refit the few hundred training lines one by one.

The copy is checked: the checkpoint must have that branch, with the same parameter names and
shapes (the branch options, such as hidden_size, pooling, input_stats and stats_norm, must
match), and read features of the same dimension and text encoder. An acoustic (or any) branch
trained on the same speakers as this run must not have seen this run's test speakers:
`check_unseen` recomputes the checkpoint's split where its corpus is prepared here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from datamodules.corpus import as_corpus
from datamodules.splits import SplitError, load_keyed_split, split_key
from datamodules.utterances import CorpusError
from lightning_modules.branches import (
    AcousticEncoder,
    FusedEncoder,
    LexicalEncoder,
    ModelConfigError,
    PosteriorBranch,
)
from lightning_modules.checkpoint_file import CheckpointError, read_checkpoint, read_record

log = logging.getLogger(__name__)

BRANCH_TYPES: dict[str, type[nn.Module]] = {"acoustic": AcousticEncoder, "lexical": LexicalEncoder}


def branch_of(encoder: nn.Module, modality: str) -> nn.Module | None:
    """The module of `encoder` that encodes `modality`; None where the encoder has no such
    branch (the hierarchical model fuses per word)."""
    if isinstance(encoder, FusedEncoder):  # the branch, or its PosteriorBranch
        return getattr(encoder, modality)
    if isinstance(encoder, BRANCH_TYPES[modality]):
        return encoder
    return None


def _source_prefix(record: dict[str, Any], modality: str, path: Path) -> str:
    """Where the checkpoint keeps that branch: `net.encoder.` (a one-branch model) or
    `net.encoder.<modality>.` (mmb, mmmla)."""
    architecture, modalities = record["architecture"], list(record.get("modalities") or [])
    if modality not in modalities or architecture == "hierarchical":
        raise ModelConfigError(
            f"model.init_{modality}: checkpoint {path} ({architecture}) has no separately "
            f"pooled {modality} branch"
        )
    return "net.encoder." if len(modalities) == 1 else f"net.encoder.{modality}."


def _check_features(
    record: dict[str, Any], modality: str, features: dict[str, Any], path: Path
) -> None:
    """The checkpoint's features must be what this run's branch reads (`features`: this run's
    datamodule state, with `feature_config` and the dimensions)."""
    theirs = record.get("features") or {}
    dim = f"{modality}_dim"
    if features.get(dim) and theirs.get(dim) and int(features[dim]) != int(theirs[dim]):
        raise ModelConfigError(
            f"model.init_{modality}: checkpoint {path} read {theirs[dim]}-d {modality} "
            f"features, this run reads {features[dim]}-d"
        )
    if modality == "lexical":
        names: tuple[str, ...] = ("encoder", "layers", "word_pooling")
    else:
        names = ("feature_set", "acoustic_features", "acoustic_layer")
    mine, their_config = features.get("feature_config") or {}, theirs.get("config") or {}
    for name in names:
        if name in mine and name in their_config and mine[name] != their_config[name]:
            raise ModelConfigError(
                f"model.init_{modality}: checkpoint {path} was trained on {name} "
                f"{their_config[name]!r}, this run uses {mine[name]!r}"
            )
    theirs_norm = (record.get("data") or {}).get("normalization")
    mine_norm = features.get("normalization")
    if modality == "acoustic" and theirs_norm and mine_norm and theirs_norm != mine_norm:
        raise ModelConfigError(
            f"model.init_acoustic: checkpoint {path} was trained on frames with "
            f"{theirs_norm!r} normalisation, this run uses {mine_norm!r} (data.normalization)"
        )


def seen_speakers(record: dict[str, Any]) -> set[str]:
    """The speakers a checkpoint trained or validated on, recomputed from its record's split
    (a CorpusError where its corpus is not prepared here, a SplitError where the split cannot
    be redrawn)."""
    key = split_key(record.get("data") or {})
    corpus = as_corpus(str(key[0] or ""))  # loaded once, for the split and its speakers
    split = load_keyed_split((corpus, *key[1:]))
    return {corpus.speaker_of[u] for part in ("train", "val") for u in split[part]}


def check_unseen(
    record: dict[str, Any], modality: str, test_speakers: Iterable[str], path: Path
) -> None:
    """A ModelConfigError if the checkpoint learned from any of this run's test speakers."""
    data = record.get("data") or {}
    try:
        seen = seen_speakers(record)
    except (CorpusError, SplitError, OSError) as exc:
        log.warning(
            "model.init_%s: whether checkpoint %s trained on this run's test speakers cannot "
            "be checked here: its corpus %r, %s",
            modality,
            path,
            data.get("corpus"),
            exc,
        )
        return
    leaked = sorted(seen & set(test_speakers))
    if leaked:
        raise ModelConfigError(
            f"model.init_{modality}: checkpoint {path} trained on {len(leaked)} of this run's "
            f"test speakers ({', '.join(leaked[:5])}{', ...' if len(leaked) > 5 else ''}; "
            f"its corpus {data.get('corpus')!r}, fold {data.get('fold')}): use the "
            "checkpoint of the same fold"
        )


def _source_state(
    ckpt: dict[str, Any],
    record: dict[str, Any],
    modality: str,
    target: nn.Module,
    path: Path,
    class_names: list[str] | None,
) -> dict[str, Any]:
    """The checkpoint's weights for `target`, keyed as in `target.state_dict()`. A
    `PosteriorBranch` started from a one-branch model takes its encoder and its head, so it
    outputs that model's own prediction: the classes must then be the same, in order."""
    state = ckpt["state_dict"]
    prefix = _source_prefix(record, modality, path)

    def under(p: str) -> dict[str, Any]:
        return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}

    if not (isinstance(target, PosteriorBranch) and prefix == "net.encoder."):
        return under(prefix)
    theirs = list(record.get("class_names") or [])
    if class_names is not None and theirs != list(class_names):
        raise ModelConfigError(
            f"model.init_{modality}: checkpoint {path} classifies {theirs}, this run "
            f"{list(class_names)}: a posterior branch takes its head, so the classes (and their "
            "order) must be the same"
        )
    branch = {f"branch.{k}": v for k, v in under("net.encoder.").items()}
    return {**branch, **{f"head.{k}": v for k, v in under("net.head.").items()}}


def init_branch(
    encoder: nn.Module,
    modality: str,
    path: str | Path,
    features: dict[str, Any] | None = None,
    test_speakers: Iterable[str] = (),
    class_names: list[str] | None = None,
) -> nn.Module:
    """Copy the `modality` branch of checkpoint `path` into `encoder`'s; return that branch.

    `features` (the datamodule's state: feature_config, acoustic_dim, lexical_dim) is checked
    against the checkpoint's; `test_speakers` against the speakers it learned from;
    `class_names` against its classes where its head is copied too (`PosteriorBranch`)."""
    path = Path(path)
    branch = branch_of(encoder, modality)
    if branch is None:
        raise ModelConfigError(
            f"model.init_{modality}: this model has no separately pooled {modality} branch"
        )
    try:
        ckpt = read_checkpoint(path)
        record = read_record(ckpt, path)
    except CheckpointError as exc:
        raise ModelConfigError(f"model.init_{modality}: {exc}") from exc
    if features:
        _check_features(record, modality, features, path)
    check_unseen(record, modality, test_speakers, path)
    source = _source_state(ckpt, record, modality, branch, path, class_names)
    target = branch.state_dict()
    missing = sorted(set(target) - set(source))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise ModelConfigError(
            f"model.init_{modality}: the {modality} branch of checkpoint {path} does not match "
            f"this model's (missing {missing[:3]}, unexpected {extra[:3]}): its model options "
            "(pooling, input_stats, stats_norm, sequence_encoder, head_hidden, "
            "posterior_branch, data.utterance_stats) must be this run's"
        )
    for key, value in target.items():
        if tuple(source[key].shape) != tuple(value.shape):
            raise ModelConfigError(
                f"model.init_{modality}: {key} of checkpoint {path} has shape "
                f"{tuple(source[key].shape)}, this model's {tuple(value.shape)} (hidden_size "
                "and num_layers must be this run's)"
            )
    branch.load_state_dict(source)
    return branch
