"""One network for every variant: the registry's encoder for the architecture, then a head."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import Tensor, nn

from datamodules.batch import Batch
from lightning_modules.architectures import ARCHITECTURES, modalities_for
from lightning_modules.architectures import architecture as get_architecture
from lightning_modules.augment import Mix
from lightning_modules.branches import ENCODERS, BranchOptions, FusedEncoder, ModelConfigError
from lightning_modules.encoders import LayerWeightedSum, out_dim
from lightning_modules.fusion import FUSIONS
from lightning_modules.heads import ClassifierHead
from lightning_modules.pooling import POOLINGS

__all__ = ["ARCHITECTURES", "EmotionNet", "ModelConfigError", "ModelOutput", "modalities_for"]


@dataclass
class ModelOutput:
    """logits (B, C); attention weights by modality ("acoustic" (B, T), "lexical" (B, W)); gate (B, H)."""

    logits: Tensor
    attention: dict[str, Tensor] = field(default_factory=dict)
    gate: Tensor | None = None
    # each branch's own logits (B, C), by modality: only a model built with branch heads
    branch_logits: dict[str, Tensor] = field(default_factory=dict)


def check_choice(key: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ModelConfigError(f"model.{key} must be one of {', '.join(choices)}; got {value!r}")


class EmotionNet(nn.Module):
    """Batch -> ModelOutput for any architecture of `ARCHITECTURES` (see its descriptions).

    `sequence_encoder` "none" pools the input features directly (no BLSTM): with `head_hidden`
    0 that is a linear probe, with `head_hidden` > 0 an MLP probe. `branch_heads` gives each
    branch of a two-branch fusion (mmb, mmmla) its own linear classifier on its pooled vector,
    for per-branch auxiliary losses (`ModelOutput.branch_logits`). `input_stats` follows each
    sequence branch's pooled vector by the mean ⊕ std of that branch's inputs; `stats_norm`
    standardises each branch's pooled statistics (`StatsNorm`); `utterance_stats_dim` > 0
    follows the acoustic branch's vector by the batch's `utterance_stats`. `posterior_branch`
    ("acoustic" or "lexical", mmb and mmmla) gives that branch its own classifier and fuses its
    class log-probabilities (`PosteriorBranch`).
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
        sequence_encoder: str = "blstm",
        acoustic_layers: int = 1,
        branch_heads: bool = False,
        input_stats: bool = False,
        stats_norm: bool = False,
        utterance_stats_dim: int = 0,
        posterior_branch: str = "",
    ) -> None:
        super().__init__()
        spec = get_architecture(architecture)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("fusion", fusion, tuple(FUSIONS))
        check_choice("sequence_encoder", sequence_encoder, ENCODERS)
        self.architecture = architecture
        # The fusion actually used ("none" for one modality), for run records.
        self.fusion_name = spec.fusion(fusion)
        # frames of several stacked hidden states (hf:<path> layer "all"): a learned layer mix
        self.layer_mix = LayerWeightedSum(acoustic_layers) if acoustic_layers > 1 else None
        if self.layer_mix is not None:
            if acoustic_dim % acoustic_layers:
                raise ModelConfigError(
                    f"acoustic_dim {acoustic_dim} does not split into {acoustic_layers} layers"
                )
            acoustic_dim //= acoustic_layers
        options = BranchOptions(
            pooling,
            fusion,
            hidden_size,
            num_layers,
            dropout,
            sequence_encoder,
            input_stats,
            stats_norm,
            utterance_stats_dim,
            posterior_branch,
            num_classes,
            head_hidden,
        )
        self.encoder = spec.build(acoustic_dim, lexical_dim, options, self.fusion_name)
        if posterior_branch and not isinstance(self.encoder, FusedEncoder):
            raise ModelConfigError(
                f"model.posterior_branch applies to the two-branch fusions (mmb, mmmla); "
                f"{architecture!r} has no separately pooled branches"
            )
        self.head = ClassifierHead(out_dim(self.encoder), num_classes, dropout, head_hidden)
        # built after the head, so that a model without them starts from the same weights
        self.branch_heads: nn.ModuleDict | None = None
        if branch_heads:
            if not isinstance(self.encoder, FusedEncoder):
                raise ModelConfigError(
                    f"model.branch_loss applies to the two-branch fusions (mmb, mmmla); "
                    f"{architecture!r} has no separately pooled branches"
                )
            self.branch_heads = nn.ModuleDict(
                {
                    "acoustic": nn.Linear(out_dim(self.encoder.acoustic), num_classes),
                    "lexical": nn.Linear(out_dim(self.encoder.lexical), num_classes),
                }
            )

    @property
    def modalities(self) -> list[str]:
        """The Batch modalities this network reads."""
        return modalities_for(self.architecture)

    def forward(self, batch: Batch, mix: Mix | None = None) -> ModelOutput:
        """`mix` (training only): mixup of the vectors each classifier reads (`Mix`)."""
        mixed = mix.vectors if mix is not None else (lambda x: x)
        if self.layer_mix is not None and batch.acoustic is not None:
            batch = dataclasses.replace(batch, acoustic=self.layer_mix(batch.acoustic))
        if self.branch_heads is not None:
            assert isinstance(self.encoder, FusedEncoder)
            v_a, v_l, attention = self.encoder.pooled(batch)
            vector, gate = self.encoder.fusion(v_a, v_l)
            branch_logits = {
                "acoustic": self.branch_heads["acoustic"](mixed(v_a)),
                "lexical": self.branch_heads["lexical"](mixed(v_l)),
            }
            return ModelOutput(self.head(mixed(vector)), attention, gate, branch_logits)
        vector, attention, gate = self.encoder(batch)
        return ModelOutput(self.head(mixed(vector)), attention, gate)
