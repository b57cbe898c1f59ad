"""Run `leadpipe dev` as a user does, from tests: a child process with its own ports and state."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.devstack.processes import port_is_free

# Below Linux's ephemeral range (32768+), so client sockets of earlier tests cannot hold these ports.
_PORT_RANGE = (20000, 32000)


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports (the dev stack puts its services at base, base+1, ...)."""
    for _ in range(200):
        base = random.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - size)
        if all(port_is_free(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no block of free ports found")


@dataclass
class Stack:
    process: subprocess.Popen[str]
    output: Path
    broker_port: int
    port_base: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def capture_url(self) -> str:
        return f"http://127.0.0.1:{self.port_base}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, needle: str, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted((self.output.parent / "state" / "logs").glob("*.log"))
        )
        raise AssertionError(f"{needle!r} not printed; output:\n{self.text()}\n{logs}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_stack(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Stack:
    """Start `leadpipe dev` on free ports with its own embedded Redis (REDIS_URL is dropped)."""
    port_base = free_port_block(6)
    broker_port = port_base + 5
    output = tmp_path / "dev.out"
    child_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    child_env.update(env or {})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "dev",
            "--broker-port",
            str(broker_port),
            "--port-base",
            str(port_base),
            "--state-dir",
            str(tmp_path / "state"),
            *extra,
        ],
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env,
    )
    return Stack(process, output, broker_port, port_base)


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live processes whose arguments or environment mention `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw or marker.encode() in environ:
            found.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return found
