"""Reference line: plain aiokafka, `getmany` -> transform -> `send` in batches. The client's limit."""

from __future__ import annotations

from dataclasses import dataclass

from bench.case import BenchContext, CaseResult, register
from bench.measure import measure_passthrough
from bench.workers import raw


@dataclass(frozen=True)
class RawAiokafka:
    name: str = "raw.aiokafka"
    description: str = "aiokafka `getmany` + `send`, batched"

    def unavailable(self) -> str | None:
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        return await measure_passthrough(
            ctx, case=self.name, description=self.description, module=raw.__name__, options=raw.DEFAULTS
        )


register(RawAiokafka())
