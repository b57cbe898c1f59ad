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


async def over_score_input(ctx: BenchContext, case: str, description: str, *, module: str) -> CaseResult:
    """`module` on the raw loop over the enriched records `service.score` reads (`ctx.events`)."""
    source = f"bench.{case.replace('.', '-')}-input.{ctx.run_id}"
    await create_topics(ctx.bootstrap_servers, [source], ctx.partitions)
    await produce(ctx.bootstrap_servers, source, (record(e) for e in enriched_stream(ctx.events)))
    return await measure_passthrough(
        ctx, case=case, description=description, module=module, options=raw.DEFAULTS, source=source
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
        return await over_score_input(ctx, self.name, self.description, module=raw_score.__name__)


@dataclass(frozen=True)
class RawEnriched:
    """The reference passthrough over score's input: the client's limit at 2.4 KB a record, so
    `service.score`'s distance from raw aiokafka splits into what the record's size costs the client
    and what score does with it."""

    name: str = "raw.enriched"
    description: str = "aiokafka `getmany` + `send` over service.score's enriched records"

    def unavailable(self) -> str | None:
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        return await over_score_input(ctx, self.name, self.description, module=raw.__name__)


register(RawAiokafka())
register(RawScore())
register(RawEnriched())
