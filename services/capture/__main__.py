"""`python -m services.capture` runs capture's HTTP server."""

from __future__ import annotations

from aiohttp import web

from services.capture.app import create_app
from services.capture.keys import METRICS
from services.capture.settings import CaptureSettings
from services.runtime import logs
from services.runtime.heap import HeapFreezer


def main() -> None:
    settings = CaptureSettings()
    logs.configure(settings.log_level)
    app = create_app(settings)
    if settings.gc_freeze:
        freeze = HeapFreezer(app[METRICS].frozen_objects, collect=True)  # before it serves anyone

        async def freeze_heap(app: web.Application) -> None:
            freeze()

        app.on_startup.append(freeze_heap)
    web.run_app(
        app,
        host=settings.web_host,
        port=settings.web_port,
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
