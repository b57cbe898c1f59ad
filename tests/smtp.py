"""A real SMTP server (aiosmtpd) on a free local port, for the tests that watch the mailer deliver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller

from services.devstack.processes import free_port


@contextmanager
def local_smtp(handler: Any, port: int | None = None, **server: Any) -> Iterator[int]:
    """Serve `handler` (an aiosmtpd handler: handle_RCPT, handle_DATA, ...) and yield the port (a
    free one unless given: a test starts the server late on the port a service already uses);
    `server`: aiosmtpd's SMTP options (enable_SMTPUTF8=False: a server without it)."""
    port = free_port() if port is None else port
    controller = Controller(handler, hostname="127.0.0.1", port=port, **server)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
