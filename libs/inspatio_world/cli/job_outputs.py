"""Where one job of `inspatio run` goes: its own output folder, its progress line, an optional
preview that grows block by block, and the final download."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from .progress import JobProgress

PREVIEW_FILE = "preview.mp4"


def job_folder_name(video_name: str, trajectory_label: str, job) -> str:
    """VIDEO-TRAJECTORY-DIGEST: the digest covers the video's content and every option that changes
    the result, so distinct jobs never share a folder and repeating a job reuses its own."""
    options = {name: value for name, value in asdict(job.options).items() if name != "force"}
    digest = hashlib.sha256(json.dumps({"video": job.video.sha256, "options": options}, sort_keys=True).encode())
    return f"{Path(video_name).stem}-{trajectory_label}-{digest.hexdigest()[:8]}"


class JobOutputs:
    def __init__(self, client, name: str, folder: Path, preview: bool) -> None:
        self.client, self.name, self.folder = client, name, folder
        self._preview = None
        if preview:  # said before the progress line starts, so the two never share a line
            self._preview = _Preview(folder / PREVIEW_FILE)
            print(f"{name}: preview in {self._preview.path}, growing block by block", flush=True)
        self.progress = JobProgress(name)

    def on_event(self, event) -> None:
        self.progress.on_event(event)
        if self._preview is not None and event.kind == "block":
            self._preview.append(self.client, event)

    def finish(self, final) -> bool:
        """Close the progress line and the preview, download a finished job; False if it failed."""
        self.progress.close(final)
        if self._preview is not None:
            self._preview.close()
        if final.state != "succeeded":  # the progress line has said how it ended
            return False
        written = self.client.download(final, self.folder)
        print(f"{self.name} -> {self.folder}/ ({', '.join(sorted(p.name for p in written.values()))})", flush=True)
        return True


class _Preview:
    """preview.mp4, readable while it grows: each block's frames appended as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path, self._writer = path, None

    def append(self, client, event) -> None:
        from ..media.decode import read_images
        from ..media.video_io import Mp4Writer

        with tempfile.TemporaryDirectory(prefix="inspatio-block-") as scratch:
            images = read_images(client.fetch_block(event, Path(scratch) / "block.mkv"))
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Mp4Writer(self.path, images.shape[2], images.shape[1], growing=True)
        self._writer.write_images(images)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
