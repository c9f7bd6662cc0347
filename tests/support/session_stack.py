"""The four real services as processes (LocalStack on 127.0.0.1) for live-session tests: tiny weights,
a local store, two tenants with bearer tokens, the generator's session limits set per test module.

Tiny weights make meaningless pictures, but every stage is the real code: Florence-2 captions, DA3
depth, the generator's RunSession rendering and generating each block. A 57-frame clip at 64x96 makes
5 blocks (the offline job's length for the "same numbers" comparison).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inspatio_world.client import write_sample_video
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.rpc.auth import token_digest
from inspatio_world.stack import LocalStack
from inspatio_world.store.local import LocalStore

from tests.support.stacks import local_stack

BUCKET = "inspatio-sessions"
# The one live-session stack test_session_coordinator and test_session_stack share (a stack's start is
# most of their cost): a replica holding one session at a time (the coordinator's "full generator"
# tests), 5 blocks a session (the offline job's length), and a long start grace: block 0 never starts
# before a test's first command sent right after `ready`, however loaded the machine.
SHARED_GENERATOR_ENV = {"INSPATIO_SESSION_MAX_BLOCKS": "5", "INSPATIO_MAX_SESSIONS": "1",
                        "INSPATIO_SESSION_START_GRACE_SECONDS": "10"}
CLIP_FRAMES, HEIGHT, WIDTH = 57, 64, 96  # 57 frames = 15 latents = 5 blocks
DATASET_KEY = "datasets/acme/clip.mp4"


@dataclass
class SessionStack:
    stack: LocalStack
    store: LocalStore  # the services' store, opened here too
    video: Path  # the 57-frame sample clip (also in the store at DATASET_KEY)
    tokens: dict[str, str]  # tenant -> bearer token
    logs: Path

    @property
    def address(self) -> str:
        return self.stack.addresses["coordinator"]

    def log(self, service: str) -> str:
        path = self.logs / f"{service}.log"
        return path.read_text(errors="replace") if path.is_file() else ""


@contextmanager
def session_stack(folder: Path, weights_folder: Path | None = None, *, tenant_limits: dict[str, dict] | None = None,
                  coordinator_env: dict[str, str] | None = None, **generator_env: str) -> Iterator[SessionStack]:  # fmt: skip
    """Start the stack in `folder` (store, logs, tenants file); `generator_env`: INSPATIO_* of the
    generator replica (INSPATIO_SESSION_MAX_BLOCKS, INSPATIO_MAX_SESSIONS, ...); `tenant_limits`:
    tenant -> limits of its tenants-file entry; `coordinator_env`: more INSPATIO_* of the coordinator."""
    weights = write_tiny_weights(weights_folder or folder / "weights")
    tokens = {name: f"{name}-{secrets.token_urlsafe(16)}" for name in ("acme", "bravo")}
    tenants = folder / "tenants.json"
    limits = tenant_limits or {}
    tenants.write_text(json.dumps({"tenants": [
        {"name": "acme", "token_sha256": [token_digest(tokens["acme"])], "input_prefixes": [f"s3://{BUCKET}/datasets/acme/"],
         **limits.get("acme", {})},
        {"name": "bravo", "token_sha256": [token_digest(tokens["bravo"])], **limits.get("bravo", {})},
    ]}))  # fmt: skip
    store = LocalStore(folder / "store", BUCKET)
    video = write_sample_video(folder / "clip.mp4", CLIP_FRAMES, HEIGHT, WIDTH)
    store.put_bytes(DATASET_KEY, video.read_bytes(), content_type="video/mp4")
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    with local_stack(f"file://{folder / 'store'}?bucket={BUCKET}", weights.root, default_ports=False, log_dir=logs,
                     extra_env={"INSPATIO_DEVICE": "cpu"},
                     service_env={"coordinator": {"INSPATIO_TENANTS_FILE": str(tenants), **(coordinator_env or {})},
                                  "generator": dict(generator_env)}) as stack:  # fmt: skip
        yield SessionStack(stack, store, video, tokens, logs)


def sessions_active(stack: SessionStack, service: str) -> float:
    """The service's inspatio_sessions_active gauge, scraped from its metrics."""
    text = urllib.request.urlopen(f"http://{stack.stack.metrics_addresses[service]}/metrics", timeout=5).read().decode()
    return float(re.search(r"^inspatio_sessions_active ([0-9.e+-]+)$", text, re.M).group(1))


def wait_until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout} s"
        time.sleep(0.05)


def wait_for_no_session(stack: SessionStack, what: str = "no session open") -> None:
    """Neither the coordinator nor the generator holds a session (a cancelled one frees a moment later)."""
    wait_until(lambda: sessions_active(stack, "generator") == 0 == sessions_active(stack, "coordinator"), what=what)
