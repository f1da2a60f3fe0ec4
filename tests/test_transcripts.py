"""Recognised transcripts: WER, the per-utterance ASR cache, prepare --transcripts, gold/ASR runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import datamodules.transcripts as tr
from datamodules.corpus import PreparedCorpus
from datamodules.utterances import CorpusError, Utterance, Word, read_table, write_table
from experiments import prepare

REPO = Path(__file__).resolve().parents[1]
CLIPS = (  # Actor_01: neutral "Kids ...", angry strong "Dogs ...", sad "Kids ..."
    "03-01-01-01-01-01-01.flac",
    "03-01-05-02-02-01-01.flac",
    "03-01-04-01-01-02-01.flac",
)


def test_wer_normalises_and_matches_jiwer() -> None:
    import jiwer

    assert tr.normalise("I'm   here, <sil> DON'T go!") == ["i", "am", "here", "do", "not", "go"]
    assert tr.utterance_wer("I'm here.", "i am here") == 0.0
    ref, hyp = "Kids are talking by the door", "kids talking by a door now"
    expected = jiwer.wer("kids are talking by the door", "kids talking by a door now")
    assert tr.utterance_wer(ref, hyp) == pytest.approx(expected) == pytest.approx(3 / 6)
    refs = ["Dogs are sitting by the door.", "Kids are talking by the door", "Yes"]
    hyps = ["dogs sitting by the door", "kids are talking by the door", "no"]
    # corpus WER = all errors / all reference words, as jiwer computes it over lists
    assert tr.corpus_wer(refs, hyps) == pytest.approx(
        jiwer.wer(
            [" ".join(tr.normalise(r)) for r in refs], [" ".join(tr.normalise(h)) for h in hyps]
        )
    )
    assert tr.corpus_wer(refs, hyps) == pytest.approx(2 / 13)
    assert math.isnan(tr.utterance_wer("", "something"))
    assert tr.utterance_wer("hello there", "") == 1.0


def test_asr_words_are_normalised_tokens_with_spans() -> None:
    words = tr.asr_words([Word(" Don't", 0.5, 0.9), Word("go.", 0.9, 1.4)], duration_s=1.2)
    assert words == [Word("do", 0.5, 0.9), Word("not", 0.5, 0.9), Word("go", 0.9, 1.2)]


def _few_clips(ravdess_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ravdess" / "Actor_01"
    root.mkdir(parents=True)
    for name in CLIPS:
        (root / name).symlink_to(ravdess_root / "Actor_01" / name)
    return root.parent


def test_prepare_asr_transcripts_cached_reused_and_scored(
    ravdess_root: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _few_clips(ravdess_root, tmp_path)
    calls: list[str] = []
    real = tr.recognise

    def counting(task):  # noqa: ANN001, ANN202
        calls.append(task[0])
        return real(task)

    monkeypatch.setattr(tr, "recognise", counting)
    args = ["ravdess", "--root", str(root), "--name", "rv", "--workers", "1"]
    assert prepare.main([*args, "--transcripts", "both"]) == 0
    assert len(calls) == 3
    assert len(list((cache_dir / "rv" / "asr" / "whisper").glob("*.json"))) == 3
    table = read_table("rv")
    assert (table["transcript"] == table["statement"]).all()  # gold stays the main
    for row in table.to_dict("records"):
        assert row["asr_backend"] == "whisper"
        assert row["wer"] == pytest.approx(
            tr.utterance_wer(row["statement"], row["asr_transcript"])
        )
        assert all(w[1] is not None for w in json.loads(row["asr_words"]))  # timed words
    meta = json.loads((cache_dir / "rv" / "prepare.json").read_text())
    assert meta["transcripts"] == "both" and meta["asr_computed"] == 3
    assert meta["wer"] == pytest.approx(
        tr.corpus_wer(list(table["statement"]), list(table["asr_transcript"]))
    )
    assert meta["wer"] < 0.35  # Whisper tiny.en hears these statements well

    # a second prepare, now with ASR as the main text, recognises nothing
    def refuse(task):  # noqa: ANN001, ANN202
        raise AssertionError(f"recogniser called again for {task[0]}")

    monkeypatch.setattr(tr, "recognise", refuse)
    assert prepare.main([*args, "--transcripts", "asr"]) == 0
    again = read_table("rv")
    assert list(again["transcript"]) == list(table["asr_transcript"])
    assert list(again["gold_transcript"]) == list(table["statement"])
    assert json.loads((cache_dir / "rv" / "prepare.json").read_text())["asr_cached"] == 3

    # the cache follows the audio: a changed segment is recognised again
    entry = cache_dir / "rv" / "asr" / "whisper" / tr.entry_name(CLIPS[0][:-5])
    record = json.loads(entry.read_text())
    record["source"]["end_s"] = 1.0
    entry.write_text(json.dumps(record))
    monkeypatch.setattr(tr, "recognise", counting)
    calls.clear()
    assert prepare.main([*args, "--transcripts", "both"]) == 0
    assert calls == [str((root / "Actor_01" / CLIPS[0]).resolve())]


def test_text_only_manifest_with_asr_transcripts_is_a_clear_error(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "text.csv"
    csv.write_text("transcript,label\nso happy today,joy\nleave me alone,anger\n")
    assert prepare.main(["manifest", "--root", str(csv), "--transcripts", "asr"]) == 2
    err = capsys.readouterr().err
    assert "--transcripts asr" in err and "no audio" in err and str(csv) in err
    with pytest.raises(CorpusError, match="no audio"):
        prepare.prepare(
            prepare.parse_args(["manifest", "--root", str(csv), "--transcripts", "both"])
        )


def _text_corpus(name: str, with_asr: bool = True) -> None:
    """24 text-only utterances of two classes, with recognised variants of their words."""
    gold = {"joy": "so happy today", "anger": "leave me alone now"}
    heard = {"joy": "so hoppy to day", "anger": "leave me along"}
    utts = []
    for i in range(24):
        label = ["joy", "anger"][i % 2]
        extra = {}
        if with_asr:
            extra = {
                "asr_transcript": heard[label],
                "asr_words": json.dumps([[t, None, None] for t in heard[label].split()]),
                "asr_backend": "whisper",
                "wer": tr.utterance_wer(gold[label], heard[label]),
            }
        utts.append(
            Utterance(f"t{i:02d}", f"s{i % 3}", f"s{i % 3}", label, transcript=gold[label],
                      words=[Word(t) for t in gold[label].split()], extra=extra)
        )  # fmt: skip
    write_table(name, utts, {"reader": "manifest", "classes": ["anger", "joy"]})


def test_views_and_feature_keys_differ_by_transcript_source(cache_dir: Path) -> None:
    from datamodules.features import FeatureConfig, feature_key

    _text_corpus("txt")
    corpus = PreparedCorpus.load("txt")
    gold, asr = tr.transcript_view(corpus, "gold"), tr.transcript_view(corpus, "asr")
    assert gold.table["transcript"].iloc[0] == "so happy today"
    assert asr.table["transcript"].iloc[0] == "so hoppy to day"
    config = FeatureConfig()
    assert feature_key(gold, config) == feature_key(corpus, config)  # gold keys unchanged
    assert feature_key(asr, config) != feature_key(gold, config)
    assert "-asr-" in feature_key(asr, config)
    _text_corpus("plain", with_asr=False)
    with pytest.raises(CorpusError, match="--transcripts both"):
        tr.transcript_view(PreparedCorpus.load("plain"), "asr")


def test_gold_and_asr_runs_are_distinct(cache_dir: Path, tmp_path: Path) -> None:
    """gold/gold, gold->asr and asr/asr through the train CLI: own keys, recorded settings."""
    from datamodules.datamodule import EmotionDataModule
    from experiments.train import main

    _text_corpus("txt")
    records = {}
    for train, test in (("gold", "gold"), ("gold", "asr"), ("asr", "asr")):
        root = tmp_path / f"{train}-{test}"
        main(
            ["fit", "--config", str(REPO / "configs" / "lexical_cls.yaml"),
             "--data.corpus", "txt", "--data.transcripts", train,
             "--data.test_transcripts", test, "--model.hidden_size", "8",
             "--trainer.fast_dev_run", "1", "--wandb", "false",
             "--trainer.default_root_dir", str(root)],
            datamodule_class=EmotionDataModule,
        )  # fmt: skip
        records[(train, test)] = json.loads((root / "metrics.json").read_text())["config"]
    gg, ga, aa = records[("gold", "gold")], records[("gold", "asr")], records[("asr", "asr")]
    assert (ga["transcripts"], ga["test_transcripts"]) == ("gold", "asr")
    assert (gg["transcripts"], gg["test_transcripts"]) == ("gold", "gold")
    assert "test_feature_key" not in gg and ga["feature_key"] == gg["feature_key"]
    assert ga["test_feature_key"] == aa["feature_key"] != gg["feature_key"]
    assert aa["asr_backend"] == "whisper"


def test_report_section_groups_by_setting_and_bins_by_wer(cache_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from experiments.report import write_report
    from lightning_modules.predictions import Predictions, write_predictions

    _text_corpus("txt")  # joy rows: WER 1.0 ("so hoppy to day"), anger rows: WER 1/4
    ids = [f"t{i:02d}" for i in range(24)]
    labels = np.array([1, 0] * 12)  # classes ["anger", "joy"]
    sweep = tmp_path / "sweep"
    for arch, modality, fusion in (
        ("lexical", "lexical", "none"),
        ("mmmla", "acoustic+lexical", "gmu"),
    ):
        for test, wrong in (("gold", 0), ("asr", 6)):  # asr: 6 joy utterances misread
            run = sweep / f"{arch}-{test}"
            run.mkdir(parents=True)
            pred = labels.copy()
            pred[np.flatnonzero(labels == 1)[:wrong]] = 0
            ua = float(np.mean([(pred[labels == c] == c).mean() for c in (0, 1)]))
            gate = np.where(labels == 1, 0.7, 0.4).astype(np.float32) if fusion == "gmu" else None
            write_predictions(
                run / "predictions.npz",
                Predictions(ids, labels, pred, np.eye(2, dtype=np.float32)[pred], ["anger", "joy"],
                            gate=gate),
            )  # fmt: skip
            config = {"architecture": arch, "modality": modality, "pooling": "attention",
                      "fusion": fusion, "corpus": "txt", "protocol": "sd8020",
                      "transcripts": "gold", "test_transcripts": test}  # fmt: skip
            metrics = {"ua": ua, "wa": ua, "predictions": "predictions.npz", "config": config}
            (run / "metrics.json").write_text(json.dumps(metrics))
    report = write_report(sweep, plots=True, wandb_log=False)
    assert len(report.rows) == 4  # gold and ASR runs are separate rows
    assert {r.transcripts for r in report.rows} == {"", "gold→asr"}
    text = report.markdown.read_text()
    assert "## Recognised transcripts" in text
    assert (
        "| txt | mmmla · attention · gmu | 100.0 ± 0.0 (n=1) | 75.0 ± 0.0 (n=1) | -25.0 |" in text
    )
    # joy (WER 100%) bin: half misread under ASR; anger (WER 25%) bin untouched
    assert "| lexical · attention · gold→asr | – | – | 100.0 (n=12) | 50.0 (n=12) |" in text
    assert "0.40 | 0.70 |" in text  # gate per WER bin of the GMU model
    assert (sweep / "plots" / "ua_by_wer_txt.png").is_file()
    assert (sweep / "plots" / "gate_by_wer_txt.png").is_file()


def test_transcripts_sweep_runs_every_combination() -> None:
    import experiments.sweep as sw

    _, runs = sw.build_runs(sw.load_sweep(REPO / "configs/sweeps/transcripts.yaml"))
    combos = {(r.params["data.transcripts"], r.params["data.test_transcripts"]) for r in runs}
    assert combos == {("gold", "gold"), ("gold", "asr"), ("asr", "asr"), ("asr", "gold")}
    assert len({r.name for r in runs}) == len(runs) == 4 * 4 * 3  # variants x combos x seeds


def test_datamodule_names_a_bad_transcript_source(cache_dir: Path) -> None:
    from datamodules.datamodule import DataModuleError, EmotionDataModule

    with pytest.raises(DataModuleError, match="transcripts must be one of"):
        EmotionDataModule(corpus="txt", test_transcripts="whisper")  # type: ignore[arg-type]
    _text_corpus("plain", with_asr=False)
    dm = EmotionDataModule(corpus="plain", modalities=["lexical"], test_transcripts="asr")
    with pytest.raises(CorpusError, match="prepare it with --transcripts both"):
        dm.prepare_data()
