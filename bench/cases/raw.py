"""Reference line: plain aiokafka, `getmany` -> transform -> `send` in batches. The client's limit."""

from __future__ import annotations

from dataclasses import dataclass

from bench.case import BenchContext, CaseResult, register
from bench.kafka import create_topics, produce
from bench.measure import measure_passthrough
from bench.records import enriched_stream, record
from bench.workers import raw, raw_score


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


@dataclass(frozen=True)
class RawScore:
    """Where faust is the limit: score's own per-record work (decode, domain, stage changes, state
    write) on the raw loop, over the same enriched records `service.score` reads."""

    name: str = "raw.score"
    description: str = "score's domain on the raw aiokafka loop (no faust)"

    def unavailable(self) -> str | None:
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        source = f"bench.raw-score-input.{ctx.run_id}"
        await create_topics(ctx.bootstrap_servers, [source], ctx.partitions)
        await produce(ctx.bootstrap_servers, source, (record(e) for e in enriched_stream(ctx.events)))
        return await measure_passthrough(
            ctx,
            case=self.name,
            description=self.description,
            module=raw_score.__name__,
            options=raw.DEFAULTS,
            source=source,
        )


register(RawAiokafka())
register(RawScore())
