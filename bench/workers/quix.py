"""The Quix Streams passthrough worker (needs the bench extra)."""

from __future__ import annotations

import logging

from bench import worker_args
from bench.workload import transform


def passthrough(args: worker_args.WorkerArgs) -> None:
    """Raw bytes in and out with the same transform as the other cases, so only the framework differs."""
    from quixstreams import Application

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        loglevel="WARNING",
        **args.options,
    )
    source = app.topic(args.source, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.sink, key_serializer="bytes", value_serializer="bytes")
    frame = app.dataframe(source)
    frame = frame.apply(transform)
    frame.to_topic(sink)
    app.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    passthrough(worker_args.parse())
