"""The `Case` protocol and the registry: a new benchmark is one small module that registers itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class BenchContext:
    """What every case gets: the running broker, the workload size and the shared, preloaded input."""

    bootstrap_servers: str
    events: int
    partitions: int
    input_topic: str
    run_id: str
    broker_pid: int | None = None
    case_timeout: float = 600.0


@dataclass
class CaseResult:
    """One measured run of one case; `extra` carries case-specific figures (settings, percentiles)."""

    case: str
    description: str
    events: int
    seconds: float
    cpu_seconds: float
    broker_cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events if self.events else 0.0


@runtime_checkable
class Case(Protocol):
    """A benchmark case. `unavailable()` says why it cannot run here (a missing extra), else None."""

    name: str
    description: str

    def unavailable(self) -> str | None: ...

    async def run(self, ctx: BenchContext) -> CaseResult: ...


REGISTRY: dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.name in REGISTRY:
        raise ValueError(f"benchmark case {case.name!r} registered twice")
    REGISTRY[case.name] = case
    return case


def select(names: Iterable[str], only: str | None) -> list[str]:
    """Case names chosen by `--only a,b`: an entry picks a case by exact name or by `prefix.` family."""
    ordered = list(names)
    if not only:
        return ordered
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [n for n in ordered if any(n == w or n.startswith(f"{w}.") for w in wanted)]
    unknown = [w for w in wanted if not any(n == w or n.startswith(f"{w}.") for n in ordered)]
    if unknown:
        raise ValueError(f"unknown benchmark case(s) {unknown}; known: {ordered}")
    return chosen
