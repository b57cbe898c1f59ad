"""A second worker: score over the same backlog with one and with two workers in one group (4
partitions). Both cases write the backlog after the workers joined, so they compare like with like."""

from __future__ import annotations

from dataclasses import dataclass

from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.cases.services import WORKLOADS
from bench.service_run import run_service


@dataclass(frozen=True)
class ScoreWorkers(OwnInput):
    workers: int
    name: str
    description: str

    async def run(self, ctx: BenchContext) -> CaseResult:
        _, workload = WORKLOADS["score"]
        return await run_service(
            ctx,
            case=self.name,
            description=self.description,
            workload=workload,
            workers=self.workers,
            produce_after_ready=True,
        )


register(ScoreWorkers(1, "scale.score.1w", "score, 1 worker, backlog written after the join"))
register(ScoreWorkers(2, "scale.score.2w", "score, 2 workers in one group, 4 partitions"))
