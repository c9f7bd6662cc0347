"""Step 1 as a stage: the Florence-2 caption of a video's middle frame, cached per video and weights."""

from __future__ import annotations

from dataclasses import dataclass

from ..media.decode import probe_video, read_images
from ..models.captioner import GENERATION_KWARGS, Captioner
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import Stopwatch, Timing, fetch, get_json, put_json, scratch
from .identity import ModelIdentity


@dataclass(frozen=True)
class CaptionOutput:
    caption: str
    key: str
    timing: Timing
    model: str  # digest of the weights that made it (stages/identity.py)


def caption_options(captioner: Captioner) -> dict:
    """What besides the video and weights decides the caption: a capped length (upstream's keeps the key it had)."""
    if captioner.max_new_tokens == GENERATION_KWARGS["max_new_tokens"]:
        return {}
    return {"max_new_tokens": captioner.max_new_tokens}


def run_caption(store: ObjectStore, video_key: str, video_sha256: str, captioner: Captioner,
                identity: ModelIdentity, force: bool = False, should_stop: StopCheck = go_on) -> CaptionOutput:  # fmt: skip
    watch = Stopwatch()
    key = content_key("caption", {"video": video_sha256}, caption_options(captioner), identity.digest, "caption.json")
    if not force and store.exists(key):
        return CaptionOutput(get_json(store, key)["caption"], key, watch.timing("caption", True), identity.digest)
    with scratch() as folder:
        should_stop()
        path = fetch(store, video_key, folder, "video")
        # Upstream seeks to frame_count // 2 using the container's frame count (OpenCV).
        middle = probe_video(path).frames // 2
        frame = read_images(path, start=middle, stop=middle + 1)
        if len(frame) == 0:  # the container over-reports its frames: take the last decodable one
            frame = read_images(path)[-1:]
        should_stop()  # the model runs as one call: the last place to stop before it
        caption = captioner.caption_images([frame[0].numpy()])[0]
    put_json(store, key, {"caption": caption, "model": identity.digest, "random_weights": identity.random})
    return CaptionOutput(caption, key, watch.timing("caption", False), identity.digest)
