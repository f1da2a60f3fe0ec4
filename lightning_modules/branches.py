"""Per-modality branches and the encoders each architecture is made of.

Every encoder maps a `Batch` to `(vector (B, out_dim), attention {modality: weights}, gate | None)`
and reads only the Batch fields its modalities name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datamodules.batch import Batch
from lightning_modules.encoders import BLSTMEncoder, out_dim
from lightning_modules.fusion import FUSIONS
from lightning_modules.heads import ClassifierHead
from lightning_modules.hierarchical import HierarchicalEncoder
from lightning_modules.pooling import (
    SEQUENCE_POOLINGS,
    STATS_POOLINGS,
    ClsPool,
    StatsNorm,
    StatsPool,
)

ENCODERS = ("blstm", "none")
EncoderOutput = tuple[Tensor, dict[str, Tensor], Tensor | None]


class ModelConfigError(ValueError):
    """A model option that does not name a known architecture, pooling or fusion."""


@dataclass(frozen=True)
class BranchOptions:
    """The model options every branch is built from."""

    pooling: str = "attention"
    fusion: str = "gmu"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.2
    sequence_encoder: str = "blstm"  # "none": pool the (normalised) inputs directly (a probe)
    input_stats: bool = False  # the pooled vector followed by the mean ⊕ std of the inputs
    stats_norm: bool = False  # standardise pooled statistics (`StatsNorm`)
    utterance_stats_dim: int = 0  # > 0: the acoustic vector followed by batch.utterance_stats
    # "acoustic" or "lexical": that branch of a two-branch fusion ends in its own classifier
    # and hands the fusion its C class log-probabilities (`PosteriorBranch`)
    posterior_branch: str = ""
    num_classes: int = 0
    head_hidden: int = 0


def require(batch: Batch, name: str) -> Tensor:
    """A Batch field the model needs, or a ModelConfigError naming it."""
    value = getattr(batch, name)
    if value is None:
        raise ModelConfigError(f"the model needs batch.{name}, but the batch has none")
    return value


class SequenceBranch(nn.Module):
    """(B, T, F) sequence, (B, T) mask -> (B, out_dim) vector and (B, T) weights or None.

    A BLSTM (or, with encoder "none", nothing) followed by a sequence pooling. With
    `input_stats` the pooled vector is followed by the mean ⊕ std of the branch's own inputs
    (a statistics shortcut past the BLSTM: the linear probe's view of the frames). With
    `stats_norm` every statistics vector (a stats or attentive_stats pooling's output, the
    input statistics) is standardised by a `StatsNorm`.
    """

    def __init__(self, input_dim: int, options: BranchOptions) -> None:
        super().__init__()
        o = options
        if o.pooling not in SEQUENCE_POOLINGS:
            raise ModelConfigError(f"model.pooling {o.pooling!r} is not a sequence pooling")
        if o.sequence_encoder == "none" and o.pooling == "last":
            raise ModelConfigError(
                "model.pooling 'last' needs the BLSTM (model.sequence_encoder blstm)"
            )
        self.encoder: nn.Module | None = None
        dim = input_dim
        if o.sequence_encoder == "blstm":
            self.encoder = BLSTMEncoder(input_dim, o.hidden_size, o.num_layers, o.dropout)
            dim = self.encoder.out_dim
        self.pooling = SEQUENCE_POOLINGS[o.pooling](dim)
        self.input_stats = StatsPool(input_dim) if o.input_stats else None
        extra = 0 if self.input_stats is None else out_dim(self.input_stats)
        self.out_dim = out_dim(self.pooling) + extra
        pooled_stats = o.pooling in STATS_POOLINGS
        if o.stats_norm and not (pooled_stats or extra):
            raise ModelConfigError(
                "model.stats_norm needs statistics to standardise: pooling stats or "
                "attentive_stats, or model.input_stats true"
            )
        # identities where there is nothing to standardise (they hold no state)
        norm_pooled, norm_inputs = o.stats_norm and pooled_stats, o.stats_norm and extra
        self.pooling_norm = StatsNorm(out_dim(self.pooling)) if norm_pooled else nn.Identity()
        self.input_norm = StatsNorm(extra) if norm_inputs else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        encoded = x if self.encoder is None else self.encoder(x, mask)
        vector, weights = self.pooling(encoded, mask)
        vector = self.pooling_norm(vector)
        if self.input_stats is not None:
            stats = self.input_norm(self.input_stats(x, mask)[0])
            vector = torch.cat([vector, stats], dim=-1)
        return vector, weights


class AcousticEncoder(nn.Module):
    """The acoustic branch alone: frames -> vector, attention over frames; followed by the
    clip's standardised statistics where the data gives them (`utterance_stats_dim`)."""

    def __init__(self, acoustic_dim: int, options: BranchOptions) -> None:
        super().__init__()
        if options.pooling == "cls":
            raise ModelConfigError("model.pooling 'cls' exists for text only")
        self.branch = SequenceBranch(acoustic_dim, options)
        self.stats_dim = options.utterance_stats_dim
        self.out_dim = self.branch.out_dim + self.stats_dim

    def forward(self, batch: Batch) -> EncoderOutput:
        vector, weights = self.branch(require(batch, "acoustic"), require(batch, "acoustic_mask"))
        if self.stats_dim:
            vector = torch.cat([vector, require(batch, "utterance_stats")], dim=-1)
        return vector, ({} if weights is None else {"acoustic": weights}), None


class LexicalEncoder(nn.Module):
    """Words (B, W, D) through a sequence branch, or the [CLS] vector (B, D) projected."""

    def __init__(self, lexical_dim: int, options: BranchOptions) -> None:
        super().__init__()
        self.use_cls = options.pooling == "cls"
        if self.use_cls and (options.input_stats or options.stats_norm):
            raise ModelConfigError(
                "model.input_stats and model.stats_norm need a sequence pooling, not 'cls'"
            )
        if self.use_cls:
            self.out_dim = 2 * options.hidden_size
            self.cls = ClsPool(lexical_dim, self.out_dim)
        else:
            self.sequence = SequenceBranch(lexical_dim, options)
            self.out_dim = self.sequence.out_dim

    def forward(self, batch: Batch) -> EncoderOutput:
        if self.use_cls:
            cls = require(batch, "cls").unsqueeze(1)  # (B, 1, D)
            vector, _ = self.cls(cls, torch.ones_like(cls[..., 0], dtype=torch.bool))
            return vector, {}, None
        vector, weights = self.sequence(require(batch, "words"), require(batch, "word_mask"))
        return vector, ({} if weights is None else {"lexical": weights}), None


class PosteriorBranch(nn.Module):
    """A branch followed by its own classifier head: batch -> (B, C) class log-probabilities.

    Built where `model.posterior_branch` names the branch: the fusion then reads what that
    branch concludes (C values) instead of its pooled vector. Started from a trained one-branch
    model (`model.init_<modality>`: its encoder and its head) and frozen, it is that model's
    prediction, which the fusion can weigh but not refit line by line."""

    def __init__(self, branch: nn.Module, num_classes: int, dropout: float, hidden: int) -> None:
        super().__init__()
        self.branch = branch
        self.head = ClassifierHead(out_dim(branch), num_classes, dropout, hidden)
        self.out_dim = num_classes

    def forward(self, batch: Batch) -> EncoderOutput:
        vector, attention, gate = self.branch(batch)
        return torch.log_softmax(self.head(vector), dim=-1), attention, gate


class FusedEncoder(nn.Module):
    """Both branches, each pooled on its own (or one of them a `PosteriorBranch`), then fused
    (concatenation or GMU)."""

    def __init__(
        self, acoustic_dim: int, lexical_dim: int, options: BranchOptions, fusion: str
    ) -> None:
        super().__init__()
        # built in this order (acoustic, lexical, fusion): it fixes the initial weights per seed
        self.acoustic: nn.Module = AcousticEncoder(acoustic_dim, options)
        self.lexical: nn.Module = LexicalEncoder(lexical_dim, options)
        o = options
        if o.posterior_branch:
            if o.posterior_branch not in ("acoustic", "lexical") or o.num_classes < 2:
                raise ModelConfigError(
                    "model.posterior_branch must be acoustic or lexical (with >= 2 classes); "
                    f"got {o.posterior_branch!r}"
                )
            branch = getattr(self, o.posterior_branch)
            posterior = PosteriorBranch(branch, o.num_classes, o.dropout, o.head_hidden)
            setattr(self, o.posterior_branch, posterior)
        self.fusion = FUSIONS[fusion](
            self.acoustic.out_dim, self.lexical.out_dim, options.hidden_size
        )
        self.out_dim = out_dim(self.fusion)

    def pooled(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Each branch's pooled vector (acoustic, lexical) and the attention of both."""
        v_a, att_a, _ = self.acoustic(batch)
        v_l, att_l, _ = self.lexical(batch)
        return v_a, v_l, {**att_a, **att_l}

    def forward(self, batch: Batch) -> EncoderOutput:
        v_a, v_l, attention = self.pooled(batch)
        vector, gate = self.fusion(v_a, v_l)
        return vector, attention, gate


class WordLevelEncoder(nn.Module):
    """The hierarchical model (`HierarchicalEncoder`) reading its inputs from a Batch."""

    def __init__(
        self, acoustic_dim: int, lexical_dim: int, options: BranchOptions, fusion: str
    ) -> None:
        super().__init__()
        o = options
        if o.sequence_encoder != "blstm":
            raise ModelConfigError(
                "model.sequence_encoder 'none' does not apply to the hierarchical model"
            )
        if o.input_stats or o.stats_norm or o.utterance_stats_dim:
            raise ModelConfigError(
                "model.input_stats, model.stats_norm and data.utterance_stats do not apply to "
                "the hierarchical model (no branch pooling)"
            )
        if o.pooling not in HierarchicalEncoder.WORD_POOLINGS:
            raise ModelConfigError(
                f"model.pooling for hierarchical must be one of "
                f"{', '.join(HierarchicalEncoder.WORD_POOLINGS)} (the frames of each word); "
                f"got {o.pooling!r}"
            )
        self.net = HierarchicalEncoder(
            acoustic_dim,
            lexical_dim,
            o.hidden_size,
            o.num_layers,
            o.dropout,
            word_pooling=o.pooling,
            fusion=fusion,
        )
        self.out_dim = self.net.out_dim

    def forward(self, batch: Batch) -> EncoderOutput:
        return self.net(
            require(batch, "acoustic"),
            require(batch, "acoustic_mask"),
            require(batch, "words"),
            require(batch, "word_mask"),
            require(batch, "word_spans"),
        )
