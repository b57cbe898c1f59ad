"""The `Case` protocol and the registry: a new benchmark is one small module that registers itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class BenchContext:
    """What every case gets: the running broker and Redis, the workload size and the shared, preloaded
    input of the passthroughs; the service cases make their own topics (see `suffix`)."""

    bootstrap_servers: str
    events: int
    partitions: int
    input_topic: str
    run_id: str
    broker_pid: int | None = None
    case_timeout: float = 600.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_dir: Path = Path("bench/results/logs")
    work_dir: Path = Path(".leadpipe/bench")
    background_rate: float = 1000.0
    hand_raisers: int = 100
    state_leads: tuple[int, ...] = ()
    profile_seconds: float = 0.0
    profile_gil: bool = False  # py-spy samples only the thread holding the interpreter lock

    def suffix(self, case: str) -> str:
        """The topic suffix of one case's run: its topics, groups and Redis keys are its own."""
        return f".bench-{case.replace('.', '-')}-{self.run_id}"


@dataclass
class CaseResult:
    """One measured run of one case. `figures` are what the rate column cannot say (latency
    percentiles, bytes per lead, recovery times), shown in a second table; `extra` is detail for the
    JSON document only."""

    case: str
    description: str
    events: int
    seconds: float
    cpu_seconds: float
    broker_cpu_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events if self.events else 0.0


@runtime_checkable
class Case(Protocol):
    """A benchmark case. `unavailable()` says why it cannot run here (a missing extra), else None."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def unavailable(self) -> str | None: ...

    async def run(self, ctx: BenchContext) -> CaseResult | list[CaseResult]: ...


class OwnInput:
    """Base of a case that writes its own input (not the run's shared preloaded topic) and needs no
    optional extra, so it can always run."""

    uses_shared_input: ClassVar[bool] = False

    def unavailable(self) -> str | None:
        return None


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
