"""The CLI as a new user meets it, through the real `inspatio` command: one `inspatio up` (the local
stack on its well-known ports, tiny weights, a per-user cache folder) serves most tests; each test
reproduces one defect a stranger hit on a fresh clone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspatio_world.media.decode import read_frames
from inspatio_world.stack import health

from tests.support.clips import write_sample_mp4

COORDINATOR = "127.0.0.1:50051"
FRAMES, HEIGHT, WIDTH = 9, 64, 96
UP_TIMEOUT_S = 300


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPATIO_")}
    return {**env, "INSPATIO_CACHE_DIR": str(cache)}


def _inspatio(*args: str, cwd: Path, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspatio_world.cli", *args], cwd=cwd, env=_env(cache),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _clip(folder: Path, name: str, frames: int = FRAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / "scratch"
    scratch.mkdir(exist_ok=True)
    path = folder / name
    shutil.move(write_sample_mp4(scratch, frames, HEIGHT, WIDTH), path)
    scratch.rmdir()
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user's machine: a per-user cache folder and two working folders."""
    root = tmp_path_factory.mktemp("user")
    for name in ("cache", "a", "b"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="module")
def up(home):
    process = subprocess.Popen([sys.executable, "-m", "inspatio_world.cli", "up"], cwd=home / "a", env=_env(home / "cache"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + UP_TIMEOUT_S
    while health(COORDINATOR) != "SERVING":
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "inspatio up did not become ready"
        time.sleep(0.5)
    yield process
    process.send_signal(signal.SIGINT)
    process.wait(60)


def test_distinct_jobs_get_distinct_folders_and_one_bad_video_does_not_stop_the_rest(up, home, tmp_path):
    videos = tmp_path / "videos"
    _clip(videos, "clip.mp4")
    _clip(videos, "clip.mov", frames=FRAMES + 4)  # same name, another video
    (videos / "b.mp4").write_bytes(b"")  # an empty file
    out = tmp_path / "out"
    first = _inspatio("run", str(videos), "--traj", "pan_left.txt", "--out", str(out), "--preview",
                      "--coordinator", COORDINATOR, cwd=home / "a", cache=home / "cache")  # fmt: skip
    second = _inspatio("run", str(videos / "clip.mp4"), "--traj", "pan_right.txt", "--no-adaptive-frames", "--out", str(out),
                       "--coordinator", COORDINATOR, cwd=home / "a", cache=home / "cache")  # fmt: skip

    assert first.returncode == 1, first.stderr  # the bad file makes the run fail at the end ...
    assert "b.mp4" in first.stderr and "Traceback" not in first.stderr
    assert second.returncode == 0, second.stderr
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 3, folders  # ... but both good videos ran, and the second trajectory kept the first's outputs
    assert sum(name.startswith("clip-pan_left-") for name in folders) == 2
    assert sum(name.startswith("clip-pan_right-") for name in folders) == 1
    for folder in out.iterdir():
        assert f"-> {folder}/" in first.stdout + second.stdout  # says where each job went
        pred = read_frames(folder / "pred.mp4")
        if (folder / "preview.mp4").exists():  # --preview: the same frames, written block by block
            assert read_frames(folder / "preview.mp4").shape == pred.shape
    assert sum((folder / "preview.mp4").exists() for folder in out.iterdir()) == 2
    # progress as plain lines when not on a terminal, naming each stage
    assert "\r" not in first.stderr + first.stdout and "\x1b" not in first.stderr + first.stdout
    assert "clip.mp4: depth: started" in first.stderr and "clip.mp4: generate: block 1/10" in first.stderr
    # the frame count and why, before the job runs
    assert "clip.mp4: 9 frames; pan_left turns the camera" in first.stdout and "121 frames in" in first.stdout


def test_the_same_job_from_another_folder_is_a_cache_hit(up, home, tmp_path):
    video = _clip(tmp_path, "street.mp4")
    ran = _inspatio("run", str(video), "--traj", "tilt_up.txt", "--no-adaptive-frames", "--out", str(tmp_path / "o1"), "--coordinator", COORDINATOR,
                    cwd=home / "a", cache=home / "cache")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    tiny = home / "cache" / "tiny-weights"
    written = {p: p.stat().st_mtime_ns for p in tiny.rglob("*") if p.is_file()}

    again = _inspatio("run", str(video), "--traj", "tilt_up.txt", "--no-adaptive-frames", "--out", "o2", cwd=home / "b", cache=home / "cache")
    assert again.returncode == 0, again.stderr
    assert "every stage from the cache" in again.stderr
    assert "0/0" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*") if p.is_file()} == written  # not written again
    assert not (home / "b" / ".cache").exists()


def test_a_second_up_fails_clearly_on_the_busy_port(up, home):
    second = _inspatio("up", cwd=home / "b", cache=home / "cache", timeout=120)
    assert second.returncode != 0
    assert "127.0.0.1:50051" in second.stderr and "in use" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr


def test_local_mistakes_are_one_line_before_anything_starts(home, tmp_path):
    video = _clip(tmp_path, "clip.mp4")
    cases = {
        "trajectory file './trajs/my_path.txt' not found": ("run", str(video), "--traj", "./trajs/my_path.txt"),
        "unknown shipped trajectory 'spiral.txt'": ("run", str(video), "--traj", "spiral.txt"),
        "no-weights: weights folder not found": ("run", str(video), "--weights", str(tmp_path / "no-weights")),
        "required weight file not found": ("run", str(video), "--weights", str(tmp_path)),  # a folder, but not weights
        "missing.mp4: no such video file": ("submit", str(tmp_path / "missing.mp4")),
    }
    for expected, args in cases.items():
        started = time.monotonic()
        done = _inspatio(*args, "--out", str(tmp_path / "out"), cwd=tmp_path, cache=home / "cache") if args[0] == "run" else \
            _inspatio(*args, cwd=tmp_path, cache=home / "cache")  # fmt: skip
        assert done.returncode != 0
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert time.monotonic() - started < 30  # before any service starts (a stack takes longer)
    assert not (tmp_path / "out").exists()


def test_cancel_waits_for_the_end_and_get_shows_the_whole_job(up, home, tmp_path):
    video = _clip(tmp_path, "long.mp4", frames=45)
    submitted = _inspatio("submit", str(video), "--traj", "pan_left.txt", "--seed", "7", "--coordinator", COORDINATOR,
                          cwd=tmp_path, cache=home / "cache")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    cancelled = _inspatio("cancel", job_id, "--coordinator", COORDINATOR, cwd=tmp_path, cache=home / "cache")
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == "cancelled", cancelled.stdout + cancelled.stderr

    shown = _inspatio("get", job_id, "--coordinator", COORDINATOR, cwd=tmp_path, cache=home / "cache")
    job = json.loads(shown.stdout)
    assert job["state"] == "cancelled" and job["options"]["seed"] == 7 and job["options"]["trajectory_name"] == "pan_left.txt"
    assert len(job["video"]["sha256"]) == 64 and job["video"]["size"] == video.stat().st_size
    assert 0 < job["created_unix"] <= job["updated_unix"]
