"""Every Grafana panel's query is valid PromQL and names only metrics the services really export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(leadpipe_[a-z0-9_]+)\b")
# Series Prometheus makes itself, not the services.
PROMETHEUS_SERIES = {"up"}


def _queries() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _series_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for metric in registry.collect():
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        elif metric.type == "histogram":
            names.update(f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(metric.name)
    return names


def _registry_of(service: str) -> CollectorRegistry:
    """Build the service's app from default settings (nothing connects) and take its registry."""
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_class = next(
        value
        for name, value in vars(settings_module).items()
        if name.endswith("Settings") and name != "ServiceSettings" and isinstance(value, type)
    )
    app: Any = app_module.create_app(settings_class())
    if service == "capture":
        from services.capture.app import METRICS

        registry: CollectorRegistry = app[METRICS].registry
        return registry
    service_object = getattr(app, "service", app)
    return service_object.metrics.registry  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    names: set[str] = set()
    for service in ("capture", "enrich", "score", "route", "nurture"):
        if (ROOT / "services" / service / "app.py").exists():
            names |= _series_names(_registry_of(service))
    return names


def test_there_are_two_dashboards_with_panels() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"Pipeline health", "Lead funnel"}
    assert len(_queries()) >= 20


@pytest.mark.parametrize(("dashboard", "title", "expr"), _queries(), ids=lambda v: str(v)[:60])
def test_panel_metrics_are_exported(exported: set[str], dashboard: str, title: str, expr: str) -> None:
    used = set(METRIC.findall(expr))
    assert used or PROMETHEUS_SERIES & set(re.findall(r"\b\w+\b", expr)), f"{title}: no metric"
    missing = used - exported
    assert not missing, f"{dashboard} / {title}: no service exports {sorted(missing)}"


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"panel:{i}", "expr": expr} for i, (_, _, expr) in enumerate(_queries())
                ],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
