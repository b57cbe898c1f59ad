"""Processes the cases measure, each run as `python -m bench.workers.<name>` (see `bench.worker_args`)."""
