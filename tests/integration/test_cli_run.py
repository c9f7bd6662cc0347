"""`inspatio run` as a user runs it: a subprocess that starts the real local stack (four services,
local-folder store, tiny weights), re-renders every video of a folder, and writes each one's
outputs under --out; a bad trajectory fails before anything starts, with a readable message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inspatio_world.media.decode import read_frames

from tests.support.clips import write_sample_mp4

FRAMES, HEIGHT, WIDTH = 9, 64, 96
OUTPUTS = ("pred.mp4", "render.mp4", "source.mp4", "compare.mp4", "manifest.json")


def _inspatio(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspatio_world.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def weights(tiny_weights):
    return tiny_weights.root


def test_run_re_renders_every_video_of_a_folder(tmp_path, weights):
    videos = tmp_path / "videos"
    videos.mkdir()
    first = write_sample_mp4(tmp_path, FRAMES, HEIGHT, WIDTH)
    shutil.move(first, videos / "alpha.mp4")
    # Another video, not a copy: both jobs run at once, and a copy's generation would be a cache hit for
    # whichever finished second, so which one prints its blocks would depend on timing.
    second = write_sample_mp4(tmp_path, FRAMES, HEIGHT, WIDTH + 16)
    shutil.move(second, videos / "beta.mp4")
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    done = _inspatio("run", str(videos), "--traj", "pan_left.txt", "--no-adaptive-frames", "--seed", "3",
                     "--out", str(out), "--store", f"file://{tmp_path / 'store'}", "--weights", str(weights),
                     "--log-dir", str(tmp_path / "logs"), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folders = sorted(out.iterdir())
    assert [p.name.split("-")[:2] for p in folders] == [["alpha", "pan_left"], ["beta", "pan_left"]]  # notes.txt is not a video
    for folder in folders:
        name = folder.name.split("-")[0]
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
        pred, compare = read_frames(folder / "pred.mp4"), read_frames(folder / "compare.mp4")
        assert pred.shape[0] == compare.shape[0] == FRAMES
        assert compare.shape[3] == 3 * pred.shape[3]  # source | render | prediction
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["state"] == "succeeded" and manifest["options"]["seed"] == 3
        assert sorted(manifest["weights"]) == ["caption", "depth", "generator"]
        assert all(len(digest) == 32 for digest in manifest["weights"].values())
        assert f"{name}.mp4 -> {folder}/" in done.stdout  # where the outputs went
    # progress reached the user: each stage, then the end
    assert "alpha.mp4: generate: block 1/1" in done.stderr and "alpha.mp4: succeeded" in done.stderr


def test_run_refuses_a_bad_trajectory_before_starting_anything(tmp_path, weights):
    video = write_sample_mp4(tmp_path, FRAMES, HEIGHT, WIDTH)
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 0\n1 2\n")
    done = _inspatio("run", str(video), "--traj", str(bad), "--out", str(tmp_path / "out"),
                     "--store", f"file://{tmp_path / 'store'}", "--weights", str(weights), cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "bad.txt" in done.stderr and "line" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
