"""faust's aiokafka transport with the consumer's fetch wait taken from settings.

faust creates its worker consumer with `fetch_max_wait_ms=1500` and no way to change it. Kafka
answers a fetch as soon as data arrives, but Tansu holds a fetch over several partitions for the
whole wait: with faust's value every hop of the pipeline waited about 0.9 s (docs/performance.md).
`LeadpipeApp` uses this transport, so `LEADPIPE_FETCH_MAX_WAIT_MS` applies to every worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by AIOKafkaConsumer.start() for its fetcher
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class LeadpipeApp(faust.App):
    """A faust app whose consumer waits at most `fetch_max_wait_ms` for data."""

    fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
