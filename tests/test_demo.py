"""The Gradio demo: upload checks, the app in a subprocess via gradio_client, and in Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.demo_models import REPO, DemoModels, demo_models

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    return demo_models(tmp_path_factory.getbasetemp() / "ser-demo-models")


@pytest.fixture(scope="session")
def clip(models: DemoModels) -> Path:
    """A built-in corpus clip (speech with words), as a user would upload it."""
    audio = sorted((models.cache / "builtin" / "audio").rglob("*.wav"))
    assert audio, "the built-in corpus has no audio"
    return audio[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    """Start-up loads and warms the models after the page is up: wait for its `ready`."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"demo exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if client.predict(api_name="/status")["ready"]:
            return
        time.sleep(1)
    pytest.fail(f"demo not ready within {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_url(models: DemoModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo on a free localhost port, with the test models and a 1 MB upload limit."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    cmd = [
        sys.executable, "-m", "experiments.demo", "--port", str(port),
        "--runs-dir", str(models.runs), "--max-upload-mb", "1",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=models.env(), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"demo exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"demo did not listen within 120 s:\n{log.read_text()[-3000:]}")
        wait_until_ready(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_backend_rejects_oversized_and_non_audio(models: DemoModels, tmp_path: Path) -> None:
    from experiments.demo import DemoBackend, DemoError

    backend = DemoBackend(models.runs, max_upload_mb=0.5, asr="none")
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(16_000 * 20, np.float32), 16_000)  # 640 kB
    with pytest.raises(DemoError, match=r"big\.wav: 0\.6 MB is over the 0\.5 MB upload limit"):
        backend.predict("acoustic", big)
    text = tmp_path / "readme.wav"
    text.write_text("not audio at all\n")
    with pytest.raises(DemoError, match=r"not a readable audio file: readme\.wav"):
        backend.predict("acoustic", text)
    with pytest.raises(DemoError, match="no audio"):
        backend.predict("acoustic", None)


def test_model_menu_lists_only_existing_models_and_says_how_to_make_others(
    models: DemoModels,
) -> None:
    from experiments.demo import DemoBackend, DemoError, available_models

    menu = available_models(models.runs)
    assert {c.architecture: c.checkpoint for c in menu} == {
        "acoustic": models.checkpoint("acoustic"),
        "mmmla": models.checkpoint("mmmla"),
    }
    backend = DemoBackend(models.runs)
    assert "mmb" in backend.missing_text() and "--train" in backend.missing_text()
    with pytest.raises(DemoError, match="--train hierarchical"):
        backend.resolve("hierarchical")  # never trained inside a request


def test_fallback_is_the_acoustic_model_of_the_same_run_tree(
    models: DemoModels, tmp_path: Path
) -> None:
    """make run's layout: a fusion model's fallback is the pooling sweep's acoustic model."""
    import json

    from experiments.demo import DemoBackend
    from experiments.inference import find_fallback

    job = tmp_path / "runs" / "main" / "builtin-small"
    placed = {}
    for sweep, name, arch in (("pooling", "acoustic_attention", "acoustic"),
                              ("fusion", "mmmla", "mmmla")):  # fmt: skip
        ckpt = job / sweep / name / "checkpoints" / "best.ckpt"
        ckpt.parent.mkdir(parents=True)
        shutil.copy(models.checkpoint(arch), ckpt)
        config = {"architecture": arch, "corpus": "builtin"}
        (ckpt.parent.parent / "metrics.json").write_text(json.dumps({"ua": 0.5, "config": config}))
        placed[arch] = ckpt
    runs = tmp_path / "runs"  # no runs/demo here: the run tree alone must answer
    assert find_fallback(placed["mmmla"], runs) == placed["acoustic"].resolve()
    # a steady hum: voice activity for the VAD, but no words for the ASR (silence itself is
    # answered "no speech detected" before any model runs)
    hum = tmp_path / "hum.wav"
    t = np.arange(32_000) / 16_000
    sf.write(hum, (0.1 * np.sin(2 * np.pi * 110 * t)).astype(np.float32), 16_000)
    pred, _, _ = DemoBackend(runs).predict(str(placed["mmmla"]), hum)
    assert pred.words == []
    answer = pred.to_json()
    assert answer["fallback"] is True
    assert answer["checkpoint"] == str(placed["acoustic"].resolve())
    assert str(placed["acoustic"].resolve()) in answer["model_used"]


def test_attention_figure_draws_words(models: DemoModels, clip: Path) -> None:
    from experiments.demo import DemoBackend, attention_figure

    backend = DemoBackend(models.runs)
    pred, playback, _ = backend.predict(str(models.checkpoint("mmmla")), clip)
    assert sf.info(playback).samplerate == 16_000
    fig = attention_figure(pred)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {w.text for w in pred.words} <= texts | {
        t.get_text() for t in fig.axes[-1].get_xticklabels()
    }
    assert (
        len(fig.axes) == 2 + bool(pred.words)
        and len(pred.attention["acoustic"]) == pred.shapes["acoustic"][0]
    )


def test_app_api_upload_gives_probabilities(
    app_url: str, models: DemoModels, clip: Path, tmp_path: Path
) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)
    out = client.predict(handle_file(str(clip)), "mmmla", api_name="/predict")
    assert set(out["probabilities"]) == {"angry", "happy", "neutral", "sad"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert out["model_used"] == "mmmla" and out["transcript"]
    # Bad uploads get a clear message, and the server stays up for the next request.
    text = tmp_path / "notes.wav"
    text.write_text("a text file renamed .wav\n")
    with pytest.raises(AppError, match=r"notes\.wav"):
        client.predict(handle_file(str(text)), "acoustic", api_name="/predict")
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32_000, np.float32), 16_000)
    with pytest.raises(AppError, match=r"silence\.wav: no speech detected"):
        client.predict(handle_file(str(silence)), "mmmla", api_name="/predict")
    hum = tmp_path / "hum.wav"  # voice activity without words: the acoustic fallback answers
    t = np.arange(32_000) / 16_000
    sf.write(hum, (0.1 * np.sin(2 * np.pi * 110 * t)).astype(np.float32), 16_000)
    out = client.predict(handle_file(str(hum)), "mmmla", api_name="/predict")
    assert out["fallback"] is True and out["model_used"].startswith("acoustic fallback")


def test_app_in_headless_chromium(app_url: str, clip: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("Debian packages chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"ser-chromium-{os.getpid()}"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1600",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 90)
        wait.until(ec.presence_of_element_located((By.ID, "predict")))
        assert "Speech emotion recognition" in driver.page_source
        upload = driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
        upload.send_keys(str(clip))
        time.sleep(2)  # the upload finishes before the click
        driver.find_element(By.ID, "predict").click()
        wait.until(
            lambda d: (
                ":"
                in (
                    d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value") or ""
                )
                and "ready"
                not in d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
            )
        )
        status = driver.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
        assert not status.startswith("error"), status
        probs = driver.find_element(By.ID, "probs").text.lower()
        assert any(c in probs for c in ("angry", "happy", "neutral", "sad")), probs
        assert (
            driver.find_element(By.ID, "transcript")
            .find_element(By.TAG_NAME, "textarea")
            .get_attribute("value")
        )
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "demo.png"))
        driver.find_element(By.ID, "again").click()  # "Run again" clears the answer
        wait.until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, "#status textarea")
                .get_attribute("value")
                .startswith("ready")
            )
        )
        assert not any(
            c in driver.find_element(By.ID, "probs").text.lower() for c in ("angry", "sad")
        )
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_builtin_models_train_from_existing_configs(
    models: DemoModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First use trains each architecture from a real config into runs/demo/<arch>."""
    from experiments import demo

    monkeypatch.setenv("SER_CACHE", str(models.cache))  # the built-in corpus is prepared
    calls: list[list[str]] = []

    def fake_run(cmd, env, what, on_line=None):  # the real training is the fixture's job
        calls.append(cmd)
        if on_line:
            on_line("Epoch 0/1 ...")
        run_dir = Path(cmd[cmd.index("--trainer.default_root_dir") + 1])
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")

    from experiments import demo_models

    monkeypatch.setattr(demo_models, "_run", fake_run)
    seen: list[tuple[float, str]] = []
    for arch in demo.ARCHITECTURES:
        ckpt = demo.train_builtin(arch, tmp_path / "runs", 2, lambda f, m: seen.append((f, m)))
        assert ckpt == tmp_path / "runs" / "demo" / arch / "checkpoints" / "best.ckpt"
    assert len(calls) == len(demo.ARCHITECTURES)  # no prepare: the corpus is there
    for cmd in calls:
        config = Path(cmd[cmd.index("--config") + 1])
        assert config.is_file(), config
        assert cmd[cmd.index("--data.corpus") + 1] == "builtin"
    assert any("epoch 1/2" in m for _, m in seen)


def test_demo_from_empty_runs_folder_trains_at_start_up_then_answers_at_once(
    models: DemoModels, tmp_path: Path, clip: Path
) -> None:
    """Start-up trains the missing model (progress in the terminal, status in the page);
    once it reports ready, the first prediction takes the usual time."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    port, runs, log = free_port(), tmp_path / "runs", tmp_path / "demo.log"
    cmd = [
        sys.executable, "-m", "experiments.demo", "--port", str(port), "--runs-dir", str(runs),
        "--train", "acoustic", "--epochs", "1",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=models.env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 600
        client = None
        while client is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                client = Client(url, verbose=False, download_files=str(tmp_path))
            except Exception:
                time.sleep(1)
        assert client is not None, log.read_text()[-3000:]
        seen = set()
        while time.monotonic() < deadline:
            status = client.predict(api_name="/status")
            seen.add(status["status"])
            if status["ready"]:
                break
            time.sleep(1)
        assert status["ready"] and status["status"].startswith("ready"), status
        assert any(s.startswith("training") for s in seen) or "training" in log.read_text()
        assert "demo: training acoustic: epoch 1/1" in log.read_text()  # terminal progress
        _screenshot(url, ARTIFACTS / "demo-startup.png")
        t0 = time.monotonic()
        out = client.predict(handle_file(str(clip)), "acoustic", api_name="/predict")
        first = time.monotonic() - t0
        assert out["model_used"] == "acoustic" and first < 10, first
        with pytest.raises(AppError, match="--train mmb"):
            client.predict(handle_file(str(clip)), "mmb", api_name="/predict")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _screenshot(url: str, path: Path) -> None:
    """The page in headless Chromium, saved to `path` (skipped without chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"ser-chromium-start-{os.getpid()}"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1200"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: "ready" in d.find_element(By.ID, "startup").text)
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
