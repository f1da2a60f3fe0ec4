"""Sweeps, below the `python -m experiments.sweep` CLI: `spec` (the YAML read and expanded into
runs), `runner` (the local runner: subprocesses, process groups, signals) and `agent` (the
`wandb agent` path)."""
