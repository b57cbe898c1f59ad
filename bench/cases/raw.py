"""Reference line: plain aiokafka, `getmany` -> transform -> `send` in batches. The client's limit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.case import BenchContext, CaseResult, register
from bench.kafka import create_topics, produce
from bench.measure import measure_passthrough
from bench.records import Record, enriched_stream, interactions, record
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


async def over_records(
    ctx: BenchContext, case: str, description: str, *, module: str, records: Iterable[Record]
) -> CaseResult:
    """`module` on the raw loop over `records` on a topic of the case's own."""
    source = f"bench.{case.replace('.', '-')}-input.{ctx.run_id}"
    await create_topics(ctx.bootstrap_servers, [source], ctx.partitions)
    await produce(ctx.bootstrap_servers, source, records)
    return await measure_passthrough(
        ctx, case=case, description=description, module=module, options=raw.DEFAULTS, source=source
    )


async def over_score_input(ctx: BenchContext, case: str, description: str, *, module: str) -> CaseResult:
    """`module` on the raw loop over the enriched records `service.score` reads (`ctx.events`)."""
    score_input = (record(e) for e in enriched_stream(ctx.events))
    return await over_records(ctx, case, description, module=module, records=score_input)


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


@dataclass(frozen=True)
class RawInteractions:
    """The reference passthrough over the pipeline's input: `pipeline.stream`'s interactions (as
    capture makes them from the demo traffic, about 670 bytes) through the bare client. With
    `raw.enriched` it gives each throughput case a reference on its own records, a ratio steadier
    across hosts than the 250-byte line's (docs/performance.md, twenty-first pass)."""

    name: str = "raw.interactions"
    description: str = "aiokafka `getmany` + `send` over pipeline.stream's interactions"

    def unavailable(self) -> str | None:
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        pipeline_input = (record(i) for i in interactions(ctx.events))
        return await over_records(
            ctx, self.name, self.description, module=raw.__name__, records=pipeline_input
        )


register(RawAiokafka())
register(RawScore())
register(RawEnriched())
register(RawInteractions())
