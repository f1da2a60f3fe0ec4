"""README's command blocks (and those of experiments/RESULTS.md, the record of the real-speech
measurements) run as written: every make target and variable exists (`make -n`), every
`python -m experiments.X` module exists and knows each option it is shown with; every section
the two files cite by name in italics exists in one of them."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Options LightningCLI (not the module's source) defines, and dotted config keys.
CLI_BUILTIN = {"--config", "--ckpt_path", "--print_config"}
DOCS = (REPO / "README.md", REPO / "experiments" / "RESULTS.md")
NOT_SECTIONS = {"Friends"}  # italics that name no section (a TV series)


def commands() -> list[str]:
    """Each shell command of the docs' ```bash blocks, continuations joined, comments dropped."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS)
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                out.append(line)
    return out


def _options(command: str) -> list[str]:
    # "[--name N --classes a,b]" shows optional options: check them too
    tokens = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--")]


MAKE = [c for c in commands() if re.match(r"^(\w+=\S+ )*make ", c)]
PYTHON = [c for c in commands() if c.startswith("python -m experiments.")]


def test_readme_has_commands() -> None:
    assert len(MAKE) >= 5 and len(PYTHON) >= 8


def _section_names(text: str) -> set[str]:
    """Headings and bold paragraph leads ("**Late fusion (2026-11-30).**"), each with and
    without a trailing "(date)"."""
    names = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        names |= {heading.strip(), re.sub(r"\s*\(.*\)$", "", heading).strip()}
    for lead in re.findall(r"^\*\*([^*]+?)\*\*", text, flags=re.M):
        names.add(re.sub(r"\s*\(.*$", "", lead).rstrip(". "))
    return names


def test_cited_sections_exist() -> None:
    texts = {path.name: path.read_text(encoding="utf-8") for path in DOCS}
    assert "experiments/RESULTS.md" in texts["README.md"]  # the record is linked
    names = set().union(*(_section_names(t) for t in texts.values())) | NOT_SECTIONS
    assert {"Results on real speech", "One actor per fold", "Late fusion"} <= names
    for name, text in texts.items():
        prose = re.sub(r"`[^`\n]*`", "", text)  # code spans hold * of their own
        cited = re.findall(r"(?<![*\w])\*([A-Z][^*\n]*?)\*(?![*\w])", prose)
        assert cited, name
        missing = sorted(set(cited) - names)
        assert not missing, f"{name} cites sections that neither file has: {missing}"


@pytest.mark.parametrize("command", MAKE)
def test_make_command_exists(command: str) -> None:
    env_vars, rest = re.match(r"^((?:\w+=\S+ )*)make (.*)$", command).groups()  # type: ignore[union-attr]
    args = shlex.split(rest)
    proc = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    target = next((a for a in args if "=" not in a), "run")
    assert "No rule" not in proc.stderr, target


def test_make_prepare_passes_name_and_classes() -> None:
    proc = subprocess.run(
        ["make", "-n", "prepare", "CORPUS=ravdess", "ROOT=/data/ravdess", "NAME=ravdess4",
         "CLASSES=neutral,happy,sad,angry"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        "-m experiments.prepare ravdess --root /data/ravdess --name ravdess4 "
        "--classes neutral,happy,sad,angry" in proc.stdout
    )


@pytest.mark.parametrize("command", PYTHON)
def test_python_command_module_and_options_exist(command: str) -> None:
    module = command.split()[2]
    path = REPO / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{command}: no {path}"
    source = path.read_text(encoding="utf-8")
    for option in _options(command):
        if option in CLI_BUILTIN or "." in option:
            continue  # LightningCLI's own and config keys (checked by the train tests)
        name = option[2:]
        assert f'"{option}"' in source or f'"{name}"' in source, f"{command}: {option} unknown"


def test_make_benchmark_on_speakers_of_your_own() -> None:
    def dry_run(*variables: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "benchmark", "CORPUS=c", "BENCH_FEATURES=", *variables],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.replace("\\\n", " ")  # continuation lines joined

    held = dry_run("TEST_SPEAKERS=A, B")
    sweeps = [line for line in held.splitlines() if "experiments.sweep" in line]
    assert sweeps and all(
        '--set data.protocol=speakers --set "data.test_speakers=[A, B]"' in line
        and "--out runs/benchmark/c-heldout/A+B/" in line
        for line in sweeps
    )
    assert "-m experiments.benchmark runs/benchmark/c-heldout" in held
    folds = dry_run()
    assert "data.protocol=speakers" not in folds and "-heldout" not in folds
    assert "data.folds" not in folds
    one_each = dry_run("FOLDS=18")
    sweeps = [line for line in one_each.splitlines() if "experiments.sweep" in line]
    assert sweeps and all(
        "--set data.folds=18" in line and "--out runs/benchmark/c-k18/" in line for line in sweeps
    )
    assert "-m experiments.benchmark runs/benchmark/c-k18" in one_each
    both = subprocess.run(
        ["make", "-n", "benchmark", "CORPUS=c", "FOLDS=3", "TEST_SPEAKERS=A, B"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert both.returncode != 0 and "FOLDS and TEST_SPEAKERS" in both.stderr
