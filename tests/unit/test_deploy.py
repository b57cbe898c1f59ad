"""Deployment files, checked statically (no Docker engine or cluster here) and with promtool."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.apps import build_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
SERVICES = {"capture": 8080, "enrich": 8081, "score": 8082, "route": 8083, "nurture": 8084}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False, timeout=60)


def test_prometheus_config_is_valid() -> None:
    result = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid_and_behave() -> None:
    checked = _promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{port}" for name, port in SERVICES.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "redis", "mailpit", "prometheus", "grafana", *SERVICES}
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    # Configured by environment alone, Kafka keeps its default log directory: not the volume's.
    assert [f"kafka-data:{kafka['environment']['KAFKA_LOG_DIRS']}"] == kafka["volumes"]
    for name in ("kafka", "redis", "mailpit", "prometheus", "grafana", *SERVICES):
        assert "healthcheck" in compose["services"][name], name


def test_compose_mail_goes_to_the_catching_smtp_server(compose: dict[str, Any]) -> None:
    """nurture's e-mails and route's SLA notices: never the container's own 127.0.0.1:1025."""
    for name in ("nurture", "route"):
        env = compose["services"][name]["environment"]
        prefix = name.upper()
        assert (env[f"{prefix}_SMTP_HOST"], env[f"{prefix}_SMTP_PORT"]) == ("mailpit", "1025"), name
    assert "1025:1025" in compose["services"]["mailpit"]["ports"]


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_compose_service_is_complete(compose: dict[str, Any], name: str, port: int) -> None:
    service = compose["services"][name]
    assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert importlib.util.find_spec(f"services.{name}") is not None, f"services/{name} does not exist yet"
    assert (ROOT / "services" / name / "__main__.py").exists()
    assert service["ports"] == [f"{port}:{port}"]
    env = service["environment"]
    prefix = name.upper()
    assert env[f"{prefix}_WEB_PORT"] == str(port)
    assert env[f"{prefix}_WEB_HOST"] == "0.0.0.0"
    assert env["LEADPIPE_BROKER_URL"] == "kafka://kafka:9092"
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_compose_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["depends_on"]["capture"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_every_file_compose_and_docker_refer_to_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile: {source}"


def _holds_tables(service: str) -> bool:
    """Whether the service keeps tables in memory (faust's memory store): their size grows with leads."""
    app = build_app(service)
    return bool(getattr(getattr(app, "service", app), "tables", []))


def test_kubernetes_manifests_validate() -> None:
    import kubernetes_validate

    documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "leadpipe.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]
        if _holds_tables(name):  # evicted first under memory pressure when above its request
            resources = container["resources"]
            assert resources["requests"]["memory"] == resources["limits"]["memory"], name
    partitions = int(
        next(d for d in documents if d["kind"] == "ConfigMap")["data"]["LEADPIPE_TOPIC_PARTITIONS"]
    )
    for hpa in (d for d in documents if d["kind"] == "HorizontalPodAutoscaler"):
        if hpa["metadata"]["name"] != "capture":
            assert hpa["spec"]["maxReplicas"] <= partitions, "workers beyond the partition count would idle"


def _development_secrets(settings: type[Any]) -> set[str]:
    """Environment variables of settings whose default is a development value anyone can read."""
    prefix = settings.model_config.get("env_prefix", "")
    return {
        f"{prefix}{name}".upper()
        for name, field in settings.model_fields.items()
        if "change-me" in str(getattr(field.default, "get_secret_value", lambda: "")())
    }


def test_kubernetes_sets_every_secret_the_services_default_for_development() -> None:
    """The signing keys and the salt have public defaults for `leadpipe dev`: a cluster running on
    them lets anyone forge tracking, unsubscribe and consent links. Each must come from a Secret, and
    the link keys capture checks from the same Secret keys nurture signs with."""
    from services.capture.settings import CaptureSettings
    from services.nurture.settings import NurtureSettings

    documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "leadpipe.yaml").read_text()))
    secrets = {d["metadata"]["name"]: d["stringData"] for d in documents if d["kind"] == "Secret"}
    sources: dict[str, dict[str, Any]] = {}  # service -> variable -> where it comes from
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        given: dict[str, Any] = {}
        for ref in container.get("envFrom", []):
            if "secretRef" in ref:
                given |= {name: ref["secretRef"]["name"] for name in secrets[ref["secretRef"]["name"]]}
        for variable in container.get("env", []):
            key = variable.get("valueFrom", {}).get("secretKeyRef")
            if key is not None:
                assert key["key"] in secrets[key["name"]], variable
                given[variable["name"]] = (key["name"], key["key"])
        sources[deployment["metadata"]["name"]] = given
    for service, settings in (("capture", CaptureSettings), ("nurture", NurtureSettings)):
        missing = _development_secrets(settings) - set(sources[service])
        assert not missing, f"{service} would run on development secrets: {sorted(missing)}"
    for key in ("TRACKING_SECRET", "CONSENT_SECRET"):
        assert sources["capture"][f"CAPTURE_{key}"] == sources["nurture"][f"NURTURE_{key}"]
    assert {"NURTURE_TRACKING_SECRET", "NURTURE_CONSENT_SECRET"} <= _development_secrets(NurtureSettings)
