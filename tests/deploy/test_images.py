"""deploy/docker: what can be checked without a Docker engine (none runs here, and none is needed).

The Dockerfile's structure: one target per role, each starting its service the same way, as a non-root
user, with no secrets, from sources that exist and that the build context lets through. Then each
role's entry point is started exactly as its image starts it, with the image's environment: only the
container's paths and ports are swapped for local ones (and the device for the CPU). It must report
SERVING, list its service through reflection, serve /metrics, and exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.rpc.bootstrap import DEFAULT_PORTS
from inspatio_world.stack import HOST, free_port, health

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "deploy" / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
SERVICES = {
    "caption": "inspatio.world.v1.CaptionService",
    "depthrender": "inspatio.world.v1.DepthRenderService",
    "generator": "inspatio.world.v1.GeneratorService",
    "coordinator": "inspatio.world.v1.CoordinatorService",
}
GPU_ROLES = ("caption", "depthrender", "generator")
UID = "10001"
START_TIMEOUT_S = 120.0


# --- a small Dockerfile reader ------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, rest of the line)


def read_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages by name (continuation lines joined, comments dropped)."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in filter(str.strip, text.splitlines()):
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            current = stages[words[2]] = Stage(words[2], words[0])
        elif current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            current.instructions.append((keyword, rest))
    return global_args, stages


def chain(stages: dict[str, Stage], name: str, args: dict[str, str] | None = None) -> list[Stage]:
    """The stage and the stages it is built FROM, base first; `${ARG}` in a FROM takes the global ARG's
    default, or its value in `args` (a --build-arg)."""
    global_args, _ = read_dockerfile()
    values = {**global_args, **(args or {})}
    found = []
    while name in stages:
        found.insert(0, stages[name])
        name = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], stages[name].base)
    return found


def instructions(stages: dict[str, Stage], target: str, keyword: str) -> list[str]:
    return [rest for stage in chain(stages, target) for kw, rest in stage.instructions if kw == keyword]


def image_env(stages: dict[str, Stage], target: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in instructions(stages, target, "ENV"):
        for pair in shlex.split(rest):
            key, sep, value = pair.partition("=")
            assert sep, f"use ENV KEY=VALUE: {rest}"
            env[key] = value
    return env


def exec_form(stages: dict[str, Stage], target: str, keyword: str) -> list[str]:
    forms = instructions(stages, target, keyword)
    assert forms, f"{target} has no {keyword}"
    return json.loads(forms[-1])  # exec form (JSON): no shell between tini and the service


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return read_dockerfile()


# --- structure ----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", SERVICES)
def test_each_role_runs_its_service_under_tini(dockerfile, role):
    _, stages = dockerfile
    assert role in stages, f"no target {role!r}"
    assert exec_form(stages, role, "CMD") == ["python", "-m", f"services.{role}.main"]
    assert (REPO / "services" / role / "main.py").is_file()
    assert exec_form(stages, role, "ENTRYPOINT") == ["/usr/bin/tini", "--"]
    assert any(re.search(r"apt-get install .*\btini\b", run) for run in instructions(stages, role, "RUN"))


@pytest.mark.parametrize("role", SERVICES)
def test_each_role_runs_as_uid_10001(dockerfile, role):
    _, stages = dockerfile
    users = instructions(stages, role, "USER")
    assert users and users[-1] in (UID, f"{UID}:{UID}"), f"{role} runs as {users[-1] if users else 'root'}"
    assert any(f"useradd --uid {UID}" in run for run in instructions(stages, role, "RUN"))


@pytest.mark.parametrize("role", SERVICES)
def test_each_role_listens_on_all_interfaces_at_its_exposed_ports(dockerfile, role):
    _, stages = dockerfile
    env = image_env(stages, role)
    grpc_port, metrics_port = DEFAULT_PORTS[role]  # the ports the chart and the local stack use
    assert env["INSPATIO_GRPC_ADDRESS"] == f"0.0.0.0:{grpc_port}"
    assert env["INSPATIO_METRICS_ADDRESS"] == f"0.0.0.0:{metrics_port}"
    assert instructions(stages, role, "EXPOSE") == [f"{grpc_port} {metrics_port}"]


def test_gpu_roles_get_cuda_torch_and_weights_from_the_mount(dockerfile):
    _, stages = dockerfile
    for role in GPU_ROLES:
        names = [stage.name for stage in chain(stages, role)]
        assert "torch-cuda" in names and "torch-cpu" not in names, names
        env = image_env(stages, role)
        assert env["INSPATIO_WEIGHTS"] == "/weights"
        assert env["INSPATIO_DEVICE"] == "cuda"  # no silent fallback to the CPU in a GPU image
        assert env["HF_HUB_OFFLINE"] == "1"  # weights never come from the network
    coordinator = [stage.name for stage in chain(stages, "coordinator")]
    assert "torch-cpu" in coordinator and "torch-cuda" not in coordinator, coordinator
    assert any('pip install ${TORCH_CPU_PIP} "torch==${TORCH_VERSION}+cpu"' in run
               for run in instructions(stages, "coordinator", "RUN"))  # fmt: skip
    assert "INSPATIO_WEIGHTS" not in image_env(stages, "coordinator")


@pytest.mark.parametrize("role", SERVICES)
def test_each_role_installs_the_project_and_da3_without_its_dependencies(dockerfile, role):
    _, stages = dockerfile
    runs = instructions(stages, role, "RUN")
    assert any("pip install --no-deps -r requirements-da3.txt" in run for run in runs)
    assert any("pip install --no-deps -e ." in run for run in runs)
    # the build imports the role's entry module, so a missing dependency fails the build, not the pod
    assert any(re.search(rf"import [\w., ]*\bservices\.{role}\.main\b", run) for run in runs)


def test_real_builds_take_cpu_torch_from_pytorchs_cpu_index(dockerfile):
    global_args, _ = dockerfile
    assert global_args["TORCH_CPU_PIP"] == '"--index-url https://download.pytorch.org/whl/cpu"'
    assert global_args["GPU_TORCH"] == "cuda"


def test_gpu_roles_build_with_cpu_torch_for_the_image_test(dockerfile):
    """GPU_TORCH=cpu (make image-test): the GPU roles without the CUDA torch stage, flash-attn's skip too."""
    _, stages = dockerfile
    assert stages["gpu"].base == "torch-${GPU_TORCH}"
    for role in GPU_ROLES:
        names = [stage.name for stage in chain(stages, role, {"GPU_TORCH": "cpu"})]
        assert "torch-cpu" in names and "torch-cuda" not in names, names
    assert "torch-cuda" not in [stage.name for stage in chain(stages, "flash-attn-skip")]


def test_base_works_without_a_python_command(dockerfile):
    """A base bootstrapped from Debian's packages has `python3` only: `python` is the venv's, after it exists."""
    _, stages = dockerfile
    runs = [rest for keyword, rest in stages["base"].instructions if keyword == "RUN"]
    assert any("python3 -m venv /opt/venv" in run for run in runs)
    assert not any(re.search(r"(^|&&)\s*python\s", run.split("python3 -m venv")[0]) for run in runs)


def test_flash_attn_stage_switch_names_existing_stages(dockerfile):
    global_args, stages = dockerfile
    assert stages["flash-attn"].base == "flash-attn-${FLASH_ATTN}"
    assert global_args["FLASH_ATTN"] in ("fa4", "skip", "build")
    assert {"flash-attn-fa4", "flash-attn-skip", "flash-attn-build"} <= set(stages)


SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)


def test_no_secrets_in_the_images(dockerfile):
    global_args, stages = dockerfile
    names = set(global_args)
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword == "ENV":
                names |= {pair.partition("=")[0] for pair in shlex.split(rest)}
            elif keyword == "ARG":
                names.add(rest.partition("=")[0])
    assert not [name for name in names if SECRET_NAME.search(name)], names
    assert "INSPATIO_STORE" not in names  # the store (and its credentials) come from the deployment
    assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY", DOCKERFILE.read_text())


def test_copied_sources_exist_and_pass_the_build_context(dockerfile):
    _, stages = dockerfile
    ignore = [line.strip() for line in (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]  # fmt: skip
    assert ignore[0] == "*", "the context is an allow-list: .venv, .cache and .git stay out"
    allowed = {pattern[1:].rstrip("/") for pattern in ignore if pattern.startswith("!")}
    copied = set()
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword == "COPY" and not rest.startswith("--from"):
                copied |= set(rest.split()[:-1])
    assert copied >= {"pyproject.toml", "README.md", "requirements-da3.txt", "libs", "services", "traj"}, copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source in allowed, f"COPY {source}: Dockerfile.dockerignore keeps it out of the context"


IMAGE_TEST = DOCKER_DIR / "image-test"


def test_image_test_scripts_parse_and_bind_loopback_only():
    for name in ("run.sh", "base.sh"):
        script = IMAGE_TEST / name
        assert os.access(script, os.X_OK), name
        subprocess.run(["bash", "-n", str(script)], check=True)
    run = (IMAGE_TEST / "run.sh").read_text()
    assert "0.0.0.0" not in run and "INSPATIO_ALLOW_PLAINTEXT" not in run  # 127.0.0.1 only, no plaintext opt-in
    for needed in ("--read-only", "--network host", "/weights:ro", "GPU_TORCH=cpu", "INSPATIO_DEVICE=cpu",
                   "--signal TERM", "10001", "deploy/docker/build.sh"):  # fmt: skip
        assert needed in run, needed
    # a fixed path, not a served port: build arguments that change from run to run would void the layer cache
    assert "TORCH_CPU_PIP=--find-links=/tmp/torch-wheels" in run and "--volume=$TORCH_WHEELS:/tmp/torch-wheels:ro" in run
    assert re.search(r"^image-test:.*\n\t.*deploy/docker/image-test/run\.sh", (REPO / "Makefile").read_text(), re.M)
    compile_(IMAGE_TEST / "job.py")


def compile_(path: Path) -> None:
    compile(path.read_text(), str(path), "exec")


def test_build_script_builds_every_target():
    script = DOCKER_DIR / "build.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "deploy/docker/Dockerfile" in text and "--target" in text
    assert all(role in text for role in SERVICES)


# --- the entry points, as the images start them -------------------------------------------------
def _listed_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        return {service.name for response in stub.ServerReflectionInfo(iter([request]), timeout=10)
                for service in response.list_services_response.service}  # fmt: skip


def test_entry_points_start_the_right_services_and_stop_cleanly_on_sigterm(dockerfile, tmp_path):
    _, stages = dockerfile
    weights = write_tiny_weights(tmp_path / "weights")  # what the image finds mounted at /weights
    addresses = {role: f"{HOST}:{free_port()}" for role in SERVICES}
    # What a deployment provides (the chart sets these), then what differs from a container here.
    deployment = {"INSPATIO_STORE": f"file://{tmp_path / 'store'}", "INSPATIO_CAPTION_ADDRESS": addresses["caption"],
                  "INSPATIO_DEPTHRENDER_ADDRESS": addresses["depthrender"], "INSPATIO_GENERATOR_ADDRESS": addresses["generator"]}  # fmt: skip
    swapped = {"INSPATIO_WEIGHTS", "INSPATIO_COMPILE_CACHE", "INSPATIO_GRPC_ADDRESS", "INSPATIO_METRICS_ADDRESS",
               "INSPATIO_DEVICE", "PATH", "VIRTUAL_ENV"}  # fmt: skip
    host = {k: v for k, v in os.environ.items() if not k.startswith("INSPATIO_")}  # nothing of ours leaks in
    processes: dict[str, subprocess.Popen] = {}
    metrics: dict[str, str] = {}
    try:
        for role in SERVICES:
            env = image_env(stages, role)
            assert set(env) - swapped, f"{role}: the image sets nothing the test passes through"
            metrics[role] = f"{HOST}:{free_port()}"
            local = {"INSPATIO_GRPC_ADDRESS": addresses[role], "INSPATIO_METRICS_ADDRESS": metrics[role],
                     "INSPATIO_DEVICE": "cpu", "INSPATIO_COMPILE_CACHE": str(tmp_path / "compile-cache")}  # fmt: skip
            if "INSPATIO_WEIGHTS" in env:
                local["INSPATIO_WEIGHTS"] = str(weights.root)
            passed = {k: v for k, v in env.items() if k not in swapped}
            command = [sys.executable if word == "python" else word for word in exec_form(stages, role, "CMD")]
            log = (tmp_path / f"{role}.log").open("wb")
            processes[role] = subprocess.Popen(command, cwd=REPO, env={**host, **deployment, **passed, **local},
                                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = set(SERVICES)
        while waiting:
            for role in sorted(waiting):
                if processes[role].poll() is not None:
                    log = (tmp_path / f"{role}.log").read_text()[-3000:]
                    pytest.fail(f"{role} exited with {processes[role].returncode}:\n{log}")
                if health(addresses[role]) == "SERVING":
                    waiting.discard(role)
            assert time.monotonic() < deadline, f"not SERVING after {START_TIMEOUT_S:.0f} s: {sorted(waiting)}"
            time.sleep(0.2)
        for role, service in SERVICES.items():
            assert service in _listed_services(addresses[role]), role
            assert _listed_services(addresses[role]) & set(SERVICES.values()) == {service}, role
            exposition = urllib.request.urlopen(f"http://{metrics[role]}/metrics", timeout=5).read().decode()
            assert "inspatio_rpc_requests_total" in exposition, role
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {role: process.wait(30) for role, process in processes.items()}
        assert codes == dict.fromkeys(SERVICES, 0), codes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
