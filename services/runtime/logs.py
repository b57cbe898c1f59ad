"""Logging set-up: quiet framework loggers on the hot path, plain lines without personal data."""

from __future__ import annotations

import logging

# faust logs every published message at debug level; building those records cost ~15% of a worker.
HOT_PATH_LOGGERS = ("faust", "mode", "aiokafka", "kafka")


def configure(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)
    framework_level = numeric if numeric <= logging.DEBUG else logging.WARNING
    for name in HOT_PATH_LOGGERS:
        logging.getLogger(name).setLevel(framework_level)
