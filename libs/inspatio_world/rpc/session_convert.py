"""Conversions between the live-session protos (session.proto) and sessions/session.py's types."""

from __future__ import annotations

import numpy as np

from ..sessions.cameras import CameraMove, check_camera
from ..sessions.session import (
    DEFAULT_JPEG_QUALITY, LATEST, WAIT, Close, Command, Move, Pause, Reset, Resume, SessionBlock, SessionEnded,
    SessionInfo, SetCameras,
)  # fmt: skip
from ..sessions.timeline import BOUNCE, FREEZE
from ..stages.identity import ModelIdentity
from .convert import identity_to_proto
from .generated import session_pb2
from .options_proto import autoencoder_name

TIME_POLICIES = {session_pb2.TIME_POLICY_UNSPECIFIED: BOUNCE, session_pb2.TIME_POLICY_BOUNCE: BOUNCE,
                 session_pb2.TIME_POLICY_FREEZE: FREEZE}  # fmt: skip
BACKPRESSURES = {session_pb2.BACKPRESSURE_UNSPECIFIED: LATEST, session_pb2.BACKPRESSURE_LATEST: LATEST,
                 session_pb2.BACKPRESSURE_WAIT: WAIT}  # fmt: skip


def time_policy_name(value: int) -> str:
    if value not in TIME_POLICIES:
        raise ValueError(f"time_policy {value}: unknown value")
    return TIME_POLICIES[value]


def backpressure_name(value: int) -> str:
    if value not in BACKPRESSURES:
        raise ValueError(f"backpressure {value}: unknown value")
    return BACKPRESSURES[value]


def setup_options(setup: session_pb2.GeneratorSessionSetup) -> dict:
    """SessionSettings fields from a setup (the replica adds its max_blocks and idle_seconds)."""
    return {
        "prompt": setup.prompt, "seed": setup.seed, "autoencoder": autoencoder_name(setup.autoencoder),
        "time_policy": time_policy_name(setup.time_policy), "backpressure": backpressure_name(setup.backpressure),
        "jpeg_quality": setup.jpeg_quality or DEFAULT_JPEG_QUALITY,
    }  # fmt: skip


def command_from_proto(command: session_pb2.SessionCommand) -> Command:
    """The library command; CameraError / ValueError (INVALID_ARGUMENT) for a bad or empty one."""
    which = command.WhichOneof("command")
    if which == "cameras":
        if not command.cameras.cameras:
            raise ValueError("command.cameras: no cameras given")
        return SetCameras(np.stack([check_camera(c.w2c, f"command.cameras.cameras[{i}]") for i, c in enumerate(command.cameras.cameras)]))
    if which == "move":
        m = command.move
        move = CameraMove(m.forward, m.right, m.up, m.yaw, m.pitch, m.orbit)
        move.check()
        return Move(move)
    flags = {"pause": Pause, "resume": Resume, "reset": Reset, "close": Close}
    if which in flags and getattr(command, which):
        return flags[which]()
    raise ValueError("command: set one of cameras, move, pause, resume, reset, close")


def command_to_proto(command: Command, sent_unix_ns: int = 0) -> session_pb2.SessionCommand:
    message = session_pb2.SessionCommand(sent_unix_ns=sent_unix_ns)
    if isinstance(command, SetCameras):
        message.cameras.cameras.extend(session_pb2.Camera(w2c=np.asarray(m, dtype=np.float64).reshape(-1).tolist())
                                       for m in np.asarray(command.w2c).reshape(-1, 16))  # fmt: skip
    elif isinstance(command, Move):
        move = command.move
        message.move.CopyFrom(session_pb2.CameraMove(forward=move.forward, right=move.right, up=move.up, yaw=move.yaw,
                                                     pitch=move.pitch, orbit=move.orbit))  # fmt: skip
    else:
        setattr(message, type(command).__name__.lower(), True)
    return message


def ready_to_proto(info: SessionInfo, identity: ModelIdentity | None = None) -> session_pb2.SessionEvent:
    ready = session_pb2.SessionReady(
        session_id=info.session_id, caption=info.caption, source_frames=info.source_frames, height=info.height,
        width=info.width, frames_per_block=info.frames_per_block, max_blocks=info.max_blocks,
    )  # fmt: skip
    if identity is not None:
        ready.model.CopyFrom(identity_to_proto(identity))
    return session_pb2.SessionEvent(ready=ready)


def block_to_proto(block: SessionBlock) -> session_pb2.SessionEvent:
    return session_pb2.SessionEvent(block=session_pb2.SessionBlock(
        generation=block.generation, index=block.index, first_frame=block.first_frame, jpeg=block.jpeg,
        cameras=[session_pb2.Camera(w2c=m.reshape(-1).tolist()) for m in block.cameras],
        source_frames=block.source_frames, seconds=block.seconds, command_sent_unix_ns=block.command_sent_unix_ns,
        dropped_before=block.dropped_before,
    ))  # fmt: skip


def ended_to_proto(ended: SessionEnded) -> session_pb2.SessionEvent:
    return session_pb2.SessionEvent(ended=session_pb2.SessionEnded(reason=ended.reason, blocks=ended.blocks))
