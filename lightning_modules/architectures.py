"""What each architecture name means, in one place: the registry every CLI and report reads.

`ARCHITECTURES[name]` gives the modalities the architecture reads, whether a prediction needs
at least one word, which fusion it uses, the variant config the demo trains for it, and how
it is built. Poolings and fusions are name -> class tables next to their classes
(`pooling.SEQUENCE_POOLINGS`, `fusion.FUSIONS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from lightning_modules.branches import (
    AcousticEncoder,
    BranchOptions,
    FusedEncoder,
    LexicalEncoder,
    ModelConfigError,
    WordLevelEncoder,
)

Builder = Callable[[int, int, BranchOptions, str], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """One architecture: its inputs, its fusion rule and its builder."""

    name: str
    modalities: tuple[str, ...]  # Batch modalities it reads
    needs_words: bool  # a prediction without words must hand over to an acoustic model
    fusion_rule: str  # "none" (one modality), "option" (model.fusion), or a fixed fusion name
    demo_config: str  # configs/<demo_config>.yaml trains the demo's built-in model
    build: Builder  # (acoustic_dim, lexical_dim, options, fusion) -> encoder module
    description: str

    def fusion(self, option: str) -> str:
        """The fusion actually used when model.fusion is `option` ("none" for one modality)."""
        if self.fusion_rule == "option":
            return option
        return self.fusion_rule

    @property
    def modality(self) -> str:
        """'acoustic', 'lexical' or 'acoustic+lexical' (run records, W&B)."""
        return "+".join(self.modalities)

    @property
    def group(self) -> str:
        """'acoustic', 'lexical' or 'multimodal' (report panels)."""
        return self.modalities[0] if len(self.modalities) == 1 else "multimodal"


ARCHITECTURES: dict[str, Architecture] = {
    "acoustic": Architecture(
        "acoustic",
        ("acoustic",),
        needs_words=False,
        fusion_rule="none",
        demo_config="acoustic_attention",
        build=lambda a, lex, o, f: AcousticEncoder(a, o),
        description="acoustic BLSTM (or none) + pooling over frames",
    ),
    "lexical": Architecture(
        "lexical",
        ("lexical",),
        needs_words=True,
        fusion_rule="none",
        demo_config="lexical_attention",
        build=lambda a, lex, o, f: LexicalEncoder(lex, o),
        description="word-vector BLSTM + pooling over words, or the projected [CLS] vector",
    ),
    "mmb": Architecture(
        "mmb",
        ("acoustic", "lexical"),
        needs_words=True,
        fusion_rule="concat",  # MM-B is the concatenation baseline by definition
        demo_config="mmb",
        build=lambda a, lex, o, f: FusedEncoder(a, lex, o, f),
        description="both branches pooled, concatenated",
    ),
    "mmmla": Architecture(
        "mmmla",
        ("acoustic", "lexical"),
        needs_words=True,
        fusion_rule="option",
        demo_config="mmmla",
        build=lambda a, lex, o, f: FusedEncoder(a, lex, o, f),
        description="both branches pooled, fused by a Gated Multimodal Unit (model.fusion)",
    ),
    "hierarchical": Architecture(
        "hierarchical",
        ("acoustic", "lexical"),
        # word-less items take its acoustic path, so it never needs a fallback
        needs_words=False,
        fusion_rule="option",
        demo_config="hierarchical",
        build=lambda a, lex, o, f: WordLevelEncoder(a, lex, o, f),
        description="frames pooled per word, fused per word, word BLSTM + attention",
    ),
}


def architecture(name: str) -> Architecture:
    """The registry entry of `name`, or a ModelConfigError listing the known ones."""
    if name not in ARCHITECTURES:
        raise ModelConfigError(
            f"model.architecture must be one of {', '.join(ARCHITECTURES)}; got {name!r}"
        )
    return ARCHITECTURES[name]


def modalities_for(name: str) -> list[str]:
    """Which Batch modalities an architecture reads: ["acoustic"], ["lexical"] or both."""
    return list(architecture(name).modalities)
