"""Branch pretraining (`model.init_lexical` / `model.init_acoustic`, `model.freeze_init`): the
branch starts from the checkpoint's, a frozen one stays exactly there (and in eval mode), a
branch that does not match is refused with the key named, and a checkpoint that learned from
this run's test speakers is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from experiments import prepare
from lightning_modules.branch_init import check_unseen, init_branch, seen_speakers
from lightning_modules.model import ModelConfigError
from lightning_modules.system import EmotionClassifier
from tests.model_fakes import FakeDataModule
from tests.test_system import tiny_model, trainer
from tests.test_train_cli import REPO, run


def branch_state(model: EmotionClassifier, modality: str) -> dict[str, torch.Tensor]:
    prefix = f"net.encoder.{modality}."
    return {
        k[len(prefix) :]: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(prefix)
    }


@pytest.fixture(scope="module")
def lexical_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lexical attention model (hidden 8) trained 2 epochs on the fake data."""
    root = tmp_path_factory.mktemp("lexical")
    pl.seed_everything(1)
    model = tiny_model(architecture="lexical")
    t = trainer(root, max_epochs=2)
    t.fit(model, datamodule=FakeDataModule(modalities=["lexical"]))
    t.save_checkpoint(root / "lexical.ckpt")
    return root / "lexical.ckpt"


def source_branch(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def test_frozen_branch_starts_from_the_checkpoint_and_stays_there(
    lexical_ckpt: Path, tmp_path: Path
) -> None:
    pl.seed_everything(0)
    model = tiny_model(init_lexical=str(lexical_ckpt), freeze_init=True, dropout=0.5)
    before = {
        "acoustic": branch_state(model, "acoustic"),
        "lexical": branch_state(model, "lexical"),
    }
    expected = source_branch(lexical_ckpt, "net.encoder.")
    assert expected and any(not torch.equal(before["lexical"][k], v) for k, v in expected.items())
    modes: list[tuple[bool, bool]] = []

    class Watch(pl.Callback):
        def on_train_batch_start(self, t, module, batch, batch_idx) -> None:
            modes.append((module.training, module.net.encoder.lexical.training))

    t = trainer(tmp_path, max_epochs=3, callbacks=[Watch()])
    t.fit(model, datamodule=FakeDataModule())
    after = branch_state(model, "lexical")
    assert after.keys() == expected.keys()
    assert all(torch.equal(after[k], v) for k, v in expected.items())  # frozen: not one step
    acoustic = branch_state(model, "acoustic")
    assert any(not torch.equal(acoustic[k], v) for k, v in before["acoustic"].items())
    # every training step: the model in train mode, the frozen branch in eval (no dropout)
    assert modes and all(m == (True, False) for m in modes)
    optimised = {id(p) for group in t.optimizers[0].param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.net.encoder.lexical.parameters())
    assert any(id(p) in optimised for p in model.net.encoder.acoustic.parameters())
    # the fused model's own checkpoint rebuilds without the init file (weights in the state)
    t.save_checkpoint(tmp_path / "fused.ckpt")
    served = EmotionClassifier.load_from_checkpoint(tmp_path / "fused.ckpt", weights_only=True)
    kept = served.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in model.state_dict().items())


def test_unfrozen_branch_starts_there_and_trains_on(lexical_ckpt: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny_model(init_lexical=str(lexical_ckpt), lr=1e-2)
    expected = source_branch(lexical_ckpt, "net.encoder.")
    at_start: dict[str, torch.Tensor] = {}

    class Watch(pl.Callback):
        def on_train_start(self, t, module) -> None:
            at_start.update(branch_state(module, "lexical"))

    trainer(tmp_path, max_epochs=2, callbacks=[Watch()]).fit(model, datamodule=FakeDataModule())
    assert all(torch.equal(at_start[k], v) for k, v in expected.items())
    after = branch_state(model, "lexical")
    assert any(not torch.equal(after[k], v) for k, v in expected.items())


def test_branch_of_a_fused_checkpoint_and_acoustic_branch(tmp_path: Path) -> None:
    pl.seed_everything(2)
    source = tiny_model()
    t = trainer(tmp_path, max_epochs=1)
    t.fit(source, datamodule=FakeDataModule())
    t.save_checkpoint(tmp_path / "mmmla.ckpt")
    target = tiny_model(architecture="mmb")
    for modality in ("acoustic", "lexical"):
        init_branch(target.net.encoder, modality, tmp_path / "mmmla.ckpt")
        want = source_branch(tmp_path / "mmmla.ckpt", f"net.encoder.{modality}.")
        got = branch_state(target, modality)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_mismatched_branches_are_refused_with_the_reason(
    lexical_ckpt: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelConfigError, match=r"shape .*hidden_size"):
        init_branch(tiny_model(hidden_size=16).net.encoder, "lexical", lexical_ckpt)
    with pytest.raises(ModelConfigError, match=r"does not match.*pooling"):
        init_branch(tiny_model(pooling="mean").net.encoder, "lexical", lexical_ckpt)
    with pytest.raises(ModelConfigError, match="no separately pooled acoustic branch"):
        init_branch(tiny_model().net.encoder, "acoustic", lexical_ckpt)  # a text-only model
    with pytest.raises(ModelConfigError, match="this model has no separately pooled"):
        init_branch(tiny_model(architecture="hierarchical").net.encoder, "lexical", lexical_ckpt)
    with pytest.raises(ModelConfigError, match=r"read 5-d lexical features, this run reads 7"):
        init_branch(tiny_model().net.encoder, "lexical", lexical_ckpt, {"lexical_dim": 7})
    config = {"feature_config": {"encoder": "bert-base-uncased"}}
    ckpt = torch.load(lexical_ckpt, weights_only=True)
    ckpt["ser"]["features"]["config"] = {"encoder": "minilm"}
    torch.save(ckpt, tmp_path / "minilm.ckpt")
    with pytest.raises(ModelConfigError, match=r"encoder 'minilm', this run uses 'bert-base"):
        init_branch(tiny_model().net.encoder, "lexical", tmp_path / "minilm.ckpt", config)
    with pytest.raises(ModelConfigError, match=r"init_lexical: checkpoint not found: .*nowhere"):
        init_branch(tiny_model().net.encoder, "lexical", tmp_path / "nowhere.ckpt")
    with pytest.raises(ModelConfigError, match="freeze_init"):
        tiny_model(freeze_init=True)


def test_a_checkpoint_that_saw_the_test_speakers_is_refused(
    cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint's split is recomputed from its record (a prepared text-only corpus of 6
    speakers, 3 speaker folds): its training and val speakers must not be tested here."""
    rows = ["utterance_id,label,speaker,transcript"]
    rows += [
        f"u{s}{i},{('ang', 'hap')[i % 2]},spk{s},words number {i} of speaker {s}"
        for s in range(6)
        for i in range(4)
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert prepare.main(["manifest", "--root", str(tmp_path / "m.csv"), "--name", "six"]) == 0
    record = {"data": {"corpus": "six", "protocol": "speaker_kfold", "fold": 0, "folds": 3}}
    seen = seen_speakers(record)
    assert len(seen) == 4  # 6 speakers, 2 tested in fold 0
    tested = {f"spk{s}" for s in range(6)} - seen
    check_unseen(record, "acoustic", tested, Path("a.ckpt"))  # the same fold: fine
    other = sorted(seen)[:1]
    with pytest.raises(ModelConfigError, match=rf"1 of this run's test speakers \({other[0]};"):
        check_unseen(record, "acoustic", other, Path("a.ckpt"))
    with caplog.at_level(logging.WARNING):
        check_unseen({"data": {"corpus": "absent"}}, "lexical", other, Path("b.ckpt"))
    assert "whether checkpoint b.ckpt trained on this run's test speakers cannot" in caplog.text
    assert "its corpus 'absent'" in caplog.text


def test_cli_takes_the_options_and_records_them(lexical_ckpt: Path, tmp_path: Path) -> None:
    args = ["fit", "--config", str(REPO / "configs" / "mmmla.yaml"), "--model.hidden_size", "8"]
    args += ["--model.init_lexical", str(lexical_ckpt), "--model.freeze_init", "true"]
    cli = run([*args, "--trainer.max_epochs", "1"], tmp_path)
    expected = source_branch(lexical_ckpt, "net.encoder.")
    got = branch_state(cli.model, "lexical")
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["init_lexical"] == str(lexical_ckpt) and config["freeze_init"] is True


def test_posterior_branch_hands_the_fusion_the_pretrained_models_prediction(
    lexical_ckpt: Path, tmp_path: Path
) -> None:
    pl.seed_everything(0)
    model = tiny_model(init_lexical=str(lexical_ckpt), freeze_init=True, posterior_branch="lexical")
    dm = FakeDataModule()
    trainer(tmp_path, max_epochs=2).fit(model, datamodule=dm)
    source = EmotionClassifier.load_from_checkpoint(lexical_ckpt, weights_only=True).eval()
    model.eval()
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        fused_view, _, _ = model.net.encoder.lexical(batch)
        expected = torch.log_softmax(source(batch).logits, dim=-1)
    assert fused_view.shape == (len(batch), 3)
    assert torch.allclose(fused_view, expected, atol=1e-6)  # the text model's own prediction
    assert model.net.encoder.fusion.lexical.in_features == 3  # the GMU reads C values
    with pytest.raises(ModelConfigError, match="posterior_branch applies to the two-branch"):
        tiny_model(architecture="lexical", posterior_branch="lexical")
    with pytest.raises(ModelConfigError, match="posterior_branch must be acoustic or lexical"):
        tiny_model(posterior_branch="text")
    target = tiny_model(posterior_branch="lexical").net.encoder
    with pytest.raises(ModelConfigError, match=r"classifies \['ang', 'hap', 'sad'\], this run"):
        init_branch(target, "lexical", lexical_ckpt, class_names=["hap", "ang", "sad"])


def test_real_datamodule_refuses_a_branch_from_another_fold(
    cache_dir: Path, tmp_path: Path
) -> None:
    """Through the CLI and the real EmotionDataModule (a text-only corpus, MiniLM words, 3
    speaker folds): fold 0's lexical model starts (frozen) another fold-0 model; fold 1 tests
    speakers that fold 0's model trained on, so there it is refused, naming them."""
    from datamodules.datamodule import EmotionDataModule

    words = {"ang": "furious shouting rage", "hap": "lovely joyful smile"}
    rows = ["utterance_id,label,speaker,transcript"]
    rows += [
        f"u{s}{i},{label},spk{s},{words[label]} number {i} from {s}"
        for s in range(6)
        for i, label in enumerate(["ang", "hap"] * 2)
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert prepare.main(["manifest", "--root", str(tmp_path / "m.csv"), "--name", "six"]) == 0
    config = ["--config", str(REPO / "configs" / "lexical_attention.yaml")]
    data = ["--data.corpus", "six", "--data.protocol", "speaker_kfold", "--data.folds", "3"]
    common = [*config, *data, "--model.hidden_size", "8", "--trainer.max_epochs", "1"]
    run(["fit", *common, "--data.fold", "0"], tmp_path / "f0", EmotionDataModule)
    ckpt = tmp_path / "f0" / "checkpoints" / "best.ckpt"
    init = ["--model.init_lexical", str(ckpt), "--model.freeze_init", "true"]
    cli = run(["fit", *common, *init, "--data.fold", "0"], tmp_path / "same", EmotionDataModule)
    got, want = cli.model.state_dict(), torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(got[k], v) for k, v in want.items() if k.startswith("net.encoder."))
    with pytest.raises(Exception) as caught:
        run(["fit", *common, *init, "--data.fold", "1"], tmp_path / "other", EmotionDataModule)
    from experiments.train import user_error

    error = user_error(caught.value)
    assert isinstance(error, ModelConfigError)
    assert "trained on 2 of this run's test speakers" in str(error) and "fold 0" in str(error)
