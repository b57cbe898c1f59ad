"""The command line of passthrough worker modules (parsed in the child, built by `bench.measure`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerArgs:
    bootstrap: str
    source: str
    sink: str
    group: str
    partitions: int
    options: dict[str, Any]


def parse(argv: list[str] | None = None) -> WorkerArgs:
    parser = argparse.ArgumentParser(description="a leadpipe benchmark worker (started by python -m bench)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--options", default="{}", help="case options as a JSON object")
    ns = parser.parse_args(argv)
    return WorkerArgs(ns.bootstrap, ns.source, ns.sink, ns.group, ns.partitions, json.loads(ns.options))
