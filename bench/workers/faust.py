"""The faust passthrough worker: leadpipe's StreamService with one agent in the requested mode."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from bench import worker_args
from bench.workload import transform


def build(args: worker_args.WorkerArgs) -> Any:
    """The StreamService with one passthrough agent in the requested mode."""
    from services.devstack.processes import free_port
    from services.runtime.settings import ServiceSettings
    from services.runtime.stream_app import StreamService

    options = args.options
    settings = ServiceSettings(
        broker_url=f"kafka://{args.bootstrap}",
        topic_partitions=args.partitions,
        log_level=options.get("log_level", "WARNING"),
        web_port=free_port(),  # faust validates the port even with its web server off
    )
    if options.get("stock_fetch_loop"):
        use_stock_fetch_loop()
    service = StreamService(args.group, settings, web_enabled=False, **options.get("app", {}))
    source = service.topic(args.source)
    sink = service.topic(args.sink)
    mode = options.get("mode", "send")
    batch = int(options.get("batch", 2000))

    if mode == "send":

        @service.app.agent(source)
        async def passthrough(stream: Any) -> None:
            async for event in stream.events():
                await sink.send(key=event.key, value=transform(event.value))

    elif mode == "send_soon":

        @service.app.agent(source)
        async def passthrough_soon(stream: Any) -> None:
            async for event in stream.events():
                sink.send_soon(key=event.key, value=transform(event.value))

    elif mode == "take":

        @service.app.agent(source)
        async def passthrough_take(stream: Any) -> None:
            events: AsyncIterator[list[Any]] = stream.take_events(batch, within=0.01)
            async for chunk in events:
                for event in chunk:
                    sink.send_soon(key=event.key, value=transform(event.value))

    else:
        raise ValueError(f"unknown faust passthrough mode {mode!r}")
    return service


def use_stock_fetch_loop() -> None:
    """faust's own `_drain_messages` (one `wait_first` per record) in place of leadpipe's, in this
    worker process only: the reference line for docs/upstream's patch."""
    from faust.transport.consumer import Consumer

    from services.runtime import faust_transport

    faust_transport._Consumer._drain_messages = Consumer._drain_messages  # type: ignore[method-assign]


def main() -> None:
    from faust.worker import Worker

    from services.runtime import logs

    args = worker_args.parse()
    service = build(args)
    level = service.settings.log_level
    worker = Worker(service.app, loglevel=level, quiet=True)
    if level.upper() == "WARNING":
        logs.configure(level)
    else:
        logging.basicConfig(level=level)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
