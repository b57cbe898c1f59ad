"""Fault tests: one private pipeline for the package, the run size, and the figures at the end.

The short run (inside `make test`) sends a few dozen events per test; `make soak` (LEADPIPE_SOAK=1)
sends hundreds per test and repeats every fault. LEADPIPE_SOAK_LEADS overrides the leads per test,
LEADPIPE_FAULT_PATIENCE the seconds a test waits for missing effects before counting them lost.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.checker import Report, Run
from tests.faults.stack import API_KEY, FaultStack

REPORTS: list[Report] = []


@dataclass(frozen=True)
class Scale:
    soak: bool
    leads: int  # per test; half hot, half nurture, two events each
    repeats: int  # kills (or outages) per test
    outage_seconds: float  # how long Redis is down or the broker frozen
    rate: float  # events per second the sender offers
    patience: float  # seconds a run waits for missing effects before it counts them as lost


def scale_from_env() -> Scale:
    soak = os.environ.get("LEADPIPE_SOAK") == "1"
    leads = int(os.environ.get("LEADPIPE_SOAK_LEADS", "150" if soak else "24"))
    patience = float(os.environ.get("LEADPIPE_FAULT_PATIENCE", "300" if soak else "90"))
    if soak:
        return Scale(soak=True, leads=leads, repeats=3, outage_seconds=10.0, rate=20.0, patience=patience)
    return Scale(soak=False, leads=leads, repeats=1, outage_seconds=5.0, rate=25.0, patience=patience)


@pytest.fixture(scope="package")
def scale() -> Scale:
    return scale_from_env()


@pytest.fixture(scope="package")
async def stack() -> AsyncIterator[FaultStack]:
    # Not under pytest's basetemp, which other runs rotate away: the workers' logs outlive the run.
    running = FaultStack(Path(tempfile.mkdtemp(prefix="leadpipe-faults-")))
    try:
        await running.start()
        yield running
    finally:
        running.close()


def new_run(stack: FaultStack, scale: Scale, label: str, extra_keys: tuple[bytes, ...] = ()) -> Run:
    return Run(
        label,
        bootstrap=stack.bootstrap,
        capture_url=stack.capture_url,
        api_key=API_KEY,
        mailbox=stack.mailbox.deliveries,
        crm=stack.crm.deliveries,
        leads=scale.leads,
        rate=scale.rate,
        patience=scale.patience,
        extra_keys=extra_keys,
    )


def record(report: Report) -> None:
    """Keep the figures for the summary printed after the run (and print them now, for -s)."""
    REPORTS.append(report)
    print("\n" + report.details())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("fault test figures")
        for report in REPORTS:
            terminalreporter.write_line(report.summary())
