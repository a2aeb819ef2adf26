"""Benchmarks: haproxy-k8s against a render-and-SIGUSR2 baseline.

Run `python -m bench` from the repository root (see docs/benchmarks.md).
Not a test suite: nothing here asserts on timings.
"""
