"""Each service's app built from its default settings (nothing connects), for the tests that read
what a service declares: its metrics registry, its tables."""

from __future__ import annotations

import importlib
from typing import Any


def build_app(service: str) -> Any:
    """`services.<service>.app.create_app` with the service's settings class at its defaults."""
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_class = next(
        value
        for name, value in vars(settings_module).items()
        if name.endswith("Settings")
        and isinstance(value, type)
        and value.__module__ == settings_module.__name__
    )
    return app_module.create_app(settings_class())
