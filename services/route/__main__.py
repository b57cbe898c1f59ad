"""`python -m services.route` runs the route worker."""

from __future__ import annotations

from services.route.app import create_app
from services.route.settings import RouteSettings
from services.runtime.stream_app import run_worker


def main() -> None:
    run_worker(create_app(RouteSettings()))


if __name__ == "__main__":
    main()
