"""The local stack: the four services as processes on 127.0.0.1, sharing one store and one weights folder.

`inspatio up` runs it until Ctrl-C; tests start it on free ports. Each service is started with its
own INSPATIO_* environment and is ready when its gRPC health check says SERVING. The stack is plaintext
on loopback: the TLS variables of the caller's environment (meant for a remote coordinator, say) are
not passed on to its services.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import envvars
from .rpc.bootstrap import DEFAULT_PORTS
from .rpc.channels import ClientTLS, open_channel

STAGE_SERVICES = ("caption", "depthrender", "generator")
SERVICES = (*STAGE_SERVICES, "coordinator")
HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20.0
# the stack's services serve and call each other in plaintext on 127.0.0.1: none of these reaches them
TLS_VARIABLES = tuple(var.name for var in (envvars.TLS_CERT, envvars.TLS_KEY, envvars.TLS_CLIENT_CA, envvars.TLS_CA,
                                           envvars.TLS_CLIENT_CERT, envvars.TLS_CLIENT_KEY, envvars.TLS_SERVER_NAME))  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def health(address: str, timeout: float = 1.0, tls: ClientTLS | None = None) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE of a service's overall health (`tls`: by default plaintext on
    loopback, TLS elsewhere; a failed TLS handshake is UNREACHABLE too)."""
    with open_channel(address, tls) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the stack's services inherit of the caller's environment: all but the TLS variables."""
    return {name: value for name, value in environ.items() if name not in TLS_VARIABLES}


def _log_message(line: str) -> str:
    """A service log line's message (services log JSON objects; anything else is shown as it is)."""
    try:
        return str(json.loads(line)["message"])
    except (ValueError, KeyError, TypeError):
        return line.strip()


class PortBusy(RuntimeError):
    pass


class ServiceFailed(RuntimeError):
    pass


@dataclass
class LocalStack:
    store_url: str
    weights_dir: Path
    default_ports: bool = True  # the well-known ports (PortBusy if one is taken), else random free ones
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    metrics_addresses: dict[str, str] = field(default_factory=dict)

    def _ports(self, name: str) -> tuple[int, int]:
        if not self.default_ports:
            return free_port(), free_port()
        ports = DEFAULT_PORTS[name]
        for port in ports:  # never drift to other ports: clients expect the well-known ones
            if not port_is_free(port):
                running = " (a service answers there: another `inspatio up`?)" if health(f"{HOST}:{port}") != "UNREACHABLE" else ""
                raise PortBusy(f"{HOST}:{port}, the {name} service's port, is in use{running}; stop what holds it first")
        return ports

    def start(self, timeout: float = 300.0) -> "LocalStack":
        for name in reversed(SERVICES):  # the coordinator's port first: the one users know
            grpc_port, metrics_port = self._ports(name)
            self.addresses[name] = f"{HOST}:{grpc_port}"
            self.metrics_addresses[name] = f"{HOST}:{metrics_port}"
        base = {**inherited_environment(os.environ), envvars.STORE.name: self.store_url, envvars.WEIGHTS.name: str(self.weights_dir),
                envvars.CAPTION_ADDRESS.name: self.addresses["caption"],
                envvars.DEPTHRENDER_ADDRESS.name: self.addresses["depthrender"],
                envvars.GENERATOR_ADDRESS.name: self.addresses["generator"], **self.extra_env}  # fmt: skip
        try:
            for name in SERVICES:
                self._envs[name] = {**base, envvars.GRPC_ADDRESS.name: self.addresses[name],
                                    envvars.METRICS_ADDRESS.name: self.metrics_addresses[name]}  # fmt: skip
                self._spawn(name)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else subprocess.DEVNULL
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.main"], env=self._envs[name], stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],  # the repository (services/ lives there)
        )  # fmt: skip

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(SERVICES)
        while waiting:
            for name in list(waiting):
                if self.processes[name].poll() is not None:
                    raise ServiceFailed(f"the {name} service exited with status {self.processes[name].returncode}" +
                                        self._last_log_line(name))  # fmt: skip
                if health(self.addresses[name]) == "SERVING":
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"services not ready after {timeout:.0f} s: {sorted(waiting)}")
            time.sleep(0.2)

    def _last_log_line(self, name: str) -> str:
        """The service's last log line (a failed start logs its cause last), and where the log is."""
        if self.log_dir is None:
            return ""
        log = self.log_dir / f"{name}.log"
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
        return (f": {_log_message(lines[-1])}" if lines else "") + f" (log: {log})"

    def stop_service(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart_service(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped service again, same ports and settings (e.g. after killing it in a test)."""
        self.stop_service(name)
        self._spawn(name)
        self.wait_ready(timeout)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):  # the coordinator first: it stops sending work
            self.stop_service(name)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
