"""Job options <-> `JobOptions` messages, the one conversion used by the SDK and the services alike
(it imports no model code, so the client stays light)."""

from __future__ import annotations

from ..jobs.options import JobOptions, option_field
from ..refusals import FieldError
from .generated import common_pb2

AUTOENCODER_ENUMS = {"wan_vae": common_pb2.AUTOENCODER_WAN_VAE, "taehv": common_pb2.AUTOENCODER_TAEHV}
AUTOENCODER_NAMES = {common_pb2.AUTOENCODER_UNSPECIFIED: "wan_vae", **{v: k for k, v in AUTOENCODER_ENUMS.items()}}
VERSION_ENUMS = {"v1": common_pb2.MODEL_VERSION_V1, "v1_5": common_pb2.MODEL_VERSION_V1_5}
VERSION_NAMES = {common_pb2.MODEL_VERSION_UNSPECIFIED: "v1", **{v: k for k, v in VERSION_ENUMS.items()}}


def version_name(value: int) -> str:
    return _name("model_version", VERSION_NAMES, value)


def version_enum(name: str) -> int:
    return _enum("model_version", VERSION_ENUMS, name)


def autoencoder_name(value: int) -> str:
    return _name("autoencoder", AUTOENCODER_NAMES, value)


def autoencoder_enum(name: str) -> int:
    return _enum("autoencoder", AUTOENCODER_ENUMS, name)


def _name(field: str, names: dict[int, str], value: int) -> str:
    if value not in names:
        raise FieldError(option_field(field), f"unknown {field} enum value {value}")
    return names[value]


def _enum(field: str, enums: dict[str, int], name: str) -> int:
    if name not in enums:
        raise FieldError(option_field(field), f"{field} {name!r}: choose from {sorted(enums)}")
    return enums[name]


def options_to_proto(options: JobOptions) -> common_pb2.JobOptions:
    trajectory = (common_pb2.Trajectory(shipped_name=options.trajectory_name) if options.trajectory_name
                  else common_pb2.Trajectory(text=options.trajectory_text))  # fmt: skip
    message = common_pb2.JobOptions(
        trajectory=trajectory, relative_to_source=options.relative_to_source, rotation_only=options.rotation_only,
        disable_adaptive_frames=not options.adaptive_frames, freeze_repeat=options.freeze_repeat,
        autoencoder=autoencoder_enum(options.autoencoder), seed=options.seed, force=options.force,
        render_only=options.render_only, model_version=version_enum(options.model_version),
    )  # fmt: skip
    if options.freeze_frame is not None:
        message.freeze_frame = options.freeze_frame
    if options.prompt is not None:
        message.prompt = options.prompt
    return message


def options_from_proto(options: common_pb2.JobOptions) -> JobOptions:
    source = options.trajectory.WhichOneof("source")
    return JobOptions(
        trajectory_text=options.trajectory.text if source == "text" else "",
        trajectory_name=options.trajectory.shipped_name if source == "shipped_name" else "",
        relative_to_source=options.relative_to_source,
        rotation_only=options.rotation_only,
        adaptive_frames=not options.disable_adaptive_frames,
        freeze_repeat=options.freeze_repeat,
        freeze_frame=options.freeze_frame if options.HasField("freeze_frame") else None,
        autoencoder=autoencoder_name(options.autoencoder),
        prompt=options.prompt if options.HasField("prompt") else None,
        seed=options.seed,
        force=options.force,
        render_only=options.render_only,
        model_version=version_name(options.model_version),
    )
