"""`python -m services.caption.main`: Florence-2 captions over gRPC (settings from INSPATIO_* variables)."""

from __future__ import annotations

from inspatio_world.jobs.local_stages import caption_identity, check_caption_weights
from inspatio_world.models.captioner import Captioner
from inspatio_world.rpc.bootstrap import ServiceSettings, run_service
from inspatio_world.rpc.generated import caption_pb2_grpc

from .servicer import CaptionServicer


def load(settings, store, server):
    weights = settings.weights()
    check_caption_weights(weights)
    identity = caption_identity(weights)
    server.metrics.set_model(identity.name, identity.digest, identity.random)
    return [CaptionServicer(store, Captioner.from_folder(weights.florence_dir, device=settings.device), identity, server.metrics)]


def main() -> None:
    run_service(ServiceSettings.from_env("caption"), [caption_pb2_grpc.add_CaptionServiceServicer_to_server], load)


if __name__ == "__main__":
    main()
