"""DepthRenderService over `stages.depth.run_depth` and `stages.render.run_render`."""

from __future__ import annotations

import torch

from inspatio_world.media.decode import VideoInfo
from inspatio_world.models.depth import DepthEstimator
from inspatio_world.jobs.runner import ImagesRendered
from inspatio_world.rpc.call_stop import call_stop_check
from inspatio_world.rpc.convert import (
    identity_to_proto, images_rendered_to_proto, key_to_ref, ref_to_key, render_options_from_proto, render_output_to_proto,
    timing_to_proto, video_ref_to_key,
)  # fmt: skip
from inspatio_world.rpc.options_proto import version_name
from inspatio_world.rpc.generated import common_pb2, depthrender_pb2, depthrender_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.stages.depth import run_depth
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.stages.image_job_render import run_image_render
from inspatio_world.stages.render import run_render
from inspatio_world.store.base import ObjectStore


def video_info_to_proto(info: VideoInfo) -> common_pb2.VideoInfo:
    return common_pb2.VideoInfo(frames=info.frames, fps=info.fps, width=info.width, height=info.height, codec=info.codec)


class DepthRenderServicer(depthrender_pb2_grpc.DepthRenderServiceServicer):
    def __init__(self, store: ObjectStore, estimator: DepthEstimator, identity: ModelIdentity, device: torch.device,
                 metrics: ServiceMetrics) -> None:  # fmt: skip
        self.store, self.estimator, self.identity, self.device, self.metrics = store, estimator, identity, device, metrics

    def EstimateDepth(self, request: depthrender_pb2.DepthRequest, context) -> depthrender_pb2.DepthResponse:
        version = version_name(request.model_version)  # an unknown enum value fails before any download
        key, digest = video_ref_to_key(self.store, request.video)
        out = run_depth(self.store, key, digest, self.estimator, self.identity, request.force, call_stop_check(context, "depth"),
                        version)  # fmt: skip
        self.metrics.observe_stage("depth", out.timing.seconds, out.timing.cache_hit)
        return depthrender_pb2.DepthResponse(
            depth=key_to_ref(self.store, out.key), video=video_info_to_proto(out.video),
            timing=timing_to_proto(out.timing), model=identity_to_proto(self.identity),
        )  # fmt: skip

    def Render(self, request: depthrender_pb2.RenderRequest, context) -> depthrender_pb2.RenderResponse:
        options = render_options_from_proto(request.options)  # bad trajectories fail before any download
        _, digest = video_ref_to_key(self.store, request.video)
        depth_key = ref_to_key(self.store, request.depth, "depth")
        out = run_render(self.store, digest, depth_key, options, self.device, request.options.force,
                         call_stop_check(context, "render"))  # fmt: skip
        self.metrics.observe_stage("render", out.timing.seconds, out.timing.cache_hit)
        return render_output_to_proto(self.store, out)

    def RenderImages(self, request: depthrender_pb2.RenderImagesRequest, context) -> depthrender_pb2.RenderImagesResponse:
        options = render_options_from_proto(request.options)  # a bad trajectory fails before any download
        keys = [ref_to_key(self.store, image, f"images[{i}]") for i, image in enumerate(request.images)]
        geometry = ref_to_key(self.store, request.geometry, "geometry") if request.HasField("geometry") else None
        model = (self.estimator, self.identity) if geometry is None else (None, None)  # the job's own geometry: no DA3
        out = run_image_render(self.store, keys, options.trajectory, options.trajectory_text, *model, geometry_key=geometry,
                               device=self.device, force=request.options.force,
                               should_stop=call_stop_check(context, "image render"))  # fmt: skip
        self.metrics.observe_stage("image_render", out.timing.seconds, out.timing.cache_hit)
        rendered = ImagesRendered(out, self.identity.digest if geometry is None else "")
        return images_rendered_to_proto(self.store, rendered, self.identity if geometry is None else None)
