"""The sweep runner: grid/random/fold expansion, run folders, resume, failed runs, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from datamodules.utterances import Utterance, write_table
from experiments import benchmark as bm
from experiments import report as report_mod
from experiments import sweep as sw
from experiments.sweeps import runner as sweep_runner
from tests.builtin_cache import prepare_builtin

REPO = Path(__file__).resolve().parents[1]

# A stand-in for `experiments.train fit`: parses the same options and writes a metrics.json
# whose figures depend on them; a config whose name contains "broken" fails like a crash.
STAND_IN = r"""
import json, sys, zlib
from pathlib import Path
args = sys.argv[1:]
assert args[0] == "fit", args
opts = {args[i][2:]: args[i + 1] for i in range(1, len(args), 2)}
if "broken" in opts.get("config", ""):
    print("Traceback (most recent call last):\nRuntimeError: the model exploded")
    sys.exit(3)
out = Path(opts["trainer.default_root_dir"])
variant = Path(opts.get("config", "x")).stem
arch, _, pooling = variant.partition("_")
h = zlib.crc32(" ".join(f"{k}={v}" for k, v in sorted(opts.items())).encode())
ua = 0.3 + (h % 1000) / 2000
classes = ["angry", "happy", "neutral", "sad"]
per_class = {c: min(1.0, ua + 0.05 * i - 0.07) for i, c in enumerate(classes)}
eye = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
metrics = {
    "wa": ua + 0.02, "ua": ua, "macro_f1": ua - 0.03, "loss": 1.4 - ua, "n": 40,
    "per_class": per_class, "stage": "test", "checkpoint": "",
    "confusion": {"labels": classes, "counts": eye, "normalized": eye},
    "config": {"architecture": arch, "modality": arch, "pooling": pooling or None,
               "fusion": None, "corpus": opts.get("data.corpus"),
               "protocol": opts.get("data.protocol"), "fold": int(opts.get("data.fold", 0)),
               "seed": int(opts.get("seed_everything", 0))},
}
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps(metrics))
print("stand-in trained", variant)
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> list[str]:
    script = tmp_path / "stand_in_train.py"
    script.write_text(STAND_IN)
    return [sys.executable, str(script), "fit"]


def _spec(tmp_path: Path, body: dict) -> sw.SweepSpec:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "metric": {"name": "val/ua"}, **body}))
    return sw.load_sweep(path)


def _prepare(name: str) -> None:
    """A prepared table with 3 sessions of 2 speakers each (6 speakers)."""
    utts = [
        Utterance(f"u{s}{k}{i}", f"spk{s}{k}", f"ses{s}", "happy" if i % 2 else "sad")
        for s in range(3)
        for k in range(2)
        for i in range(4)
    ]
    write_table(name, utts, {"reader": "test"})


def test_grid_expansion_names_every_combination_stably(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {
            "method": "grid",
            "parameters": {
                "config": {"values": ["configs/acoustic_mean.yaml", "lexical_cls"]},
                "model.hidden_size": {"values": [8, 16]},
                "data.protocol": {"value": "sd8020"},
                "seed_everything": {"values": [0, 1]},
            },
        },
    )
    runs = sw.expand(spec)
    names = [r.name for r in runs]
    assert len(runs) == 8 and len(set(names)) == 8
    assert "acoustic_mean__hidden_size-16__seed-1" in names
    assert all(r.params["data.protocol"] == "sd8020" for r in runs)
    assert [r.name for r in sw.expand(spec)] == names  # stable
    args = sw.train_args(runs[0].params, tmp_path / "r")
    assert args[:2] == ["--config", "configs/acoustic_mean.yaml"]
    assert args[-2:] == ["--trainer.default_root_dir", str(tmp_path / "r")]
    lexical = next(r for r in runs if r.params["config"] == "lexical_cls")
    assert sw.train_args(lexical.params, tmp_path)[1] == "configs/lexical_cls.yaml"


def test_fold_all_expands_per_protocol(tmp_path: Path, cache_dir: Path) -> None:
    _prepare("tiny")
    spec = sw.load_sweep(REPO / "configs" / "sweeps" / "protocols.yaml")
    spec, runs = sw.build_runs(spec, corpus="tiny")
    by_protocol = {
        p: [r for r in runs if r.params["data.protocol"] == p] for p in ("sd8020", "loso", "lospko")
    }
    # 3 models x (1 sd8020 fold + 3 sessions + 6 speakers)
    assert {p: len(v) for p, v in by_protocol.items()} == {"sd8020": 3, "loso": 9, "lospko": 18}
    assert sorted({r.params["data.fold"] for r in by_protocol["lospko"]}) == list(range(6))
    assert all(r.params["data.corpus"] == "tiny" for r in runs)
    assert len({r.name for r in runs}) == len(runs)
    assert "mmmla__loso__fold-2__seed-0" in {r.name for r in runs}


def test_fold_all_without_corpus_is_a_clear_error(tmp_path: Path) -> None:
    spec = sw.load_sweep(REPO / "configs" / "sweeps" / "pooling.yaml")
    with pytest.raises(sw.SweepError, match="corpus"):
        sw.build_runs(spec)


def test_random_search_is_seeded_and_capped(tmp_path: Path) -> None:
    body = {
        "method": "random",
        "run_cap": 5,
        "seed": 3,
        "parameters": {
            "config": {"values": ["a", "b", "c"]},
            "model.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "model.hidden_size": {"distribution": "int_uniform", "min": 8, "max": 64},
        },
    }
    runs = sw.expand(_spec(tmp_path, body))
    assert len(runs) == 5
    assert [r.params for r in runs] == [r.params for r in sw.expand(_spec(tmp_path, body))]
    assert all(1e-4 <= r.params["model.lr"] <= 1e-2 for r in runs)
    assert all(8 <= r.params["model.hidden_size"] <= 64 for r in runs)


def test_bad_sweep_files_name_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(sw.SweepError, match="parameters"):
        _spec(tmp_path, {"method": "grid"})
    with pytest.raises(sw.SweepError, match="model.lr"):
        _spec(tmp_path, {"method": "grid", "parameters": {"model.lr": {"min": 1}}})
    with pytest.raises(sw.SweepError, match="run_cap"):
        _spec(tmp_path, {"method": "random", "parameters": {"a": {"values": [1]}}})
    with pytest.raises(sw.SweepError, match="does not exist"):
        sw.load_sweep(tmp_path / "nope.yaml")


def test_ready_sweeps_cover_the_variants() -> None:
    configs = {}
    for name in ("pooling", "fusion", "protocols", "smoke", "benchmark", "tune"):
        spec = sw.load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
        assert spec.metric["name"] == "val/ua"
        assert "${args}" in spec.raw["command"]
        config = spec.parameters["config"]
        configs[name] = {Path(c).stem for c in config.get("values", [config.get("value")])}
        assert all((REPO / "configs" / f"{c}.yaml").is_file() for c in configs[name])
    assert configs["pooling"] == {
        "acoustic_last",
        "acoustic_mean",
        "acoustic_attention",
        "acoustic_stats",
        "acoustic_attentive_stats",
        "acoustic_probe",
        "lexical_last",
        "lexical_cls",
        "lexical_mean",
        "lexical_attention",
    }
    assert configs["fusion"] == {"mmb", "mmmla", "hierarchical"}


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path, stand_in: list[str]) -> None:
    spec = _spec(
        tmp_path,
        {
            "method": "grid",
            "parameters": {
                "config": {
                    "values": [
                        "configs/acoustic_broken.yaml",
                        "configs/acoustic_mean.yaml",
                        "configs/lexical_cls.yaml",
                    ]
                },
                "data.corpus": {"value": "x"},
            },
        },
    )
    out = tmp_path / "out"
    lines: list[str] = []
    results = sw.SweepRunner(
        sw.expand(spec), out, train_cmd=stand_in, parallel=2, print_fn=lines.append
    ).run()
    assert [r.status for r in results] == ["failed", "ok", "ok"]
    failed = (out / "acoustic_broken" / "FAILED").read_text()
    assert "exit code 3" in failed and "the model exploded" in failed
    assert (out / "lexical_cls" / "metrics.json").is_file()
    assert "stand-in trained" in (out / "acoustic_mean" / "train.log").read_text()
    assert any(line.startswith("[3/3]") and "ETA" in line for line in lines)
    summary = sw.summarize(results)
    assert "2 ran, 0 skipped, 1 failed" in summary and "acoustic_broken" in summary
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == [r.name for r in results]

    # Resume: finished runs are skipped, the failed one is tried again.
    mtime = (out / "acoustic_mean" / "metrics.json").stat().st_mtime_ns
    again = sw.SweepRunner(sw.expand(spec), out, train_cmd=stand_in, print_fn=lines.append).run()
    assert [r.status for r in again] == ["failed", "skipped", "skipped"]
    assert (out / "acoustic_mean" / "metrics.json").stat().st_mtime_ns == mtime


def test_threads_are_shared_between_parallel_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sweep_runner.os, "cpu_count", lambda: 8)
    env = sw.SweepRunner([], tmp_path, parallel=4)._env()
    assert env["OMP_NUM_THREADS"] == "2"
    assert str(sw.REPO_ROOT) in env["PYTHONPATH"]


def test_cli_overrides_and_dry_run(tmp_path: Path, cache_dir: Path, capsys) -> None:
    _prepare("tiny")
    rc = sw.main(
        [
            str(REPO / "configs/sweeps/fusion.yaml"),
            "--corpus",
            "tiny",
            "--dry-run",
            "--seeds",
            "0,1",
            "--max-epochs",
            "2",
            "--set",
            "data.protocol=sd8020",
            "--set",
            "data.fold=0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6  # 3 models x 2 seeds, one fold
    assert lines[0].startswith("mmb__seed-0 ")
    assert "--trainer.max_epochs 2" in lines[0] and "--data.protocol sd8020" in lines[0]
    assert sw.main([str(tmp_path / "missing.yaml")]) == 2


def test_wandb_yaml_resolves_folds_and_falls_back_offline(
    tmp_path: Path, cache_dir: Path, monkeypatch
) -> None:
    _prepare("tiny")
    spec, runs = sw.build_runs(sw.load_sweep(REPO / "configs/sweeps/pooling.yaml"), corpus="tiny")
    resolved = sw.wandb_yaml(spec, runs)
    assert resolved["parameters"]["data.fold"] == {"values": [0, 1, 2]}
    assert resolved["parameters"]["data.corpus"] == {"value": "tiny"}
    assert resolved["command"][-1] == "${args}"
    # agent runs land in <out>/<WANDB_RUN_ID>/ (the trainer appends the id)
    out = tmp_path / "agent"
    assert sw.wandb_yaml(spec, runs, out)["parameters"]["trainer.default_root_dir"] == {
        "value": str(out)
    }
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert sw.wandb_server() is None


def test_stand_in_sweep_then_report_counts_rows_and_runs(
    tmp_path: Path, stand_in: list[str], monkeypatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = _spec(
        tmp_path,
        {
            "method": "grid",
            "parameters": {
                "config": {"values": ["configs/acoustic_mean.yaml", "configs/lexical_cls.yaml"]},
                "data.protocol": {"value": "sd8020"},
                "seed_everything": {"values": [0, 1, 2]},
            },
        },
    )
    out = tmp_path / "out"
    results = sw.SweepRunner(sw.expand(spec), out, train_cmd=stand_in, parallel=2).run()
    assert [r.status for r in results] == ["ok"] * 6
    rep = report_mod.write_report(out, plots=False)
    assert [(r.label, len(r.runs)) for r in rep.rows] == [
        ("acoustic · mean", 3),
        ("lexical · cls", 3),
    ]
    assert "| acoustic · mean | sd8020 | 3 |" in rep.markdown.read_text()


@pytest.fixture(scope="module")
def tiny_builtin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared built-in corpus of 48 clips (3 per speaker and class) with features."""
    return prepare_builtin(tmp_path_factory.mktemp("cache"), "--per-class", "3", workers=1)


def test_two_real_runs_end_to_end_then_resume(
    tiny_builtin: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SER_CACHE", str(tiny_builtin))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = sw.load_sweep(REPO / "configs/sweeps/smoke.yaml")
    spec, runs = sw.build_runs(
        spec, "builtin", max_epochs=1, sets={"model.hidden_size": 8, "wandb": False}
    )
    out = tmp_path / "smoke"
    results = sw.SweepRunner(runs, out, parallel=2).run()
    assert [r.status for r in results] == ["ok", "ok"], [r.message for r in results]
    for run, arch in zip(runs, ("acoustic", "mmmla"), strict=True):
        metrics = json.loads((out / run.name / "metrics.json").read_text())
        assert metrics["config"]["architecture"] == arch
        assert metrics["config"]["pooling"] == "attention"
        assert metrics["n"] > 0 and 0 <= metrics["ua"] <= 1
        assert (out / run.name / "checkpoints" / "best.ckpt").is_file()
    rep = report_mod.write_report(out, plots=True, wandb_log=False)
    assert [(r.label, len(r.runs)) for r in rep.rows] == [
        ("acoustic · attention", 1),
        ("mmmla · attention · gmu", 1),
    ]
    md = rep.markdown.read_text()
    for name in ("attention.png", "gate.png", "confusion_acoustic.png", "confusion_multimodal.png"):
        assert f"](plots/{name})" in md, md
        assert (out / "plots" / name).stat().st_size > 5000
    again = sw.SweepRunner(runs, out, parallel=2).run()
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_main_job_names_a_corpus_it_cannot_use(tmp_path: Path, cache_dir: Path, capsys) -> None:
    from experiments import main as main_job

    rc = main_job.main(["--corpus", "nosuchcorpus", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "corpus 'nosuchcorpus' is neither a reader" in capsys.readouterr().err
    rc = main_job.main(["--corpus", "iemocap", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "--corpus iemocap needs --root" in capsys.readouterr().err


def test_main_job_front_end_choice() -> None:
    from experiments.main import AUTO_FRONT_END, acoustic_front_end

    assert acoustic_front_end("auto", "builtin") == ("compare_lld", "last")
    assert acoustic_front_end("auto", "ravdess") == AUTO_FRONT_END == ("whisper_base", "3")
    assert acoustic_front_end("auto", "ravdess", "all") == ("whisper_base", "all")
    assert acoustic_front_end("whisper_base", "iemocap") == ("whisper_base", "last")
    assert acoustic_front_end("whisper_tiny", "iemocap", "2") == ("whisper_tiny", "2")


def test_a_flow_list_is_one_value_and_a_comma_list_is_swept() -> None:
    sets = sw.parse_set(
        ["data.test_speakers=[us_male, uk_female]", "model.hidden_size=8,16", "seed_everything=0"]
    )
    spec, runs = sw.build_runs(sw.load_sweep(REPO / "configs/sweeps/smoke.yaml"), sets=sets)
    assert len(runs) == 2 * 2  # two configs x two widths; the speaker list is not swept
    args = sw.train_args(runs[0].params, Path("run"))
    value = args[args.index("--data.test_speakers") + 1]
    assert yaml.safe_load(value) == ["us_male", "uk_female"]
    assert all("test_speakers" not in r.name for r in runs)
    with pytest.raises(sw.SweepError, match="data.test_speakers=\\[a"):
        sw.parse_set(["data.test_speakers=[a, b"])


def test_held_out_speakers_of_your_own_train_and_benchmark_on_that_split(
    tiny_builtin: Path, tmp_path: Path, monkeypatch
) -> None:
    """`--set data.protocol=speakers --set data.test_speakers=[...]`: the runs test on exactly
    those speakers and the benchmark scores the baselines on the very same split."""
    from datamodules.corpus import as_corpus
    from experiments.runs import load_runs

    monkeypatch.setenv("SER_CACHE", str(tiny_builtin))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    speakers = sorted(as_corpus("builtin").table["speaker"].unique())
    held = speakers[:2]
    out = tmp_path / "heldout"
    rc = sw.main(
        [
            str(REPO / "configs/sweeps/smoke.yaml"),
            "--corpus=builtin",
            "--max-epochs=1",
            "--set=config=acoustic_attention",
            "--set=model.hidden_size=8",
            "--set=wandb=false",
            "--set=data.protocol=speakers",
            f"--set=data.test_speakers=[{', '.join(held)}]",
            f"--out={out}",
        ]
    )
    assert rc == 0
    (run,), _ = load_runs(out)
    key, _ = bm.split_of(run)
    split = bm.load_split(key)
    table = as_corpus("builtin").table.set_index("utterance_id")
    assert set(table.loc[split["test"], "speaker"]) == set(held)
    assert not set(table.loc[split["train"] + split["val"], "speaker"]) & set(held)
    table_rows, _ = bm.run_benchmark(out)
    rows = {e["name"]: e for e in table_rows}
    assert rows["svm functionals"]["folds"] == 1 and rows["acoustic · attention"]["folds"] == 1
    # a second held-out set beside it is a second fold of the table, not the same one
    other = speakers[2:4]
    argv = [str(REPO / "configs/sweeps/smoke.yaml"), "--corpus=builtin", "--max-epochs=1"]
    argv += ["--set=config=acoustic_attention", "--set=model.hidden_size=8", "--set=wandb=false"]
    argv += ["--set=data.protocol=speakers", f"--set=data.test_speakers=[{', '.join(other)}]"]
    assert sw.main([*argv, f"--out={tmp_path / 'heldout2'}"]) == 0
    table_rows, _ = bm.run_benchmark(tmp_path)
    rows = {e["name"]: e for e in table_rows}
    for name in ("svm functionals", "acoustic · attention"):
        assert rows[name]["folds"] == 2
        assert set(rows[name]["per_fold_ua"]) == {"+".join(held), "+".join(other)}


def test_refit_trains_again_on_train_and_val_for_the_best_epoch_count(
    tiny_builtin: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from experiments import refit

    monkeypatch.setenv("SER_CACHE", str(tiny_builtin))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = sw.load_sweep(REPO / "configs/sweeps/smoke.yaml")
    sets = {"model.hidden_size": 8, "wandb": False, "config": "acoustic_attention"}
    spec, runs = sw.build_runs(spec, "builtin", max_epochs=3, sets=sets)
    out = tmp_path / "sweep"
    assert [r.status for r in sw.SweepRunner(runs[:1], out).run()] == ["ok"]
    run_dir = out / runs[0].name
    original = json.loads((run_dir / "metrics.json").read_text())

    assert refit.main([str(out)]) == 0
    refit_dir = tmp_path / "sweep-refit" / runs[0].name
    metrics = json.loads((refit_dir / "metrics.json").read_text())
    assert metrics["config"]["fit_on"] == "train+val"
    assert original["config"].get("fit_on") == "train"
    # as many epochs as the run's checkpoint took, the last one's weights, no val selection
    assert metrics["budget"]["epochs_trained"] == original["budget"]["best_epoch"]
    assert metrics["budget"]["best_epoch"] == metrics["budget"]["epochs_trained"]
    assert metrics["selection"] is None
    assert metrics["n"] == original["n"]  # the same test part
    assert {k: v for k, v in metrics["config"].items() if k != "fit_on"} == {
        k: v for k, v in original["config"].items() if k != "fit_on"
    }
    assert "refit on train+val" in bm.recipe_labels(metrics["config"])
    # a rerun skips what is done; refits are not refitted again
    capsys.readouterr()
    assert refit.main([str(out), "--out", str(tmp_path / "sweep-refit")]) == 0
    assert "1/1 runs already finished" in capsys.readouterr().out
    assert [r.name for r in refit.refit_runs(tmp_path)] == [f"sweep/{runs[0].name}"]


def test_refit_names_what_it_cannot_use(tmp_path: Path, capsys) -> None:
    from experiments import refit

    assert refit.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert refit.main([str(tmp_path)]) == 2
    assert "holds no finished run" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"ua": 0.5, "budget": {"best_epoch": 2}}))
    assert refit.main([str(tmp_path)]) == 2
    assert f"{run} has no config.yaml" in capsys.readouterr().err
    (run / "config.yaml").write_text("model: {}\n")
    (run / "metrics.json").write_text(json.dumps({"ua": 0.5, "checkpoint": None}))
    assert refit.main([str(tmp_path)]) == 2
    assert "records no best epoch" in capsys.readouterr().err
    assert refit.main([str(tmp_path), "--epochs", "4", "--dry-run"]) == 0
    assert "--trainer.max_epochs 4" in capsys.readouterr().out


def test_refit_median_gives_each_run_its_seeds_median_best_epoch(tmp_path: Path, capsys) -> None:
    from experiments import refit

    # (fold, seed, pooling) -> best epoch; the mean-pooling run is a variant of its own
    best = {(0, 0, "attention"): 2, (0, 1, "attention"): 9, (0, 2, "attention"): 5,
            (1, 0, "attention"): 4, (1, 1, "attention"): 7, (0, 0, "mean"): 20}  # fmt: skip
    for (fold, seed, pooling), epoch in best.items():
        run = tmp_path / pooling / f"fold-{fold}__seed-{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("model: {}\n")
        config = {"fold": fold, "seed": seed, "pooling": pooling}
        metrics = {"ua": 0.5, "config": config, "budget": {"best_epoch": epoch}}
        (run / "metrics.json").write_text(json.dumps(metrics))
    epochs = {
        spec.name: spec.params["trainer.max_epochs"]
        for spec in refit.refit_runs(tmp_path, "median")
    }
    # fold 0: median of 2, 9, 5; fold 1: of 4 and 7, rounded half up
    fold0 = ["attention/fold-0__seed-0", "attention/fold-0__seed-1", "attention/fold-0__seed-2"]
    assert epochs == {**dict.fromkeys(fold0, 5), "mean/fold-0__seed-0": 20,
                      **dict.fromkeys(["attention/fold-1__seed-0", "attention/fold-1__seed-1"], 6)}  # fmt: skip
    own = {spec.name: spec.params["trainer.max_epochs"] for spec in refit.refit_runs(tmp_path)}
    assert own["attention/fold-0__seed-1"] == 9
    assert refit.main([str(tmp_path), "--epochs", "median", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("--trainer.max_epochs 5") == 3
    assert refit.main([str(tmp_path), "--epochs", "mean"]) == 2
    assert "--epochs must be 'median' or >= 1, got 'mean'" in capsys.readouterr().err
