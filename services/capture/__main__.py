"""`python -m services.capture` runs capture's HTTP server."""

from __future__ import annotations

from aiohttp import web

from services.capture.app import create_app
from services.capture.settings import CaptureSettings
from services.runtime import logs


def main() -> None:
    settings = CaptureSettings()
    logs.configure(settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
