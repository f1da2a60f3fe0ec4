"""One network for every variant, built from parts by config values."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from datamodules.batch import Batch
from lightning_modules.encoders import BLSTMEncoder
from lightning_modules.fusion import FUSIONS, GMU, ConcatFusion
from lightning_modules.heads import ClassifierHead
from lightning_modules.hierarchical import HierarchicalEncoder
from lightning_modules.pooling import POOLINGS, AttentionPool, ClsPool, LastPool, MeanPool

ARCHITECTURES = ("acoustic", "lexical", "mmb", "mmmla", "hierarchical")


class ModelConfigError(ValueError):
    """A model option that does not name a known architecture, pooling or fusion."""


@dataclass
class ModelOutput:
    """logits (B, C); attention weights by modality ("acoustic" (B, T), "lexical" (B, W)); gate (B, H)."""

    logits: Tensor
    attention: dict[str, Tensor] = field(default_factory=dict)
    gate: Tensor | None = None


def modalities_for(architecture: str) -> list[str]:
    """Which Batch modalities an architecture reads: ["acoustic"], ["lexical"] or both."""
    check_choice("architecture", architecture, ARCHITECTURES)
    return {"acoustic": ["acoustic"], "lexical": ["lexical"]}.get(
        architecture, ["acoustic", "lexical"]
    )


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ModelConfigError(f"model.{key} must be one of {', '.join(choices)}; got {value!r}")


def make_pooling(name: str, dim: int) -> nn.Module:
    """A pooling over (B, T, dim) states; all give a (B, dim) vector."""
    if name == "last":
        return LastPool()
    if name == "mean":
        return MeanPool()
    if name == "attention":
        return AttentionPool(dim)
    raise ModelConfigError(f"model.pooling {name!r} is not a sequence pooling")


class SequenceBranch(nn.Module):
    """(B, T, F) sequence, (B, T) mask -> (B, 2H) vector and (B, T) weights or None."""

    def __init__(
        self, input_dim: int, hidden_size: int, num_layers: int, dropout: float, pooling: str
    ) -> None:
        super().__init__()
        self.encoder = BLSTMEncoder(input_dim, hidden_size, num_layers, dropout)
        self.pooling = make_pooling(pooling, self.encoder.out_dim)
        self.out_dim = self.encoder.out_dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.pooling(self.encoder(x, mask), mask)


class LexicalBranch(nn.Module):
    """Batch words (B, W, D) or [CLS] (B, D) -> (B, 2H) vector and (B, W) weights or None."""

    def __init__(
        self, input_dim: int, hidden_size: int, num_layers: int, dropout: float, pooling: str
    ) -> None:
        super().__init__()
        self.use_cls = pooling == "cls"
        self.out_dim = 2 * hidden_size
        if self.use_cls:
            self.cls = ClsPool(input_dim, self.out_dim)
        else:
            self.sequence = SequenceBranch(input_dim, hidden_size, num_layers, dropout, pooling)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        if self.use_cls:
            cls = require(batch, "cls").unsqueeze(1)  # (B, 1, D)
            return self.cls(cls, torch.ones_like(cls[..., 0], dtype=torch.bool))
        return self.sequence(require(batch, "words"), require(batch, "word_mask"))


def require(batch: Batch, name: str) -> Tensor:
    value = getattr(batch, name)
    if value is None:
        raise ModelConfigError(f"the model needs batch.{name}, but the batch has none")
    return value


class EmotionNet(nn.Module):
    """Batch -> ModelOutput, for architecture acoustic | lexical | mmb | mmmla | hierarchical.

    acoustic/lexical: BLSTM + pooling (lexical "cls" projects the [CLS] vector instead);
    mmb: both branches concatenated; mmmla: both branches fused by a GMU (or `fusion`);
    hierarchical: see HierarchicalEncoder (pooling = the per-word frame pooling).
    """

    def __init__(
        self,
        architecture: str,
        num_classes: int,
        acoustic_dim: int = 65,
        lexical_dim: int = 384,
        pooling: str = "attention",
        fusion: str = "gmu",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.2,
        head_hidden: int = 0,
    ) -> None:
        super().__init__()
        check_choice("architecture", architecture, ARCHITECTURES)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("fusion", fusion, FUSIONS)
        if architecture == "mmb":
            fusion = "concat"  # MM-B is the concatenation baseline by definition
        self.architecture = architecture
        # The fusion actually used ("none" for one modality), for run records.
        self.fusion_name = fusion if len(modalities_for(architecture)) == 2 else "none"
        self.acoustic: SequenceBranch | None = None
        self.lexical: LexicalBranch | None = None
        self.fusion: nn.Module | None = None
        self.hierarchical: HierarchicalEncoder | None = None
        args = (hidden_size, num_layers, dropout)
        if architecture == "hierarchical":
            if pooling not in ("attention", "mean"):
                raise ModelConfigError("model.pooling for hierarchical must be attention or mean")
            self.hierarchical = HierarchicalEncoder(
                acoustic_dim, lexical_dim, *args, word_pooling=pooling, fusion=fusion
            )
            out_dim = self.hierarchical.out_dim
        else:
            if "acoustic" in modalities_for(architecture):
                if pooling == "cls":
                    raise ModelConfigError("model.pooling 'cls' exists for text only")
                self.acoustic = SequenceBranch(acoustic_dim, *args, pooling)
                out_dim = self.acoustic.out_dim
            if "lexical" in modalities_for(architecture):
                self.lexical = LexicalBranch(lexical_dim, *args, pooling)
                out_dim = self.lexical.out_dim
            if self.acoustic is not None and self.lexical is not None:
                a, lex = self.acoustic.out_dim, self.lexical.out_dim
                self.fusion = (
                    ConcatFusion(a, lex) if fusion == "concat" else GMU(a, lex, hidden_size)
                )
                out_dim = self.fusion.out_dim
        self.head = ClassifierHead(out_dim, num_classes, dropout, head_hidden)

    @property
    def modalities(self) -> list[str]:
        """The Batch modalities this network reads."""
        return modalities_for(self.architecture)

    def forward(self, batch: Batch) -> ModelOutput:
        attention: dict[str, Tensor] = {}
        gate = None
        if self.hierarchical is not None:
            vector, attention, gate = self.hierarchical(
                require(batch, "acoustic"),
                require(batch, "acoustic_mask"),
                require(batch, "words"),
                require(batch, "word_mask"),
                require(batch, "word_spans"),
            )
            return ModelOutput(self.head(vector), attention, gate)
        vectors = []
        if self.acoustic is not None:
            vector, weights = self.acoustic(
                require(batch, "acoustic"), require(batch, "acoustic_mask")
            )
            vectors.append(vector)
            if weights is not None:
                attention["acoustic"] = weights
        if self.lexical is not None:
            vector, weights = self.lexical(batch)
            vectors.append(vector)
            if weights is not None:
                attention["lexical"] = weights
        if self.fusion is not None:
            vector, gate = self.fusion(*vectors)
        return ModelOutput(self.head(vector), attention, gate)
