"""Command-line entry points: prepare, features, train, sweep, report, predict, demo, bench."""
