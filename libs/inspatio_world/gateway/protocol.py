"""The viewer's WebSocket protocol: what the browser may send, checked, and the events the gateway sends.

Browser -> gateway (JSON text messages; binary messages only as upload chunks):

    {"type": "start", "token": "...", "video_uri": "s3://..." | "upload_name": "clip.mp4",
     "prompt": null, "seed": 0, "autoencoder": "taehv", "time_policy": "bounce",
     "backpressure": "latest", "jpeg_quality": 85}          the first message, exactly once
    (binary chunks ..., then {"type": "upload_done"})        only after a start with upload_name
    {"type": "move", "forward": 0.1, "right": 0, "up": 0, "yaw": 0, "pitch": 0, "orbit": 0, "seq": 7}
    {"type": "cameras", "cameras": [[16 numbers], ...], "seq": 8}
    {"type": "pause" | "resume" | "reset" | "close", "seq": 9}

Gateway -> browser (JSON text messages, each block's frames as binary messages right after its event):

    {"type": "opening"}                                      start accepted, the session is being opened
    {"type": "ready", "session_id", "caption", "source_frames", "height", "width", "frames_per_block",
     "max_blocks", "fps"}
    {"type": "block", "generation", "index", "first_frame", "frames": N, "cameras": [[16]...],
     "source_frames", "seconds", "latency", "dropped_before", "command_seq"}   then N JPEG messages
    {"type": "ended", "reason", "blocks"}
    {"type": "error", "message", "fatal"}                    fatal: the gateway closes the socket next

`seq` is the browser's own number for a command; a block's `command_seq` names the latest command the
block reflects (matched through the SDK's echoed send time), so the page measures command-to-frame
latency on its own clock. `latency` is the SDK's (gateway clock: command sent -> block received).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

MOVE_AXES = ("forward", "right", "up", "yaw", "pitch", "orbit")
SIMPLE_COMMANDS = ("pause", "resume", "reset", "close")
AUTOENCODERS = ("taehv", "wan_vae")
TIME_POLICIES = ("bounce", "freeze")
BACKPRESSURES = ("latest", "wait")
START_KEYS = {"type", "token", "video_uri", "upload_name", "prompt", "seed", "autoencoder", "time_policy",
              "backpressure", "jpeg_quality"}
MAX_MOVE = 1e3  # per block: metres / degrees; anything larger is a typo, not a camera path
MAX_CAMERAS = 10_000


class ProtocolError(ValueError):
    """A browser message the gateway refuses; the message goes back to the browser as an error event."""


@dataclass(frozen=True)
class Start:
    """The first message: the session's options, and the token for the coordinator (never logged)."""

    token: str | None
    video_uri: str | None = None
    upload_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the SDK's keyword arguments besides the video

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"Start(video_uri={self.video_uri!r}, upload_name={self.upload_name!r}, options={self.options!r})"


@dataclass(frozen=True)
class Command:
    """A command for the session: kind is "move", "cameras" or one of SIMPLE_COMMANDS."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None


@dataclass(frozen=True)
class UploadDone:
    pass


def decode(text: str | bytes) -> dict[str, Any]:
    """A JSON object from a text message."""
    if isinstance(text, bytes):
        raise ProtocolError("a binary message is only expected as an upload chunk, after a start with upload_name")
    try:
        message = json.loads(text)
    except ValueError:
        raise ProtocolError("not JSON: each text message is one JSON object") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('each message is a JSON object with a "type"')
    return message


def _number(message: dict, key: str, default: float = 0.0, limit: float = MAX_MOVE) -> float:
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > limit:
        raise ProtocolError(f"{key}: expected a finite number of magnitude at most {limit:g}, got {value!r}")
    return float(value)


def _choice(message: dict, key: str, choices: tuple[str, ...]) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if value not in choices:
        raise ProtocolError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _seq(message: dict) -> int | None:
    seq = message.get("seq")
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ProtocolError(f"seq: expected a non-negative integer, got {seq!r}")
    return seq


def parse_start(message: dict[str, Any]) -> Start:
    if message.get("type") != "start":
        raise ProtocolError(f'the first message must be {{"type": "start", ...}}, got type {message.get("type")!r}')
    unknown = sorted(set(message) - START_KEYS)
    if unknown:
        raise ProtocolError(f"start: unknown field(s) {', '.join(unknown)}")
    token = message.get("token") or None
    if token is not None and not isinstance(token, str):
        raise ProtocolError("token: expected a string")
    video_uri, upload_name = message.get("video_uri") or None, message.get("upload_name") or None
    if (video_uri is None) == (upload_name is None):
        raise ProtocolError("start: give exactly one of video_uri and upload_name")
    for key, value in (("video_uri", video_uri), ("upload_name", upload_name)):
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"{key}: expected a string")
    if upload_name is not None and ("/" in upload_name or "\\" in upload_name or upload_name in (".", "..")):
        raise ProtocolError("upload_name: a file name, without folders")
    options: dict[str, Any] = {}
    prompt = message.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ProtocolError("prompt: expected a string")
        options["prompt"] = prompt
    if "seed" in message:
        seed = message["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ProtocolError(f"seed: expected a non-negative integer, got {seed!r}")
        options["seed"] = seed
    for key, choices in (("autoencoder", AUTOENCODERS), ("time_policy", TIME_POLICIES), ("backpressure", BACKPRESSURES)):
        value = _choice(message, key, choices)
        if value is not None:
            options[key] = value
    if "jpeg_quality" in message:
        quality = message["jpeg_quality"]
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ProtocolError(f"jpeg_quality: expected an integer from 1 to 100, got {quality!r}")
        options["jpeg_quality"] = quality
    return Start(token=token, video_uri=video_uri, upload_name=upload_name, options=options)


def parse_command(message: dict[str, Any]) -> Command | UploadDone:
    kind = message["type"]
    if kind == "start":
        raise ProtocolError("a session has one start: open a new connection for another session")
    if kind == "upload_done":
        return UploadDone()
    seq = _seq(message)
    if kind == "move":
        unknown = sorted(set(message) - {"type", "seq", *MOVE_AXES})
        if unknown:
            raise ProtocolError(f"move: unknown field(s) {', '.join(unknown)}")
        return Command("move", {axis: _number(message, axis) for axis in MOVE_AXES}, seq)
    if kind == "cameras":
        cameras = message.get("cameras")
        if not isinstance(cameras, list) or not cameras or len(cameras) > MAX_CAMERAS:
            raise ProtocolError(f"cameras: expected a list of 1 to {MAX_CAMERAS} cameras (16 numbers each)")
        checked = []
        for i, camera in enumerate(cameras):
            if not isinstance(camera, list) or len(camera) != 16:
                raise ProtocolError(f"cameras[{i}]: expected 16 numbers (a row-major 4x4 world-to-camera)")
            checked.append([_number({"v": v}, "v", limit=1e9) for v in camera])
        return Command("cameras", {"cameras": [[row[4 * r:4 * r + 4] for r in range(4)] for row in checked]}, seq)
    if kind in SIMPLE_COMMANDS:
        return Command(kind, {}, seq)
    raise ProtocolError(f"unknown message type {kind!r}: expected move, cameras, {', '.join(SIMPLE_COMMANDS)}")


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False)
