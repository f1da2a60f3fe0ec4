"""Model parts on tiny synthetic tensors: shapes, padding invariance, attention weights, gates."""

from __future__ import annotations

import pytest
import torch

from datamodules.batch import Batch
from lightning_modules.encoders import BLSTMEncoder, out_dim
from lightning_modules.fusion import GMU, ConcatFusion
from lightning_modules.heads import ClassifierHead
from lightning_modules.hierarchical import HierarchicalEncoder, WordSpanPool, span_mask
from lightning_modules.model import ARCHITECTURES, EmotionNet, ModelConfigError, modalities_for
from lightning_modules.pooling import (
    AttentionPool,
    ClsPool,
    LastPool,
    MeanPool,
    StatsNorm,
    StatsPool,
)

B, T, D = 3, 7, 6
LENGTHS = torch.tensor([7, 4, 0])  # a full item, a padded one, an empty one


def prefix_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    return torch.arange(total) < lengths.unsqueeze(1)


def scramble_padding(
    x: torch.Tensor, mask: torch.Tensor, value: float | None = None
) -> torch.Tensor:
    """The same tensor with padded positions replaced by large random values (or `value`)."""
    noise = torch.randn_like(x) * 100 if value is None else torch.full_like(x, value)
    return torch.where(mask.unsqueeze(-1), x, noise)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_blstm_shapes_zero_padding_and_invariance() -> None:
    enc = BLSTMEncoder(D, hidden_size=5, num_layers=2, dropout=0.1).eval()
    mask = prefix_mask(LENGTHS, T)
    x = torch.randn(B, T, D)
    out = enc(x, mask)
    assert out.shape == (B, T, 10)
    assert torch.all(out[~mask] == 0)
    assert torch.all(out[2] == 0)  # the empty item
    assert torch.isfinite(out).all()
    assert torch.allclose(out, enc(scramble_padding(x, mask), mask), atol=1e-6)
    assert torch.allclose(out, enc(scramble_padding(x, mask, float("nan")), mask), atol=1e-6)
    # The padded item equals the same item run alone, unpadded.
    alone = enc(x[1:2, :4], torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(out[1:2, :4], alone, atol=1e-6)


def test_blstm_backward_gets_gradients_with_empty_items() -> None:
    enc = BLSTMEncoder(D, 4)
    x = torch.randn(B, T, D, requires_grad=True)
    enc(x, prefix_mask(LENGTHS, T)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.all(x.grad[2] == 0) and torch.all(x.grad[1, 4:] == 0)


POOLINGS = {
    "last": lambda: LastPool(),
    "mean": lambda: MeanPool(),
    "attention": lambda: AttentionPool(D),
}


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_pooling_shapes_invariance_and_empty_rows(name: str) -> None:
    pool = POOLINGS[name]()
    mask = prefix_mask(LENGTHS, T)
    x = torch.randn(B, T, D)
    vec, weights = pool(x, mask)
    assert vec.shape == (B, D)
    assert torch.isfinite(vec).all()
    assert torch.all(vec[2] == 0)  # no real step: zero vector, not NaN
    for padded in (scramble_padding(x, mask), scramble_padding(x, mask, float("inf"))):
        vec2, _ = pool(padded, mask)
        assert torch.allclose(vec, vec2, atol=1e-6)
    assert (weights is None) == (name != "attention")


def test_last_pool_takes_forward_last_and_backward_first() -> None:
    x = torch.arange(B * T * 4, dtype=torch.float32).reshape(B, T, 4)
    vec, _ = LastPool()(x, prefix_mask(LENGTHS, T))
    assert torch.equal(vec[1, :2], x[1, 3, :2])  # forward half at lengths - 1
    assert torch.equal(vec[1, 2:], x[1, 0, 2:])  # backward half at step 0


def test_mean_pool_matches_hand_mean() -> None:
    x = torch.randn(B, T, D)
    vec, _ = MeanPool()(x, prefix_mask(LENGTHS, T))
    assert torch.allclose(vec[1], x[1, :4].mean(0), atol=1e-6)


def test_attention_weights_sum_to_one_on_real_steps_and_zero_on_padding() -> None:
    pool = AttentionPool(D, attention_dim=3)
    mask = prefix_mask(LENGTHS, T)
    x = torch.randn(B, T, D)
    vec, w = pool(x, mask)
    assert w.shape == (B, T)
    assert torch.allclose(w[:2].sum(1), torch.ones(2), atol=1e-6)
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[:2][mask[:2]] > 0)
    assert torch.allclose(vec[1], (w[1, :, None] * x[1]).sum(0), atol=1e-6)
    # Gradients stay finite through -inf masking and an all-masked row.
    x.requires_grad_(True)
    pool(x, mask)[0].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cls_pool_projects_the_cls_vector() -> None:
    pool = ClsPool(D, 8)
    cls = torch.randn(B, 1, D)
    vec, w = pool(cls, torch.ones(B, 1, dtype=torch.bool))
    assert vec.shape == (B, 8) and w is None
    assert vec.abs().max() <= 1


def test_gmu_gate_in_open_unit_interval_and_convex_mix() -> None:
    gmu = GMU(4, 6, 5)
    xa, xl = torch.randn(B, 4) * 10, torch.randn(B, 6) * 10
    h, z = gmu(xa, xl)
    assert h.shape == z.shape == (B, 5)
    assert torch.all((z > 0) & (z < 1))
    ha, hl = torch.tanh(gmu.acoustic(xa)), torch.tanh(gmu.lexical(xl))
    assert torch.allclose(h, z * ha + (1 - z) * hl, atol=1e-6)
    # Works per word too: (B, W, D)
    h3, z3 = gmu(torch.randn(B, 2, 4), torch.randn(B, 2, 6))
    assert h3.shape == z3.shape == (B, 2, 5)


def test_concat_fusion() -> None:
    fusion = ConcatFusion(4, 6)
    h, gate = fusion(torch.randn(B, 4), torch.randn(B, 6))
    assert h.shape == (B, 10) and fusion.out_dim == 10 and gate is None


def test_out_dim_reads_the_size_a_part_declares() -> None:
    assert out_dim(ConcatFusion(4, 6)) == 10 and out_dim(BLSTMEncoder(5, 3)) == 6
    with pytest.raises(TypeError, match="Linear declares no integer out_dim"):
        out_dim(torch.nn.Linear(2, 2))  # a part without the attribute is named, not guessed


def test_head_shapes() -> None:
    assert ClassifierHead(8, 4, 0.1)(torch.randn(B, 8)).shape == (B, 4)
    assert ClassifierHead(8, 4, 0.1, hidden=16)(torch.randn(B, 8)).shape == (B, 4)


def words_fixture() -> tuple[torch.Tensor, ...]:
    """Frames (B, T), words (B, W) with spans; item 2 has frames but no words."""
    w_total = 3
    frame_mask = prefix_mask(torch.tensor([7, 5, 6]), T)
    word_mask = prefix_mask(torch.tensor([3, 2, 0]), w_total)
    spans = torch.tensor(
        [[[0, 2], [2, 5], [5, 7]], [[0, 3], [3, 3], [9, 9]], [[0, 0], [0, 0], [0, 0]]]
    )  # item 1: second word has an empty span (no frames)
    return frame_mask, word_mask, spans


@pytest.mark.parametrize("mode", ["attention", "mean"])
def test_word_span_pool(mode: str) -> None:
    frame_mask, word_mask, spans = words_fixture()
    inside = span_mask(spans, frame_mask, word_mask)
    assert inside.shape == (B, 3, T)
    assert inside[0, 1].tolist() == [False, False, True, True, True, False, False]
    pool = WordSpanPool(D, mode)
    x = torch.randn(B, T, D)
    vec, w = pool(x, inside)
    assert vec.shape == (B, 3, D)
    assert torch.allclose(w[0].sum(-1), torch.ones(3), atol=1e-6)
    assert torch.all(w[~inside] == 0)
    assert torch.all(vec[1, 1] == 0) and torch.all(vec[2] == 0)  # empty span, no words
    if mode == "mean":
        assert torch.allclose(vec[0, 1], x[0, 2:5].mean(0), atol=1e-6)
    # Frames outside a word's span (other words' frames, padding) do not change that word.
    x2 = x.clone()
    x2[0, 5:] = 1e3  # the third word's frames
    vec2, _ = pool(scramble_padding(x2, frame_mask), inside)
    assert torch.allclose(vec[0, :2], vec2[0, :2], atol=1e-5)
    assert not torch.allclose(vec[0, 2], vec2[0, 2])


def test_hierarchical_encoder_padding_invariance_and_fallback() -> None:
    frame_mask, word_mask, spans = words_fixture()
    enc = HierarchicalEncoder(D, 4, hidden_size=5, word_pooling="attention", fusion="gmu").eval()
    frames, words = torch.randn(B, T, D), torch.randn(B, 3, 4)
    vec, att, gate = enc(frames, frame_mask, words, word_mask, spans)
    assert vec.shape == (B, 10) and gate.shape == (B, 5)
    assert torch.isfinite(vec).all() and torch.all((gate[:2] > 0) & (gate[:2] < 1))
    assert att["lexical"].shape == (B, 3) and att["word_frames"].shape == (B, 3, T)
    assert torch.allclose(att["lexical"][:2].sum(1), torch.ones(2), atol=1e-6)
    vec2, _, _ = enc(
        scramble_padding(frames, frame_mask),
        frame_mask,
        scramble_padding(words, word_mask),
        word_mask,
        spans,
    )
    assert torch.allclose(vec, vec2, atol=1e-5)
    # The wordless item takes the acoustic path: frame attention over the acoustic BLSTM.
    states = enc.frames(frames, frame_mask)
    fallback, _ = enc.frame_attention(states, frame_mask)
    assert torch.allclose(vec[2], fallback[2], atol=1e-6)
    assert torch.allclose(att["acoustic"][2].sum(), torch.tensor(1.0), atol=1e-6)
    assert torch.all(att["acoustic"][:2] == 0)


def synthetic_batch(lexical_dim: int = 4, with_empty: bool = True) -> Batch:
    frame_mask, word_mask, spans = words_fixture()
    if not with_empty:
        word_mask[2, 0] = True
    return Batch(
        labels=torch.tensor([0, 1, 2]),
        acoustic=torch.randn(B, T, D),
        acoustic_mask=frame_mask,
        words=torch.randn(B, 3, lexical_dim),
        word_mask=word_mask,
        cls=torch.randn(B, lexical_dim),
        word_spans=spans,
    )


CASES = [
    (arch, pooling, fusion)
    for arch in ARCHITECTURES
    for pooling in ("last", "mean", "attention", "cls")
    for fusion in ("concat", "gmu")
    if not (pooling == "cls" and arch != "lexical")
    and not (arch == "hierarchical" and pooling == "last")
]


@pytest.mark.parametrize(("arch", "pooling", "fusion"), CASES)
def test_emotion_net_every_variant(arch: str, pooling: str, fusion: str) -> None:
    net = EmotionNet(arch, 3, D, 4, pooling, fusion, hidden_size=5)
    batch = synthetic_batch()
    out = net(batch)
    assert out.logits.shape == (B, 3)
    assert torch.isfinite(out.logits).all()
    if pooling == "attention" and arch in ("acoustic", "mmb", "mmmla"):
        assert out.attention["acoustic"].shape == (B, T)
    if arch in ("mmmla", "hierarchical") and fusion == "gmu":
        assert out.gate is not None and out.gate.shape == (B, 5)
    if arch in ("acoustic", "lexical", "mmb"):
        assert out.gate is None
    out.logits.sum().backward()
    # The model reads only the fields its modalities name.
    assert net.modalities == modalities_for(arch)


def test_acoustic_model_does_not_need_words() -> None:
    net = EmotionNet("acoustic", 3, D, 4)
    batch = synthetic_batch()
    batch.words = batch.word_mask = batch.cls = batch.word_spans = None
    assert net(batch).logits.shape == (B, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "video"}, "model.architecture"),
        ({"architecture": "acoustic", "pooling": "max"}, "model.pooling"),
        ({"architecture": "acoustic", "pooling": "cls"}, "text only"),
        ({"architecture": "mmmla", "fusion": "sum"}, "model.fusion"),
    ],
)
def test_bad_config_names_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        EmotionNet(num_classes=3, **kwargs)


def test_missing_batch_field_is_a_clear_error() -> None:
    net = EmotionNet("lexical", 3, D, 4)
    batch = synthetic_batch()
    batch.words = None
    with pytest.raises(ModelConfigError, match="batch.words"):
        net(batch)


def test_input_stats_appends_the_mean_and_std_of_the_branch_inputs() -> None:
    torch.manual_seed(0)
    plain = EmotionNet("acoustic", 3, D, 4, "attention", hidden_size=5)
    torch.manual_seed(0)
    net = EmotionNet("acoustic", 3, D, 4, "attention", hidden_size=5, input_stats=True)
    branch = net.encoder.branch
    assert branch.out_dim == 2 * 5 + 2 * D  # the BLSTM's attention vector, then mean ⊕ std
    batch = synthetic_batch()
    net.eval(), plain.eval()
    x, mask = batch.acoustic, batch.acoustic_mask
    vector, weights = branch(x, mask)
    pooled, _ = plain.encoder.branch(x, mask)  # same seed: same BLSTM and attention weights
    assert torch.allclose(vector[:, :10], pooled)
    assert torch.allclose(vector[:, 10:], StatsPool(D)(x, mask)[0])
    assert weights is not None and weights.shape == (B, T)
    # the statistics read the inputs, not the BLSTM: padding never enters them
    scrambled, _ = branch(scramble_padding(x, mask), mask)
    assert torch.allclose(scrambled, vector, atol=1e-5)
    assert net(batch).logits.shape == (B, 3)


def test_input_stats_in_a_fused_model_widens_each_branch() -> None:
    net = EmotionNet("mmmla", 3, D, 4, "attention", hidden_size=5, input_stats=True)
    assert net.encoder.acoustic.out_dim == 2 * 5 + 2 * D
    assert net.encoder.lexical.out_dim == 2 * 5 + 2 * 4
    out = net(synthetic_batch())
    assert out.logits.shape == (B, 3) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize(("arch", "pooling"), [("hierarchical", "attention"), ("lexical", "cls")])
def test_input_stats_is_refused_without_a_branch_pooling(arch: str, pooling: str) -> None:
    with pytest.raises(ModelConfigError, match="model.input_stats"):
        EmotionNet(arch, 3, D, 4, pooling, input_stats=True)
    with pytest.raises(ModelConfigError, match="model.stats_norm"):
        EmotionNet(arch, 3, D, 4, pooling, input_stats=False, stats_norm=True)


def test_stats_norm_standardises_statistics_with_batch_then_running_moments() -> None:
    norm = StatsNorm(4)
    x = torch.randn(16, 4) * torch.tensor([0.1, 1.0, 5.0, 100.0]) + 3.0
    y = norm(x)  # training: this batch's moments, whatever the scale of each dimension
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(4), atol=1e-2)
    assert not torch.allclose(norm.norm.running_mean, torch.zeros(4))  # moments were tracked
    one = norm(x[:1])  # a training batch of one item cannot be standardised by itself
    assert torch.isfinite(one).all() and one.abs().sum() > 0
    norm.eval()  # evaluation: the running moments, so an item's output ignores its batch
    assert torch.allclose(norm(x)[:2], norm(x[:2]))


def test_stats_norm_applies_to_the_statistics_only() -> None:
    torch.manual_seed(0)
    probe = EmotionNet("acoustic", 3, D, 4, "stats", sequence_encoder="none", stats_norm=True)
    assert isinstance(probe.encoder.branch.pooling_norm, StatsNorm)  # the probe's mean ⊕ std
    net = EmotionNet(
        "acoustic", 3, D, 4, "attention", hidden_size=5, input_stats=True, stats_norm=True
    )
    branch = net.encoder.branch
    assert isinstance(branch.input_norm, StatsNorm)
    assert not isinstance(branch.pooling_norm, StatsNorm)  # the attention vector is left alone
    batch = synthetic_batch()
    batch.acoustic_mask = torch.ones(B, T, dtype=torch.bool)  # every item has frames
    x, mask = batch.acoustic * 50 + 7, batch.acoustic_mask
    branch.train()
    vector, _ = branch(x, mask)
    stats = vector[:, 10:]  # after the attention vector (2 * hidden): the standardised stats
    assert torch.allclose(stats.mean(0), torch.zeros(2 * D), atol=1e-4)
    assert torch.allclose(stats.std(0, unbiased=False), torch.ones(2 * D), atol=1e-2)
    assert not torch.allclose(stats, StatsPool(D)(x, mask)[0])
    out = probe(batch)
    assert out.logits.shape == (B, 3) and torch.isfinite(out.logits).all()
    with pytest.raises(ModelConfigError, match="model.stats_norm"):
        EmotionNet("acoustic", 3, D, 4, "attention", stats_norm=True)  # no statistics at all
