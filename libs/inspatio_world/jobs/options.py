"""A job's options: every upstream option (trajectory, modes, frames, decoder, prompt, seed, stopping
after the render) + force.

Shared by the client SDK and the services, so this module imports no model code: the trajectory
is parsed (and scipy/torch imported) only when the options are validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..refusals import FieldError

AUTOENCODERS = ("wan_vae", "taehv")
MODEL_VERSIONS = ("v1", "v1_5")  # upstream inspatio-world and inspatio-world-v1.5 (README: Model versions)
MAX_FREEZE_REPEAT = 10_000  # without a deployment's output limit (validate(max_output_frames=...))
INT64 = (-(2**63), 2**63 - 1)  # seed travels as a protobuf int64
# Refusals name fields as the protos do, relative to the request message whose `options` field holds
# the JobOptions (JobSpec, RenderRequest); the coordinator puts "spec." in front (refusals.fields_under).
OPTIONS_FIELD = "options"


def option_field(name: str) -> str:
    """The field path of JobOptions field `name` (e.g. "options.freeze_repeat")."""
    return f"{OPTIONS_FIELD}.{name}"


@dataclass(frozen=True)
class JobOptions:
    trajectory_text: str = ""  # the trajectory file's text (keyframes or per-frame 4x4s)
    trajectory_name: str = ""  # or the name of a shipped file in traj/
    relative_to_source: bool = False
    rotation_only: bool = False
    adaptive_frames: bool = True
    freeze_repeat: int = 0
    freeze_frame: int | None = None
    autoencoder: str = "wan_vae"
    prompt: str | None = None  # replaces the caption
    seed: int = 0
    force: bool = False
    render_only: bool = False  # upstream's --skip_step3: stop after the render, publish it as videos
    model_version: str = "v1"  # which release's checkpoint, conditioning and frame rule (MODEL_VERSIONS)

    @classmethod
    def for_trajectory(cls, trajectory: str | Path, **fields) -> "JobOptions":
        """Options for a trajectory given as a local file (its text is sent) or a shipped name.

        Anything path-like (a folder part, `~`, or `.`) must be an existing file: a mistyped path is a
        missing file here, not an unknown shipped name at the server."""
        path = Path(trajectory).expanduser()
        if path.is_file():
            return cls(trajectory_text=path.read_text(), **fields)
        if len(Path(trajectory).parts) > 1 or str(trajectory).startswith(("~", ".")):
            raise FileNotFoundError(f"trajectory file {str(trajectory)!r} not found")
        return cls(trajectory_name=str(trajectory), **fields)

    def validate(self, max_output_frames: int | None = None, whole_job: bool = True) -> None:
        """Cheap checks; raises FieldError (TrajectoryError with its field) with a message a person can act on.

        `max_output_frames`: the deployment's output limit (the coordinator passes it): the frames a
        time-freeze adds must fit in it. `whole_job` False: only the render's options are given (a
        RenderRequest carries no prompt)."""
        if bool(self.trajectory_text) == bool(self.trajectory_name):
            raise FieldError(option_field("trajectory"), "give exactly one trajectory: its text or the name of a "
                                                         "shipped file (e.g. x_y_circle_cycle.txt)")
        self.trajectory()
        if self.autoencoder not in AUTOENCODERS:
            raise FieldError(option_field("autoencoder"), f"autoencoder {self.autoencoder!r}: choose from {AUTOENCODERS}")
        repeat = option_field("freeze_repeat")
        if not isinstance(self.freeze_repeat, int) or not 0 <= self.freeze_repeat <= MAX_FREEZE_REPEAT:
            raise FieldError(repeat, f"freeze_repeat {self.freeze_repeat}: must be a whole number between 0 and {MAX_FREEZE_REPEAT}")
        if max_output_frames is not None and self.freeze_repeat > max_output_frames:
            raise FieldError(repeat, f"freeze_repeat {self.freeze_repeat}: the frames it adds must fit in this deployment's "
                                     f"limit of {max_output_frames} output frames (INSPATIO_MAX_OUTPUT_FRAMES)")  # fmt: skip
        if not isinstance(self.seed, int) or not INT64[0] <= self.seed <= INT64[1]:
            raise FieldError(option_field("seed"), f"seed {self.seed}: must be a whole number within int64 ({INT64[0]} to {INT64[1]})")
        if self.freeze_frame is not None and self.freeze_frame < 0:
            raise FieldError(option_field("freeze_frame"), f"freeze_frame {self.freeze_frame}: must be >= 0")
        if self.prompt is not None and not self.prompt.strip():
            raise FieldError(option_field("prompt"), "prompt is empty: leave it unset to use the caption")
        self._validate_version(whole_job)

    def _validate_version(self, whole_job: bool) -> None:
        """v1.5 has no captioning step and no time-freeze (upstream v1.5 has neither)."""
        field = option_field("model_version")
        if self.model_version not in MODEL_VERSIONS:
            raise FieldError(field, f"model_version {self.model_version!r}: choose from {MODEL_VERSIONS}")
        if self.model_version != "v1_5":
            return
        if whole_job and self.prompt is None:
            raise FieldError(option_field("prompt"), "model_version v1_5 needs a prompt: v1.5 has no captioning step "
                                                     "(describe the scene in a sentence or two)")
        if self.freeze_repeat or self.freeze_frame is not None:
            raise FieldError(option_field("freeze_repeat" if self.freeze_repeat else "freeze_frame"),
                             "time-freeze (freeze_repeat, freeze_frame) is a v1 option: model_version v1_5 plays every "
                             "source frame once")  # fmt: skip

    def validate_for_images(self, views: int, max_output_frames: int | None = None) -> None:
        """An image job's own rules (v1.5 only): model_version v1_5, a per-frame camera path (one w2c per
        output frame, in the first picture's camera world) whose padded length fits the output limit, and
        no render_only. FieldError naming the option."""
        from ..geometry.frame_schedule import padded_frame_count
        from ..geometry.trajectory import PerFrameTrajectory

        if self.model_version != "v1_5":
            raise FieldError(option_field("model_version"), "image inputs are a v1.5 feature: set model_version v1_5")
        if self.render_only:
            raise FieldError(option_field("render_only"), "render_only is for video jobs; an image job always generates")
        trajectory = self.trajectory()
        if not isinstance(trajectory, PerFrameTrajectory):
            raise FieldError(self.trajectory_field, "image jobs take a per-frame camera path (one 4x4 w2c per line, in the "
                                                    "first picture's camera world), e.g. traj/image_orbit.txt")  # fmt: skip
        frames = padded_frame_count(len(trajectory.w2c))
        if max_output_frames is not None and frames > max_output_frames:
            raise FieldError(self.trajectory_field, f"the camera path's {len(trajectory.w2c)} frames pad to {frames}, more than "
                                                    f"this deployment's limit of {max_output_frames} output frames")  # fmt: skip

    def trajectory(self):
        return self._parse(self.resolved_trajectory_text())

    @property
    def trajectory_field(self) -> str:
        """The field path its trajectory came in: text or the name of a shipped file."""
        return option_field("trajectory.shipped_name" if self.trajectory_name else "trajectory.text")

    def render_options(self):
        """The render stage's options (`stages.render.RenderOptions`); the trajectory is read once."""
        from ..stages.render import RenderOptions

        text = self.resolved_trajectory_text()
        return RenderOptions(self._parse(text), text, self.relative_to_source, self.rotation_only, self.adaptive_frames,
                             self.freeze_repeat, self.freeze_frame, self.model_version)  # fmt: skip

    def _parse(self, text: str):
        from ..geometry.trajectory import parse_trajectory

        from ..geometry.trajectory import TrajectoryError

        try:
            return parse_trajectory(text, source=self.trajectory_name or "<job trajectory>")
        except TrajectoryError as error:
            raise TrajectoryError(str(error), self.trajectory_field) from None

    def resolved_trajectory_text(self) -> str:
        """The trajectory's text; a name may only pick one of the shipped files (never a server path)."""
        from ..geometry.trajectory import SHIPPED_TRAJECTORIES, TrajectoryError

        if not self.trajectory_name:
            return self.trajectory_text
        shipped = sorted(p.name for p in SHIPPED_TRAJECTORIES.glob("*.txt"))
        if self.trajectory_name not in shipped:
            raise TrajectoryError(f"unknown shipped trajectory {self.trajectory_name!r}; shipped: {', '.join(shipped)}",
                                  self.trajectory_field)
        return (SHIPPED_TRAJECTORIES / self.trajectory_name).read_text()

    @classmethod
    def from_dict(cls, raw: dict) -> "JobOptions":
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown job options {sorted(unknown)}")
        return cls(**raw)
