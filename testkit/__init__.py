"""The harness the tests (tests/) and the benchmarks (bench/) share.

Not shipped: the wheel packages only haproxy_k8s. tests/conftest.py puts the repository
root on sys.path for it; `python -m bench` runs from the root, where it is found anyway.
Everything here talks to 127.0.0.0/8 only and ends the processes it knows of by pid.
"""
