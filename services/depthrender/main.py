"""`python -m services.depthrender.main`: DA3 depth/poses and the point-cloud render over gRPC."""

from __future__ import annotations

import torch

from inspatio_world.jobs.local_stages import check_depth_weights, depth_identity, load_estimator
from inspatio_world.rpc.bootstrap import ServiceSettings, run_service
from inspatio_world.rpc.generated import depthrender_pb2_grpc

from .servicer import DepthRenderServicer


def load(settings, store, server):
    weights = settings.weights()
    check_depth_weights(weights)
    identity = depth_identity(weights)
    server.metrics.set_model(identity.name, identity.digest, identity.random)
    device = torch.device(settings.device)
    return [DepthRenderServicer(store, load_estimator(weights, device), identity, device, server.metrics)]


def main() -> None:
    run_service(ServiceSettings.from_env("depthrender"), [depthrender_pb2_grpc.add_DepthRenderServiceServicer_to_server], load)


if __name__ == "__main__":
    main()
