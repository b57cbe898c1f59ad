"""`python -m services.nurture` runs the nurture worker (with the mailer agent unless disabled)."""

from __future__ import annotations

from services.nurture.app import create_app
from services.nurture.settings import NurtureSettings
from services.runtime.stream_app import run_worker


def main() -> None:
    run_worker(create_app(NurtureSettings()))


if __name__ == "__main__":
    main()
