"""Benchmarks of cargohold side by side with the CNCF reference registry (issue 5).

Run from the repository root: ``python -m bench`` (a full run, ~30 minutes, writes
``docs/benchmarks.md``) or ``python -m bench --quick`` (tiny sizes, under a minute).
Not a test suite: ``tests/bench`` only checks that the harness still runs.
"""
