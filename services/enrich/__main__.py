"""`python -m services.enrich` runs the enrich worker."""

from __future__ import annotations

from services.enrich.app import create_app
from services.enrich.settings import EnrichSettings
from services.runtime.stream_app import run_worker


def main() -> None:
    run_worker(create_app(EnrichSettings()))


if __name__ == "__main__":
    main()
