"""The benchmark cases, in table order; `load()` imports them so they fill `bench.case.REGISTRY`.

A new case (a service alone, the whole pipeline, speed-to-lead) is one module here that calls
`register(...)`, plus its name below; the process it measures lives in `bench.workers`.
"""

from __future__ import annotations

import importlib

CASE_MODULES = (
    "bench.cases.raw",
    "bench.cases.quix",
    "bench.cases.faust_passthrough",
    "bench.cases.services",
    "bench.cases.pipeline",
    "bench.cases.speed_to_lead",
    "bench.cases.score_state",
    "bench.cases.score_recovery",
    "bench.cases.scale",
    "bench.cases.domain",
    "bench.cases.broker",
)


def load() -> None:
    for module in CASE_MODULES:
        importlib.import_module(module)
