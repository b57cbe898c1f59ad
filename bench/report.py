"""Pure helpers for results: percentiles, summaries of repeated runs, the table and the JSON document."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.case import CaseResult

REFERENCE_CASE = "raw.aiokafka"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """The runs of one case folded into one row: median rate, its spread, and mean costs per event."""

    case: str
    description: str
    runs: int
    events_per_second: float
    min_events_per_second: float
    max_events_per_second: float
    cpu_us_per_event: float
    broker_cpu_us_per_event: float | None
    error: str | None = None


def summarise(results: Sequence[CaseResult]) -> list[Summary]:
    """One summary per case, in first-seen order; a case whose every run failed keeps its error."""
    by_case: dict[str, list[CaseResult]] = {}
    for result in results:
        by_case.setdefault(result.case, []).append(result)
    summaries = []
    for case, runs in by_case.items():
        good = [r for r in runs if r.error is None]
        if not good:
            summaries.append(Summary(case, runs[0].description, 0, 0.0, 0.0, 0.0, 0.0, None, runs[-1].error))
            continue
        rates = [r.events_per_second for r in good]
        broker = [
            r.broker_cpu_seconds / r.events for r in good if r.broker_cpu_seconds is not None and r.events
        ]
        summaries.append(
            Summary(
                case=case,
                description=good[0].description,
                runs=len(good),
                events_per_second=statistics.median(rates),
                min_events_per_second=min(rates),
                max_events_per_second=max(rates),
                cpu_us_per_event=statistics.fmean(r.cpu_us_per_event for r in good),
                broker_cpu_us_per_event=1e6 * statistics.fmean(broker) if broker else None,
            )
        )
    return summaries


def format_table(summaries: Sequence[Summary], reference: str = REFERENCE_CASE) -> str:
    """A Markdown table; rates relative to the raw aiokafka line when it ran, since ratios travel."""
    base = next((s.events_per_second for s in summaries if s.case == reference and s.error is None), None)
    ref = next((s for s in summaries if s.case == reference and s.error is None), None)
    lines = [
        "| case | what | events/s | range | vs raw | worker CPU µs/event | CPU vs raw "
        "| broker CPU µs/event |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        if s.error is not None:
            lines.append(f"| {s.case} | {s.description} | failed: {_cell(s.error)} | | | | | |")
            continue
        spread = f"{s.min_events_per_second:,.0f}-{s.max_events_per_second:,.0f}" if s.runs > 1 else ""
        ratio = f"{s.events_per_second / base:.0%}" if base else ""
        cpu_ratio = (
            f"{s.cpu_us_per_event / ref.cpu_us_per_event:.1f}x" if ref and ref.cpu_us_per_event else ""
        )
        broker = f"{s.broker_cpu_us_per_event:.1f}" if s.broker_cpu_us_per_event is not None else ""
        lines.append(
            f"| {s.case} | {_cell(s.description)} | {s.events_per_second:,.0f} | {spread} | {ratio} "
            f"| {s.cpu_us_per_event:.1f} | {cpu_ratio} | {broker} |"
        )
    return "\n".join(lines)


def format_figures(results: Sequence[CaseResult]) -> str:
    """The figures a rate cannot carry (latency percentiles, memory, recovery), one row each per run."""
    lines = ["| case | run | figure | value |", "|---|--:|---|---|"]
    runs: dict[str, int] = {}
    for result in results:
        runs[result.case] = runs.get(result.case, 0) + 1
        for name, value in result.figures.items():
            lines.append(f"| {result.case} | {runs[result.case]} | {_cell(name)} | {_cell(value)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _cell(text: str, limit: int = 160) -> str:
    return text.replace("|", "/").replace("\n", " ")[:limit]


def machine() -> dict[str, Any]:
    """Where the figures came from; absolute rates mean little without it."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        model = models[0] if models else ""
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
