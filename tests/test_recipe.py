"""Training-recipe switches do what they claim: masking zeroes frames (never padding), modality
dropout silences one branch per item, the EMA checkpoint holds averaged weights that differ
from the live ones, and val/ua_smooth is logged for checkpoint selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from datamodules.batch import Batch
from lightning_modules.augment import FrameMasking, Mix, WeightAverage, draw_mix, drop_modality
from lightning_modules.model import ModelConfigError
from lightning_modules.system import EMA_KEY, EmotionClassifier
from tests.model_fakes import FakeDataModule
from tests.test_system import tiny_model, trainer


def padded(lengths: list[int], t: int = 50, f: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), t, f) + 5.0  # no value is 0 by chance
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    x[~mask] = 7.0  # recognisable padding
    return x, mask


def test_masking_zeroes_real_frames_and_bands_only_in_training() -> None:
    torch.manual_seed(0)
    x, mask = padded([50, 30, 10])
    masking = FrameMasking(time_masks=2, time_width=0.2, feature_masks=2, feature_width=3)
    masking.train()
    y = masking(x, mask)
    zeroed = y == 0
    assert zeroed.any()
    assert torch.equal(y[~zeroed], x[~zeroed])  # everything else untouched
    assert not zeroed[~mask].any() and torch.equal(y[~mask], x[~mask])  # padding untouched
    # a time mask covers whole frames, at most 2 spans x 20% of the item's length
    whole = zeroed.all(-1)
    assert whole.sum(1).le(torch.tensor([20, 12, 4])).all()
    masking.eval()
    assert torch.equal(masking(x, mask), x)


def test_frame_dropout_rate_and_validation() -> None:
    torch.manual_seed(0)
    x, mask = padded([200] * 8, t=200, f=4)
    y = FrameMasking(frame_dropout=0.25).train()(x, mask)
    dropped = (y == 0).all(-1).float().mean().item()
    assert 0.2 < dropped < 0.3
    with pytest.raises(ValueError, match="frame_dropout"):
        FrameMasking(frame_dropout=1.0)
    with pytest.raises(ModelConfigError, match="model"):
        tiny_model(time_width=0.0)


def test_modality_dropout_silences_one_branch_per_item() -> None:
    torch.manual_seed(0)
    n = 400
    batch = Batch(
        labels=torch.zeros(n, dtype=torch.long),
        acoustic=torch.ones(n, 5, 3),
        acoustic_mask=torch.ones(n, 5, dtype=torch.bool),
        words=torch.ones(n, 4, 2),
        word_mask=torch.ones(n, 4, dtype=torch.bool),
        cls=torch.ones(n, 2),
    )
    out = drop_modality(batch, 0.5)
    a_off = (out.acoustic == 0).all(-1).all(-1)
    w_off = (out.words == 0).all(-1).all(-1)
    assert not (a_off & w_off).any()  # never both
    assert torch.equal(w_off, (out.cls == 0).all(-1))
    assert 0.4 < (a_off | w_off).float().mean().item() < 0.6
    assert drop_modality(batch, 0.0) is batch


def test_weight_average_swap_is_reversible() -> None:
    net = torch.nn.Linear(3, 2)
    ema = WeightAverage(net, 0.9)
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update()
    live = net.weight.detach().clone()
    ema.swap()
    assert not torch.equal(net.weight, live) and not torch.equal(net.weight, before)
    ema.swap()
    assert torch.equal(net.weight, live)


def test_ema_checkpoint_holds_the_average_and_resume_restores_live(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = FakeDataModule()
    model = tiny_model(ema_decay=0.9, time_masks=1, frame_dropout=0.1, modality_dropout=0.2)
    t = trainer(tmp_path, max_epochs=3, log_every_n_steps=1)
    t.fit(model, datamodule=dm)
    assert "val/ua_smooth" in t.callback_metrics
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    live = ckpt[EMA_KEY]["live"]
    key = next(k for k in live if k.startswith("net.") and k.endswith("weight"))
    assert not torch.equal(ckpt["state_dict"][key], live[key])  # averaged != last step's
    assert torch.equal(live[key], model.state_dict()[key])  # the live weights, unchanged
    served = EmotionClassifier.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(served.state_dict()[key], ckpt["state_dict"][key])
    # resuming trains on from the live weights and keeps the average
    resumed = tiny_model(ema_decay=0.9)
    t2 = trainer(tmp_path / "r", max_epochs=4)
    t2.fit(resumed, datamodule=FakeDataModule(), ckpt_path=path)
    assert resumed.ema is not None and resumed.ema.steps > ckpt[EMA_KEY]["steps"]


def test_smoothed_val_ua_averages_epochs(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny_model()
    seen: list[tuple[float, float]] = []

    class Record(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            m = trainer.callback_metrics
            if "val/ua_smooth" in m:
                seen.append((float(m["val/ua"]), float(m["val/ua_smooth"])))

    trainer(tmp_path, max_epochs=4, callbacks=[Record()]).fit(model, datamodule=FakeDataModule())
    assert len(seen) == 4 and seen[0][1] == pytest.approx(seen[0][0])
    for (ua, smooth), (_, prev) in zip(seen[1:], seen[:-1], strict=True):
        assert smooth == pytest.approx(0.6 * prev + 0.4 * ua, abs=1e-6)


def fused_batch(n: int = 6) -> Batch:
    torch.manual_seed(1)
    return Batch(
        labels=torch.arange(n) % 3,
        acoustic=torch.randn(n, 7, 6),
        acoustic_mask=torch.ones(n, 7, dtype=torch.bool),
        words=torch.randn(n, 4, 5),
        word_mask=torch.ones(n, 4, dtype=torch.bool),
    )


def test_branch_loss_adds_each_branchs_own_cross_entropy_in_training_only() -> None:
    torch.manual_seed(0)
    plain = tiny_model()
    torch.manual_seed(0)
    model = tiny_model(branch_loss=0.5)
    # the branch heads are built last: the shared weights start where the plain model's do
    shared = plain.state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in shared.items())
    assert set(model.state_dict()) - set(shared) == {
        f"net.branch_heads.{m}.{p}" for m in ("acoustic", "lexical") for p in ("weight", "bias")
    }
    model.eval()  # no dropout: the step's loss is checkable by hand
    batch = fused_batch()
    out = model(batch)
    assert set(out.branch_logits) == {"acoustic", "lexical"}
    main = torch.nn.functional.cross_entropy(out.logits, batch.labels)
    aux = [torch.nn.functional.cross_entropy(v, batch.labels) for v in out.branch_logits.values()]
    assert torch.allclose(out.logits, plain.eval()(batch).logits)  # the fused path is unchanged
    model.frame_masking.train(False)
    trained = model._shared_step(batch, "train")
    assert torch.allclose(trained, main + 0.5 * (aux[0] + aux[1]) / 2, atol=1e-6)
    assert torch.allclose(model._shared_step(batch, "val"), main, atol=1e-6)
    model.label_smoothing = 0.2  # smoothing reaches the branch losses too, in training only
    smooth = [
        torch.nn.functional.cross_entropy(v, batch.labels, label_smoothing=0.2)
        for v in [out.logits, *out.branch_logits.values()]
    ]
    smoothed = model._shared_step(batch, "train")
    assert torch.allclose(smoothed, smooth[0] + 0.5 * (smooth[1] + smooth[2]) / 2, atol=1e-6)
    assert torch.allclose(model._shared_step(batch, "val"), main, atol=1e-6)
    model.label_smoothing = 0.0
    trained.backward()
    head = model.net.branch_heads
    assert head is not None and head["acoustic"].weight.grad is not None
    assert head["acoustic"].weight.grad.abs().sum() > 0


def test_branch_loss_is_refused_where_there_are_no_separate_branches() -> None:
    for architecture in ("acoustic", "lexical", "hierarchical"):
        with pytest.raises(ModelConfigError, match="model.branch_loss"):
            tiny_model(architecture=architecture, branch_loss=0.3)
    with pytest.raises(ModelConfigError, match="model.branch_loss"):
        tiny_model(branch_loss=-1.0)


def test_branch_heads_travel_in_the_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny_model(branch_loss=0.3, architecture="mmb")
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, datamodule=FakeDataModule())
    path = tmp_path / "b.ckpt"
    t.save_checkpoint(path)
    served = EmotionClassifier.load_from_checkpoint(path, weights_only=True).eval()
    batch = fused_batch()
    assert served.branch_loss == 0.3
    assert torch.allclose(served(batch).logits, model.eval()(batch).logits)


def test_label_smoothing_softens_the_training_loss_only() -> None:
    torch.manual_seed(0)
    model = tiny_model(architecture="acoustic", label_smoothing=0.2)
    model.eval()
    model.frame_masking.train(False)
    batch = fused_batch()
    logits = model(batch).logits
    plain = torch.nn.functional.cross_entropy(logits, batch.labels)
    smoothed = torch.nn.functional.cross_entropy(logits, batch.labels, label_smoothing=0.2)
    assert not torch.allclose(plain, smoothed)
    assert torch.allclose(model._shared_step(batch, "train"), smoothed, atol=1e-6)
    assert torch.allclose(model._shared_step(batch, "val"), plain, atol=1e-6)
    with pytest.raises(ModelConfigError, match="model.label_smoothing"):
        tiny_model(label_smoothing=1.0)


def test_mix_draws_a_permutation_and_keeps_each_items_label_dominant() -> None:
    torch.manual_seed(0)
    for alpha in (0.2, 1.0, 4.0):
        mix = draw_mix(9, alpha)
        assert sorted(mix.partner.tolist()) == list(range(9))
        assert 0.5 <= mix.lam <= 1.0
    with pytest.raises(ValueError, match="alpha"):
        draw_mix(4, 0.0)
    mix = Mix(torch.tensor([1, 2, 0]), 0.75)
    x = torch.tensor([[0.0], [4.0], [8.0]])
    assert torch.equal(mix.vectors(x), torch.tensor([[1.0], [5.0], [6.0]]))


def test_mixup_mixes_pooled_vectors_and_targets_in_training_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = tiny_model(architecture="acoustic", mixup=0.4, branch_loss=0.0).eval()
    model.frame_masking.train(False)
    batch = fused_batch()
    mix = Mix(torch.tensor([5, 0, 1, 2, 3, 4]), 0.7)
    monkeypatch.setattr("lightning_modules.system.draw_mix", lambda n, alpha, device: mix)
    vector, _, _ = model.net.encoder(batch)
    head = model.net.head
    plain_logits = head(vector)
    mixed_logits = head(0.7 * vector + 0.3 * vector[mix.partner])
    assert torch.allclose(model(batch, mix).logits, mixed_logits, atol=1e-6)
    ce = torch.nn.functional.cross_entropy
    expected = 0.7 * ce(mixed_logits, batch.labels) + 0.3 * ce(
        mixed_logits, batch.labels[mix.partner]
    )
    assert not torch.allclose(expected, ce(plain_logits, batch.labels))
    assert torch.allclose(model._shared_step(batch, "train"), expected, atol=1e-6)
    # val and test see the clips as they are, with their own labels
    assert torch.allclose(model._shared_step(batch, "val"), ce(plain_logits, batch.labels))
    # a two-branch model with branch losses mixes each branch head's input the same way
    torch.manual_seed(0)
    fused = tiny_model(mixup=0.4, branch_loss=0.5).eval()
    fused.frame_masking.train(False)
    v_a, v_l, _ = fused.net.encoder.pooled(batch)
    out = fused(batch, mix)
    branch = fused.net.branch_heads
    assert branch is not None
    assert torch.allclose(
        out.branch_logits["acoustic"], branch["acoustic"](mix.vectors(v_a)), atol=1e-6
    )
    with pytest.raises(ModelConfigError, match="model.mixup"):
        tiny_model(mixup=-0.1)


def test_stats_norm_running_statistics_travel_in_the_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny_model(architecture="acoustic", input_stats=True, stats_norm=True)
    norm = model.net.encoder.branch.input_norm.norm
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, datamodule=FakeDataModule())
    assert int(norm.num_batches_tracked) > 0  # training updated the running statistics
    path = tmp_path / "s.ckpt"
    t.save_checkpoint(path)
    served = EmotionClassifier.load_from_checkpoint(path, weights_only=True).eval()
    served_norm = served.net.encoder.branch.input_norm.norm
    assert torch.equal(served_norm.running_mean, norm.running_mean)
    batch = fused_batch()
    assert torch.allclose(served(batch).logits, model.eval()(batch).logits)
