"""`inspatio up` supervised: of two started at once on the well-known ports only one ever says ready;
a service killed with SIGKILL is restarted and the console says so; a service that keeps dying is
given up on, loudly. Real processes throughout (tiny weights, CPU)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspatio_world import envvars
from inspatio_world.stack import LocalStack, health, owns_listening_port
from inspatio_world.supervisor import RestartPolicy

UP_TIMEOUT_S = 300


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPATIO_")}
    return {**env, "INSPATIO_CACHE_DIR": str(cache), envvars.DEVICE.name: "cpu"}


def _wait_for(path: Path, pattern: str, timeout: float, process: subprocess.Popen | None = None) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {pattern!r} within {timeout} s in:\n{path.read_text()}")


@pytest.fixture(scope="module")
def ups(tmp_path_factory, tiny_weights):
    """Two `inspatio up` started at the same moment, one cache folder each: (output file, process) pairs."""
    root = tmp_path_factory.mktemp("ups")
    started = []
    for name in ("a", "b"):
        (root / name).mkdir()
        out = root / f"{name}.out"
        process = subprocess.Popen([sys.executable, "-m", "inspatio_world.cli", "up", "--weights", str(tiny_weights.root)],
                                   cwd=root / name, env=_env(root / name / "cache"), stdout=out.open("w"),
                                   stderr=subprocess.STDOUT)  # fmt: skip
        started.append((out, process))
    yield started
    for _, process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)


@pytest.fixture(scope="module")
def winner(ups):
    """The `up` that became ready (the other must have failed without saying ready)."""
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        ready = [(out, p) for out, p in ups if "ready:" in out.read_text()]
        ended = [(out, p) for out, p in ups if p.poll() is not None]
        if len(ready) + len(ended) == 2 or len(ended) == 2:
            break
        time.sleep(0.5)
    return ready, ended


def test_a_second_up_started_at_once_fails_clearly_and_never_says_ready(winner):
    ready, ended = winner
    assert len(ready) == 1 and len(ended) == 1, [out.read_text() for out, _ in ready + ended]
    out, process = ended[0]
    text = out.read_text()
    assert process.returncode != 0
    assert "ready" not in text
    assert "error: " in text and "127.0.0.1:50051" in text and "in use" in text, text
    assert "Traceback" not in text


def test_a_killed_service_is_restarted_and_the_console_says_so(winner):
    (out, process), = winner[0]
    pid = int(_wait_for(out, r"depthrender .*pid (\d+)", 5).group(1))
    assert owns_listening_port(pid, 50062)  # the stack verified its own process answers there
    os.kill(pid, signal.SIGKILL)
    _wait_for(out, r"supervisor: the depthrender service stopped \(killed by SIGKILL\) after \d+ s.*restarting it in 1 s", 15)
    back = _wait_for(out, r"supervisor: the depthrender service is back \(pid (\d+)\)", UP_TIMEOUT_S)
    new_pid = int(back.group(1))
    assert new_pid != pid and owns_listening_port(new_pid, 50062)
    assert health("127.0.0.1:50062") == "SERVING"
    assert process.poll() is None  # the stack kept running all along


def test_a_service_that_keeps_dying_is_given_up_on_loudly(tmp_path, tiny_weights):
    messages: list[str] = []
    policy = RestartPolicy(first_delay_s=0.2, max_delay_s=0.5, max_quick_failures=2)
    stack = LocalStack((tmp_path / "store").as_uri(), tiny_weights.root, default_ports=False, log_dir=tmp_path,
                       extra_env={envvars.DEVICE.name: "cpu"}, supervise=True, restart_policy=policy,
                       report=messages.append)  # fmt: skip
    with stack:
        port = int(stack.addresses["caption"].rpartition(":")[2])
        stack.processes["caption"].kill()
        stack.processes["caption"].wait()
        with socket.socket() as squatter:  # takes the port: every restart fails to bind
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            assert stack.supervisor.gave_up.wait(UP_TIMEOUT_S), messages
    assert stack.failure.startswith("the caption service died 3 times in a row"), stack.failure
    assert "giving up" in messages[-1]
    restarts = [m for m in messages if "restarting it in" in m]
    assert len(restarts) == 2 and "killed by SIGKILL" in restarts[0] and "exit status" in restarts[1], messages
    assert "bind" in restarts[1].lower() or "address" in restarts[1].lower(), restarts[1]  # its last log line says why


def test_port_ownership_is_read_from_proc(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert owns_listening_port(os.getpid(), port) is True
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert owns_listening_port(other.pid, port) is False
        finally:
            other.kill()
            other.wait()
