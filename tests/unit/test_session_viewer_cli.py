"""`inspatio session VIDEO --viewer GATEWAY`: the viewer page's address for a video in the store, opened in
the browser ($BROWSER here records it), never with the token in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[2]


def _session(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspatio_world.cli", "session", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": f"{ROOT / 'libs'}:{ROOT}", **env})  # fmt: skip


def test_the_viewer_opens_on_a_video_in_the_store_without_the_token(tmp_path):
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} -c \"import pathlib, sys; pathlib.Path('{opened}').write_text(sys.argv[1])\" %s"
    done = _session("s3://inspatio/uploads/clip.mp4", "--viewer", "127.0.0.1:8765",
                    env={"BROWSER": browser, "INSPATIO_TOKEN": "secret-token-123"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = opened.read_text()
    assert f"viewer: {url}" in done.stdout
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc) == ("http", "127.0.0.1:8765")
    assert parse_qs(parsed.query) == {"video_uri": ["s3://inspatio/uploads/clip.mp4"]}
    assert "secret-token-123" not in done.stdout + done.stderr + url


def test_a_local_file_is_refused_with_what_to_do(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not opened")
    done = _session(str(video), "--viewer", "127.0.0.1:8765", env={"BROWSER": "false"})
    assert done.returncode != 0
    assert "local file" in done.stderr and "s3://" in done.stderr
