"""Logging set-up: quiet framework loggers on the hot path, plain lines without personal data."""

from __future__ import annotations

import logging

# faust logs every published message at debug level; building those records cost ~15% of a worker.
HOT_PATH_LOGGERS = ("faust", "mode", "aiokafka", "kafka")
# Their DEBUG lines print whole records (keys and values: e-mails, names): never below INFO, even
# when a service runs at DEBUG (found by tests/integration/test_privacy_pipeline.py).
PAYLOAD_LOGGERS = (
    "aiokafka.producer.producer",
    "faust.topics",
    "faust.transport.drivers.aiokafka",
    "faust.agents.agent",
)


def configure(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)
    framework_level = numeric if numeric <= logging.DEBUG else logging.WARNING
    for name in HOT_PATH_LOGGERS:
        logging.getLogger(name).setLevel(framework_level)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(framework_level, logging.INFO))
