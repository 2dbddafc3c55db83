"""Benchmarks: run them from the repository root as modules, e.g. `python -m bench.queue`
(as modules, so that bench/queue.py does not shadow the standard library's `queue`)."""
