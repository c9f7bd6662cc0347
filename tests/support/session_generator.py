"""Stand-in stage services for testing the coordinator's session relay, on 127.0.0.1.

STAND-IN ONLY, until helper A's real `GeneratorSessionService.RunSession` (services/generator/
session_servicer.py, over libs/inspatio_world/sessions/) is merged; the lead then switches the
end-to-end tests to the real generator with tiny weights. Nothing here renders or generates:

- `StandInCaption` / `StandInDepth`: CaptionService.Caption and DepthRenderService.EstimateDepth that
  check the video is in the store, write a small object under a content key of the video's digest and
  answer at once (the second call for a video is a cache hit), counting their calls.
- `StandInSessions`: GeneratorSessionService.RunSession following the session protocol of
  SESSION_SPEC.md: `setup` first (INVALID_ARGUMENT otherwise), `ready`, then blocks of tiny
  solid-colour JPEGs (9 frames for block 0, 12 after) with the cameras used: absolute cameras are used
  in order as given; a move is applied per frame from the current camera on (translation along the
  camera's axes and a yaw about its vertical, move / frames of the block each frame); with no camera
  the source camera (identity). `pause`/`resume`, `reset` (generation + 1, from block 0 and the
  identity again), `close` (ended "closed"), `max_blocks` (ended "max_blocks"). A full replica
  (`max_sessions`) refuses with RESOURCE_EXHAUSTED and a RetryInfo, through the real server's error
  mapping. It records every setup, every command in the order received and how each session ended.
"""

from __future__ import annotations

import io
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from inspatio_world.refusals import QuotaExceeded
from inspatio_world.rpc.convert import key_to_ref, video_ref_to_key
from inspatio_world.rpc.generated import (
    caption_pb2, caption_pb2_grpc, common_pb2, depthrender_pb2, depthrender_pb2_grpc, session_pb2, session_pb2_grpc,
)  # fmt: skip
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.store.base import ObjectStore

CAPTION = "a stand-in caption of the clip"
SOURCE_FRAMES, HEIGHT, WIDTH = 9, 16, 24
FIRST_BLOCK_FRAMES, FRAMES_PER_BLOCK = 9, 12
RETRY_AFTER_S = 7.0


class StandInCaption(caption_pb2_grpc.CaptionServiceServicer):
    def __init__(self, store: ObjectStore) -> None:
        self.store, self.calls = store, 0

    def Caption(self, request, context):
        self.calls += 1
        key, digest = video_ref_to_key(self.store, request.video)
        if self.store.stat(key) is None:
            raise FileNotFoundError(f"no video {key}")
        out_key = f"cache/stand-in-caption/{digest}.txt"
        hit = self.store.exists(out_key)
        if not hit:
            self.store.put_bytes(out_key, CAPTION.encode())
        return caption_pb2.CaptionResponse(caption=CAPTION, caption_ref=key_to_ref(self.store, out_key),
                                           timing=common_pb2.StageTiming(stage="caption", seconds=0.01, cache_hit=hit))  # fmt: skip


class StandInDepth(depthrender_pb2_grpc.DepthRenderServiceServicer):
    def __init__(self, store: ObjectStore) -> None:
        self.store, self.calls = store, 0

    def EstimateDepth(self, request, context):
        self.calls += 1
        key, digest = video_ref_to_key(self.store, request.video)
        out_key = f"cache/stand-in-depth/{digest}.bin"
        hit = self.store.exists(out_key)
        if not hit:
            self.store.put_bytes(out_key, b"stand-in depth")
        return depthrender_pb2.DepthResponse(
            depth=key_to_ref(self.store, out_key),
            video=common_pb2.VideoInfo(frames=SOURCE_FRAMES, fps=8, width=WIDTH, height=HEIGHT, codec="h264"),
            timing=common_pb2.StageTiming(stage="depth", seconds=0.02, cache_hit=hit),
        )


@dataclass
class SessionRecord:
    """What one RunSession saw."""

    setup: session_pb2.GeneratorSessionSetup
    commands: list[session_pb2.SessionCommand] = field(default_factory=list)
    blocks: list[session_pb2.SessionBlock] = field(default_factory=list)
    end: str = ""  # closed, max_blocks, cancelled (the caller went away)
    ended: threading.Event = field(default_factory=threading.Event)


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), colour).save(out, format="JPEG", quality=85)
    return out.getvalue()


def _moved(w2c: np.ndarray, move: session_pb2.CameraMove, steps: int) -> np.ndarray:
    """`w2c` after 1/steps of `move`: a yaw about the camera's vertical, then a translation along its axes."""
    c2w = np.linalg.inv(w2c)
    yaw = math.radians(move.yaw / steps)
    turn = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    c2w = c2w.copy()
    c2w[:3, :3] = c2w[:3, :3] @ turn
    c2w[:3, 3] += c2w[:3, :3] @ np.array([move.right, -move.up, move.forward]) / steps
    return np.linalg.inv(c2w)


class StandInSessions(session_pb2_grpc.GeneratorSessionServiceServicer):
    def __init__(self, max_sessions: int = 1, max_blocks: int = 5, block_interval_s: float = 0.02) -> None:
        self.max_sessions, self.max_blocks, self.block_interval_s = max_sessions, max_blocks, block_interval_s
        self.sessions: list[SessionRecord] = []
        self.hold_first_block = threading.Event()  # a test sets `hold` to keep block 0 back until this is set
        self.hold = False
        self._open = 0
        self._lock = threading.Lock()

    def RunSession(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "setup":
            raise ValueError("the first RunSession message must be `setup`")
        with self._lock:
            if self._open >= self.max_sessions:
                raise QuotaExceeded("generator", f"this generator replica holds its maximum of {self.max_sessions} sessions "
                                                 "(INSPATIO_MAX_SESSIONS); retry later", retry_after_s=RETRY_AFTER_S)  # fmt: skip
            self._open += 1
        record = SessionRecord(first.setup)
        self.sessions.append(record)
        commands: list[session_pb2.SessionCommand] = []
        arrived = threading.Condition()
        done_sending = threading.Event()

        def read() -> None:
            try:
                for message in request_iterator:
                    with arrived:
                        record.commands.append(message.command)
                        commands.append(message.command)
                        arrived.notify_all()
            except grpc.RpcError:  # the caller went away
                pass
            done_sending.set()

        def gone() -> None:
            if not record.end:
                record.end = "cancelled"
            record.ended.set()

        context.add_callback(gone)
        threading.Thread(target=read, name="stand-in-commands", daemon=True).start()
        try:
            yield session_pb2.SessionEvent(ready=session_pb2.SessionReady(
                session_id=uuid.uuid4().hex, caption=record.setup.prompt, source_frames=SOURCE_FRAMES, height=HEIGHT,
                width=WIDTH, frames_per_block=FRAMES_PER_BLOCK, max_blocks=self.max_blocks))  # fmt: skip
            yield from self._blocks(record, commands, arrived, context)
        finally:
            with self._lock:
                self._open -= 1
            record.ended.set()

    def _blocks(self, record: SessionRecord, commands: list, arrived: threading.Condition, context):
        generation, index, delivered, taken = 0, 0, 0, 0
        camera, move = np.eye(4), session_pb2.CameraMove()
        given: list[np.ndarray] = []  # absolute cameras not used yet
        paused, latest_sent = False, 0
        while context.is_active():
            if self.hold and index == 0 and generation == 0:
                self.hold_first_block.wait(30)
            with arrived:
                arrived.wait_for(lambda: len(commands) > taken or not paused, timeout=0.05)
                news, taken = commands[taken:], len(commands)
            for command in news:
                kind = command.WhichOneof("command")
                latest_sent = command.sent_unix_ns or latest_sent
                if kind == "close":
                    record.end = "closed"
                    yield session_pb2.SessionEvent(ended=session_pb2.SessionEnded(reason="closed", blocks=delivered))
                    return
                if kind == "pause":
                    paused = True
                elif kind == "resume":
                    paused = False
                elif kind == "reset":
                    generation, index, camera, given = generation + 1, 0, np.eye(4), []
                elif kind == "move":
                    move = command.move
                elif kind == "cameras":
                    given += [np.array(c.w2c).reshape(4, 4) for c in command.cameras.cameras]
            if paused:
                continue
            if delivered >= self.max_blocks:
                record.end = "max_blocks"
                yield session_pb2.SessionEvent(ended=session_pb2.SessionEnded(reason="max_blocks", blocks=delivered))
                return
            started = time.perf_counter()
            frames = FIRST_BLOCK_FRAMES if index == 0 else FRAMES_PER_BLOCK
            used = []
            for _ in range(frames):
                camera = given.pop(0) if given else _moved(camera, move, frames)
                used.append(session_pb2.Camera(w2c=camera.reshape(-1).tolist()))
            first_frame = 0 if index == 0 else FIRST_BLOCK_FRAMES + (index - 1) * FRAMES_PER_BLOCK
            colour = ((40 * index) % 256, (90 * generation) % 256, 200)
            block = session_pb2.SessionBlock(
                generation=generation, index=index, first_frame=first_frame, jpeg=[_jpeg(colour)] * frames, cameras=used,
                source_frames=[(first_frame + i) % SOURCE_FRAMES for i in range(frames)],
                seconds=time.perf_counter() - started, command_sent_unix_ns=latest_sent,
            )  # fmt: skip
            record.blocks.append(block)
            yield session_pb2.SessionEvent(block=block)
            index, delivered = index + 1, delivered + 1
            time.sleep(self.block_interval_s)


@dataclass
class StandInStageServer:
    """The three stand-ins on one ServiceServer (127.0.0.1); point a RemoteStages' three addresses at `address`."""

    server: ServiceServer
    caption: StandInCaption
    depth: StandInDepth
    sessions: StandInSessions

    @property
    def address(self) -> str:
        return self.server.address

    @classmethod
    def start(cls, store: ObjectStore, **session_options) -> "StandInStageServer":
        caption, depth, sessions = StandInCaption(store), StandInDepth(store), StandInSessions(**session_options)
        server = ServiceServer([(caption_pb2_grpc.add_CaptionServiceServicer_to_server, caption),
                                (depthrender_pb2_grpc.add_DepthRenderServiceServicer_to_server, depth),
                                (session_pb2_grpc.add_GeneratorSessionServiceServicer_to_server, sessions)],
                               metrics_address=None, grace=0).start()  # fmt: skip
        server.set_serving()
        return cls(server, caption, depth, sessions)

    def stop(self) -> None:
        self.sessions.hold_first_block.set()
        self.server.stop(grace=0)
