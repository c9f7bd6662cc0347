"""The local stack: the four services as processes on 127.0.0.1, sharing one store and one weights folder.

`inspatio up` runs it until Ctrl-C; tests start it on free ports. Each service is started with its
own INSPATIO_* environment and is ready when its gRPC health check says SERVING *and* the socket
answering on its port belongs to the process this stack started (/proc), so a stack never reports
ready on another stack's services. On the well-known ports a stack also holds a lock file for its
whole life: a second `inspatio up` started at the same moment fails at once instead of racing for
the ports. With `supervise`, children that die are restarted (supervisor.py). The stack is plaintext
on loopback: the TLS variables of the caller's environment (meant for a remote coordinator, say) are
not passed on to its services.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import envvars
from .rpc.bootstrap import DEFAULT_PORTS
from .rpc.channels import ClientTLS, open_channel
from .supervisor import RestartPolicy, Supervisor, describe_exit

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


def owns_listening_port(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds the socket listening on TCP `port` (Linux /proc); None where /proc
    cannot tell (another OS), so callers fall back to trusting the health check."""
    inodes = set()
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(table.is_file() for table in tables):
        return None
    for table in tables:
        for line in table.read_text().splitlines()[1:] if table.is_file() else []:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # the process is gone (or not ours to read)
        return False
    return any(_link(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed since the folder was listed
        return ""


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


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ServiceFailed(RuntimeError):
    pass


@dataclass
class LocalStack:
    store_url: str
    weights_dir: Path
    default_ports: bool = True  # the well-known ports (PortBusy if one is taken), else random free ones
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)  # per service, over extra_env (e.g. CUDA_VISIBLE_DEVICES)
    supervise: bool = False  # restart children that die (supervisor.py); `inspatio up` and `run` do
    model_version: str = "v1"  # the release the generator serves (INSPATIO_MODEL_VERSION); jobs of the other are refused
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    report: Callable[[str], None] = _report  # where the supervisor says what it does
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)  # time.monotonic() of each child's start
    held: set[str] = field(default_factory=set)  # services stopped on purpose: not restarted
    lock: threading.RLock = field(default_factory=threading.RLock)
    supervisor: Supervisor | None = None
    _ports_lock: IO | None = None
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    metrics_addresses: dict[str, str] = field(default_factory=dict)

    def _lock_default_ports(self) -> None:
        """Hold a lock named after the coordinator's port for the stack's life: of two stacks started
        together on the well-known ports, the second fails here rather than half-starting."""
        port = DEFAULT_PORTS["coordinator"][0]
        try:
            handle = open(Path(tempfile.gettempdir()) / f"inspatio-stack-{port}.lock", "a+")
        except OSError:  # e.g. another user's lock file: the port ownership check still protects
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise PortBusy(f"the well-known ports ({HOST}:{port} and up) are in use by another `inspatio up` (pid {holder}), "
                           f"starting or running; stop it first, or use it") from None  # fmt: skip
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._ports_lock = handle

    def _ports(self, name: str) -> tuple[int, int]:
        if not self.default_ports:
            # distinct from the ports already given out: the kernel may hand a just-closed probe's port
            # to the next probe, and two services of one stack on one port fail to start
            taken = {int(a.rpartition(":")[2]) for a in (*self.addresses.values(), *self.metrics_addresses.values())}
            ports: list[int] = []
            while len(ports) < 2:
                if (port := free_port()) not in taken:
                    taken.add(port)
                    ports.append(port)
            return ports[0], ports[1]
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
        if self.default_ports:
            self._lock_default_ports()  # the ports were free a moment ago; now they are ours
        base = {envvars.SHARED_GPU.name: "1" if self.one_gpu else "0",  # the caller's environment may say otherwise
                **inherited_environment(os.environ), envvars.STORE.name: self.store_url, envvars.WEIGHTS.name: str(self.weights_dir),
                envvars.CAPTION_ADDRESS.name: self.addresses["caption"],
                envvars.DEPTHRENDER_ADDRESS.name: self.addresses["depthrender"],
                **self._generator_env(), **self.extra_env}  # fmt: skip
        try:
            for name in SERVICES:
                self._envs[name] = {**base, **self.service_env.get(name, {}), envvars.GRPC_ADDRESS.name: self.addresses[name],
                                    envvars.METRICS_ADDRESS.name: self.metrics_addresses[name]}  # fmt: skip
                self.spawn(name)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        if self.supervise:
            self.supervisor = Supervisor(self, self.restart_policy, self.report).start()
        return self

    def _generator_env(self) -> dict[str, str]:
        """The generator serves `model_version`; the coordinator routes that version's jobs to it, and no other."""
        by_version = {"v1": envvars.GENERATOR_ADDRESS.name, "v1_5": envvars.GENERATOR_V1_5_ADDRESS.name}
        if self.model_version not in by_version:
            raise ValueError(f"model_version {self.model_version!r}: choose from {tuple(by_version)}")
        return {envvars.MODEL_VERSION.name: self.model_version,
                **{name: self.addresses["generator"] if version == self.model_version else "" for version, name in by_version.items()}}

    @property
    def one_gpu(self) -> bool:
        """Whether the GPU services see the same GPU(s): no service is given devices of its own."""
        placements = {self.service_env.get(name, {}).get("CUDA_VISIBLE_DEVICES") for name in STAGE_SERVICES}
        return len(placements) == 1

    def spawn(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else subprocess.DEVNULL
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.main"], env=self._envs[name], stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],  # the repository (services/ lives there)
        )  # fmt: skip
        self.started_at[name] = time.monotonic()

    @property
    def failure(self) -> str | None:
        """Why the supervisor gave up on the stack (None while it has not)."""
        return self.supervisor.failure if self.supervisor else None

    def serving(self, name: str) -> bool:
        """The service answers SERVING, from the socket of the process this stack started."""
        return health(self.addresses[name]) == "SERVING" and self._owns_port(name) is not False

    def _owns_port(self, name: str) -> bool | None:
        return owns_listening_port(self.processes[name].pid, int(self.addresses[name].rpartition(":")[2]))

    def wait_ready(self, timeout: float, names: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(names)
        while waiting:
            for name in list(waiting):
                process = self.processes[name]
                if process.poll() is not None:
                    raise ServiceFailed(f"the {name} service exited ({describe_exit(process.returncode)})" + self.last_log_line(name))
                if health(self.addresses[name]) != "SERVING":
                    continue
                if self._owns_port(name) is False and process.poll() is None:
                    raise ServiceFailed(f"{self.addresses[name]} answers health checks, but not from the {name} service this "
                                        f"stack started (pid {process.pid}): another stack holds the port" + self.last_log_line(name))  # fmt: skip
                waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"services not ready after {timeout:.0f} s: {sorted(waiting)}")
            time.sleep(0.2)

    def last_log_line(self, name: str) -> str:
        """The service's last log line (a failed start logs its cause last), and where the log is."""
        if self.log_dir is None:
            return ""
        log = self.log_dir / f"{name}.log"
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
        return (f": {_log_message(lines[-1])}" if lines else "") + f" (log: {log})"

    def stop_service(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one service on purpose: the supervisor leaves it stopped until `restart_service`."""
        with self.lock:
            self.held.add(name)
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
        with self.lock:
            self.spawn(name)
            self.held.discard(name)
        self.wait_ready(timeout, (name,))

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()  # first: what stops next is not to be restarted
        for name in reversed(list(self.processes)):  # the coordinator first: it stops sending work
            self.stop_service(name)
        if self._ports_lock is not None:
            self._ports_lock.close()  # releases the lock
            self._ports_lock = None

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
