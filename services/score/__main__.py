"""`python -m services.score` runs the score worker."""

from __future__ import annotations

from services.runtime.stream_app import run_worker
from services.score.app import create_app
from services.score.settings import ScoreSettings


def main() -> None:
    run_worker(create_app(ScoreSettings()))


if __name__ == "__main__":
    main()
