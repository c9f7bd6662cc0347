"""CaptionService over `stages.caption.run_caption`."""

from __future__ import annotations

from inspatio_world.models.captioner import Captioner
from inspatio_world.rpc.call_stop import call_stop_check
from inspatio_world.rpc.convert import identity_to_proto, key_to_ref, timing_to_proto, video_ref_to_key
from inspatio_world.rpc.generated import caption_pb2, caption_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.stages.caption import run_caption
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.store.base import ObjectStore


class CaptionServicer(caption_pb2_grpc.CaptionServiceServicer):
    def __init__(self, store: ObjectStore, captioner: Captioner, identity: ModelIdentity, metrics: ServiceMetrics) -> None:
        self.store, self.captioner, self.identity, self.metrics = store, captioner, identity, metrics

    def Caption(self, request: caption_pb2.CaptionRequest, context) -> caption_pb2.CaptionResponse:
        key, digest = video_ref_to_key(self.store, request.video)
        out = run_caption(self.store, key, digest, self.captioner, self.identity, request.force,
                          call_stop_check(context, "caption"))  # fmt: skip
        self.metrics.observe_stage("caption", out.timing.seconds, out.timing.cache_hit)
        return caption_pb2.CaptionResponse(
            caption=out.caption, caption_ref=key_to_ref(self.store, out.key),
            timing=timing_to_proto(out.timing), model=identity_to_proto(self.identity),
        )  # fmt: skip
