"""leadpipe benchmarks: reproducible throughput figures against a broker the harness starts itself.

`python -m bench` runs the registered cases (see `bench.cases`) against one embedded Tansu broker,
prints a table and writes JSON results to `bench/results/<timestamp>.json`.
"""
