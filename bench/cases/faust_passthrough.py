"""Reference lines: a bare faust passthrough agent on leadpipe's StreamService, in several variants.

Each variant is one set of knobs, so the table shows which faust settings matter:
`send` awaits every send; `send_soon` hands records to the producer buffer; `take` batches with
`take_events`; `tuned` adds bigger stream buffers, polls and producer batches. `send.info-logs` leaves
faust's loggers at INFO, as a worker did before `services.runtime.logs` quieted them. Every variant
runs on leadpipe's fetch loop (services/runtime/faust_transport.py, item 5) but `tuned.stock-fetch`,
which puts faust's own back: the two lines measure docs/upstream's patch in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.case import BenchContext, CaseResult, register
from bench.measure import measure_passthrough

PRODUCER: dict[str, Any] = {"producer_linger": 0.005, "producer_max_batch_size": 256 * 1024}
CONSUMER: dict[str, Any] = {"stream_buffer_maxsize": 16384, "broker_max_poll_records": 2000}
TUNED_APP: dict[str, Any] = {**CONSUMER, **PRODUCER}


@dataclass(frozen=True)
class FaustPassthrough:
    name: str
    description: str
    mode: str = "send"
    log_level: str = "WARNING"
    batch: int = 2000
    app: dict[str, Any] = field(default_factory=dict)
    stock_fetch_loop: bool = False  # faust's `_drain_messages` instead of leadpipe's

    def unavailable(self) -> str | None:
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        options = {
            "mode": self.mode,
            "log_level": self.log_level,
            "batch": self.batch,
            "app": self.app,
            "stock_fetch_loop": self.stock_fetch_loop,
        }
        return await measure_passthrough(
            ctx, case=self.name, description=self.description, module="bench.workers.faust", options=options
        )


for variant in (
    FaustPassthrough("faust.send", "faust agent, awaited `send` per event"),
    FaustPassthrough(
        "faust.send.info-logs", "faust agent, awaited `send`, faust loggers at INFO", log_level="INFO"
    ),
    FaustPassthrough("faust.send_soon", "faust agent, `send_soon` per event", mode="send_soon"),
    FaustPassthrough("faust.take", "faust `take_events(2000)` + `send_soon`", mode="take"),
    FaustPassthrough(
        "faust.send.producer", "awaited `send`, producer linger 5 ms + 256 KiB batches", app=PRODUCER
    ),
    FaustPassthrough(
        "faust.send_soon.producer",
        "`send_soon`, producer linger 5 ms + 256 KiB batches",
        mode="send_soon",
        app=PRODUCER,
    ),
    FaustPassthrough(
        "faust.take.consumer",
        "`take_events` + `send_soon`, buffer 16384, poll 2000",
        mode="take",
        app=CONSUMER,
    ),
    FaustPassthrough(
        "faust.tuned", "`take_events` + `send_soon` + tuned settings", mode="take", app=TUNED_APP
    ),
    FaustPassthrough(
        "faust.tuned.stock-fetch",
        "same as faust.tuned on faust's own fetch loop (one `wait_first` per record)",
        mode="take",
        app=TUNED_APP,
        stock_fetch_loop=True,
    ),
):
    register(variant)
