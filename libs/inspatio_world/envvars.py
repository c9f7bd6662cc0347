"""The one registry of environment variables the project reads.

Every variable is declared here with its default and meaning; code reads them through `get`,
so `inspatio env` (and the README) can list them all from one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


ATTENTION = EnvVar(
    "INSPATIO_ATTENTION",
    "auto",
    "DiT self-attention kernel: auto (flash-attn 4 on SM90/SM100, then flash-attn 3, then 2, then SDPA), sdpa, flash2, flash3, flash4, "
    "or fp8 (our Triton FP8 kernel with per-token scales, sm89+: changes the numbers, its own model identity; README Performance).",
)
CROSS_ATTENTION = EnvVar(
    "INSPATIO_CROSS_ATTENTION",
    "auto",
    "DiT cross-attention (to the 512 text tokens) kernel: auto (SDPA: cuDNN is fastest at 512 keys), sdpa, flash2, flash3, flash4.",
)
FUSED_GELU = EnvVar(
    "INSPATIO_FUSED_GELU",
    "1",
    "Generator: 1 computes the DiT feed-forward's GELU in the first GEMM's epilogue on CUDA (cuBLASLt; faster, changes rounding; README Performance); 0 keeps it separate. The CPU always keeps it separate.",
)
ROPE_PRECISION = EnvVar(
    "INSPATIO_ROPE_PRECISION",
    "auto",
    "DiT rotary embedding arithmetic: auto (float32 on GPUs, float64 on the CPU), float64 (upstream's numbers) or float32 (README Performance gives the error).",
)
PARITY_PACK = EnvVar(
    "INSPATIO_PARITY_PACK",
    "",
    "Folder of golden parity fixtures used by the test suite (default: ../shared/parity beside the repo).",
)

WEIGHTS = EnvVar(
    "INSPATIO_WEIGHTS",
    "",
    "Folder with the released weights (upstream's checkpoints/ layout). Unset: tiny random weights.",
)

SHARED_GPU = EnvVar(
    "INSPATIO_SHARED_GPU",
    "0",
    "GPU services: 1 when caption, depth/render and generator share one GPU (a single box). After each call a "
    "service returns the GPU memory it cached but no longer uses, so the others can have it, and the generator "
    "keeps umT5 in host memory between prompts (~11 GB less; one copy per prompt not in its cache). `inspatio up` "
    "sets it unless services are placed on different GPUs.",
)
CAPTION_MAX_NEW_TOKENS = EnvVar(
    "INSPATIO_CAPTION_MAX_NEW_TOKENS",
    "1024",
    "Longest caption Florence-2 may write, in tokens (upstream: 1024). A lower cap keeps captions under it "
    "(and in cache entries of their own); `inspatio bench stack` uses 128 on random weights, which never stop early.",
)

COMPILE_CACHE = EnvVar(
    "INSPATIO_COMPILE_CACHE",
    "~/.cache/inspatio/torchinductor",
    "Where torch.compile keeps compiled kernels, so a restarted process reaches full speed sooner "
    "(used unless TORCHINDUCTOR_CACHE_DIR is set).",
)

CACHE_DIR = EnvVar(
    "INSPATIO_CACHE_DIR",
    "~/.cache/inspatio",
    "Per-user folder of the local stack: its store, the tiny random weights, the sample clip and the service "
    "logs, so the same job run from any folder is a cache hit.",
)
STORE = EnvVar(
    "INSPATIO_STORE",
    "",
    "Object store URL: a folder (file:///abs/path) or S3 (s3://bucket?endpoint=host:port&secure=0). "
    "Default: the folder store/ in INSPATIO_CACHE_DIR.",
)
STORE_RETRY_SECONDS = EnvVar(
    "INSPATIO_STORE_RETRY_SECONDS", "60",
    "How long an S3 call is retried in place (capped exponential backoff) while the store fails transiently "
    "(connection refused or reset, timeouts, 5xx, SlowDown) before it fails; 0: no retries.",
)
S3_ACCESS_KEY = EnvVar("INSPATIO_S3_ACCESS_KEY", "", "S3 access key (falls back to AWS_ACCESS_KEY_ID).")
S3_SECRET_KEY = EnvVar("INSPATIO_S3_SECRET_KEY", "", "S3 secret key (falls back to AWS_SECRET_ACCESS_KEY).")
GRPC_ADDRESS = EnvVar("INSPATIO_GRPC_ADDRESS", "", "host:port a service listens on (default: its own port on 127.0.0.1).")
METRICS_ADDRESS = EnvVar("INSPATIO_METRICS_ADDRESS", "", "host:port of a service's Prometheus /metrics (default: its own port on 127.0.0.1).")
DEVICE = EnvVar("INSPATIO_DEVICE", "auto", "Torch device of a GPU service: auto (cuda when present), cuda, cuda:1, cpu.")
MAX_IN_FLIGHT = EnvVar("INSPATIO_MAX_IN_FLIGHT", "1", "Heavy requests a service runs at once.")
MAX_QUEUE = EnvVar("INSPATIO_MAX_QUEUE", "4", "Heavy requests a service queues; more get RESOURCE_EXHAUSTED.")
MAX_STREAMS = EnvVar(
    "INSPATIO_MAX_STREAMS", "256",
    "Streams (WatchJob, uploads) a service keeps open at once, each on its own thread; more get RESOURCE_EXHAUSTED. "
    "Health checks and unary calls keep threads of their own.",
)
CAPTION_ADDRESS = EnvVar("INSPATIO_CAPTION_ADDRESS", "127.0.0.1:50061", "Where the coordinator finds the caption service.")
DEPTHRENDER_ADDRESS = EnvVar("INSPATIO_DEPTHRENDER_ADDRESS", "127.0.0.1:50062", "Where the coordinator finds the depth/render service.")
GENERATOR_ADDRESS = EnvVar(
    "INSPATIO_GENERATOR_ADDRESS", "127.0.0.1:50063",
    "Where the coordinator finds the generator service for model_version v1 jobs (empty: none; v1 jobs are refused).")
GENERATOR_V1_5_ADDRESS = EnvVar(
    "INSPATIO_GENERATOR_V1_5_ADDRESS", "",
    "Where the coordinator finds the generators serving model_version v1_5 (empty: none; v1_5 jobs are refused "
    "at SubmitJob with FAILED_PRECONDITION).")
MODEL_VERSION = EnvVar(
    "INSPATIO_MODEL_VERSION", "v1",
    "Generator: the release it serves, v1 (InSpatio-World-1.3B.safetensors) or v1_5 (InSpatio-World-1.5-1.3B.safetensors); "
    "requests for the other are refused with FAILED_PRECONDITION.")
JOB_LEASE_SECONDS = EnvVar("INSPATIO_JOB_LEASE_SECONDS", "30", "How long a dead coordinator's job waits before another coordinator resumes it.")
STREAM_RENDER = EnvVar(
    "INSPATIO_STREAM_RENDER", "1",
    "Coordinator: 1 has the generator render each block's frames just before the block (GeneratorService.RenderAndGenerate: "
    "first frames sooner, same outputs); 0 renders the whole video on the depthrender service first, then generates.",
)
STAGE_WAIT_SECONDS = EnvVar("INSPATIO_STAGE_WAIT_SECONDS", "600", "Coordinator: how long a stage call waits for a ready replica of the stage before its job fails.")
DRAIN_SECONDS = EnvVar("INSPATIO_DRAIN_SECONDS", "30", "On SIGTERM, how long requests in progress may run before they are cancelled.")
FP8 = EnvVar("INSPATIO_FP8", "0", "Generator: 1 runs the DiT blocks' linear layers in FP8 (faster on Hopper, changes the numbers; README Performance).")
MAX_PARALLEL_JOBS = EnvVar("INSPATIO_MAX_PARALLEL_JOBS", "4", "Jobs a coordinator drives at once.")
COMPILE = EnvVar(
    "INSPATIO_COMPILE",
    "auto",
    "Generator: regional torch.compile of the DiT blocks: auto (on CUDA only), 1 (always, CPU too), 0 (eager).",
)
COMPILE_AUTOENCODERS = EnvVar(
    "INSPATIO_COMPILE_AUTOENCODERS",
    "auto",
    "Generator: torch.compile the Wan VAE's and TAEHV's per-block encode/decode steps: auto (Inductor's default "
    "mode on CUDA, eager elsewhere), 0 (eager), 1 (Inductor's default mode), max-autotune "
    "(max-autotune-no-cudagraphs: slower start, tuned kernels).",
)
AUTOENCODER_CHANNELS_LAST = EnvVar(
    "INSPATIO_AUTOENCODER_CHANNELS_LAST",
    "auto",
    "Generator: channels-last convolution weights (so activations): auto (the Wan VAE on CUDA, where it pays; "
    "TAEHV measured slower), 1 (both autoencoders), 0 (neither).",
)

MAX_INPUT_PIXELS = EnvVar(
    "INSPATIO_MAX_INPUT_PIXELS", str(3840 * 2160),
    "Coordinator: most pixels per input frame (width x height as displayed); a larger video is refused at submit.",
)
MAX_INPUT_FRAMES = EnvVar(
    "INSPATIO_MAX_INPUT_FRAMES", "10000",
    "Coordinator: most frames an input video may have (only the first 1000 are used, as upstream); more are refused at submit.",
)
MAX_OUTPUT_FRAMES = EnvVar(
    "INSPATIO_MAX_OUTPUT_FRAMES", "1000",
    "Coordinator: most frames a job may plan to generate (or render, for render-only jobs); freeze_repeat is bounded by it too.",
)

TENANTS_FILE = EnvVar(
    "INSPATIO_TENANTS_FILE", "",
    "Coordinator: the tenants file (JSON: names, token sha256 digests, allowed input prefixes, limits; README "
    "Tokens and tenants). Unset: open mode, one anonymous tenant and no authentication (the local stack).",
)
# TLS and tokens (README "TLS"). Servers: a certificate and key make the gRPC port TLS; a client CA
# makes it mutual TLS. Clients: a CA bundle, an optional client certificate, the bearer token.
TLS_CERT = EnvVar("INSPATIO_TLS_CERT", "", "Service: PEM certificate (chain) of its gRPC port; with INSPATIO_TLS_KEY the port is TLS.")
TLS_KEY = EnvVar("INSPATIO_TLS_KEY", "", "Service: PEM private key of INSPATIO_TLS_CERT.")
TLS_CLIENT_CA = EnvVar(
    "INSPATIO_TLS_CLIENT_CA", "",
    "Service: PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS; for the stage services).",
)
TLS_CA = EnvVar(
    "INSPATIO_TLS_CA", "",
    "Client (SDK, CLI, the coordinator calling the stages): PEM CA bundle that verifies the server; unset: gRPC's default roots.",
)
TLS_CLIENT_CERT = EnvVar("INSPATIO_TLS_CLIENT_CERT", "", "Client: PEM certificate it presents for mutual TLS (with INSPATIO_TLS_CLIENT_KEY).")
TLS_CLIENT_KEY = EnvVar("INSPATIO_TLS_CLIENT_KEY", "", "Client: PEM private key of INSPATIO_TLS_CLIENT_CERT.")
TLS_SERVER_NAME = EnvVar(
    "INSPATIO_TLS_SERVER_NAME", "",
    "Client: the name to verify in the server's certificate when the address (an IP, a service name) is not in it.",
)
ALLOW_PLAINTEXT = EnvVar(
    "INSPATIO_ALLOW_PLAINTEXT", "0",
    "1 lets a service listen without TLS on a non-loopback address (else it refuses to start), and lets clients "
    "without TLS settings connect to one in plaintext.",
)
TOKEN = EnvVar("INSPATIO_TOKEN", "", "SDK/CLI: bearer token sent on every call to the coordinator (prefer INSPATIO_TOKEN_FILE).")
TOKEN_FILE = EnvVar("INSPATIO_TOKEN_FILE", "", "SDK/CLI: file holding the bearer token (used when INSPATIO_TOKEN is unset).")
SERVICE_TOKEN_FILE = EnvVar(
    "INSPATIO_SERVICE_TOKEN_FILE", "",
    "A file holding the service token: the coordinator sends it as a bearer token to the stage services; a stage "
    "service given it requires it on every application RPC.",
)
# Time budgets of the coordinator's stage calls: base + seconds per unit of work (README "Time budgets").
# The defaults leave room for real weights on one GPU (first-call compile included) and tiny weights on a CPU.
STAGE_BUDGET_BASE_SECONDS = EnvVar(
    "INSPATIO_STAGE_BUDGET_BASE_SECONDS", "300",
    "Coordinator: seconds every stage call may take before its work is counted (downloads, model warm-up).",
)
CAPTION_SECONDS_PER_FRAME = EnvVar(
    "INSPATIO_CAPTION_SECONDS_PER_FRAME", "0.2",
    "Coordinator: caption budget per input frame (the captioner decodes up to the middle one).",
)
DEPTH_SECONDS_PER_FRAME = EnvVar("INSPATIO_DEPTH_SECONDS_PER_FRAME", "3", "Coordinator: depth budget per input frame used (at most 1000).")
RENDER_SECONDS_PER_FRAME = EnvVar("INSPATIO_RENDER_SECONDS_PER_FRAME", "1", "Coordinator: render budget per rendered frame (camera).")
GENERATE_SECONDS_PER_BLOCK = EnvVar("INSPATIO_GENERATE_SECONDS_PER_BLOCK", "60", "Coordinator: generate budget per generated block (12 frames).")

# Per-model weight paths (upstream's --checkpoint_path, --da3_model_path, --florence_model_path,
# --tae_checkpoint_path): each replaces one entry of the INSPATIO_WEIGHTS folder layout.
DIT_CHECKPOINT = EnvVar(
    "INSPATIO_DIT_CHECKPOINT", "",
    "The InSpatio-World .safetensors file (default: InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors in INSPATIO_WEIGHTS, "
    "InSpatio-World-1.3B/InSpatio-World-1.5-1.3B.safetensors for INSPATIO_MODEL_VERSION=v1_5).",
)
DA3_DIR = EnvVar("INSPATIO_DA3_DIR", "", "The Depth-Anything-3 folder (config.json, model.safetensors; default: DA3/ in INSPATIO_WEIGHTS).")
FLORENCE_DIR = EnvVar("INSPATIO_FLORENCE_DIR", "", "The Florence-2-large folder (default: Florence-2-large/ in INSPATIO_WEIGHTS).")
TAEHV_CHECKPOINT = EnvVar("INSPATIO_TAEHV_CHECKPOINT", "", "The TAEHV checkpoint (default: taehv/taew2_1.pth in INSPATIO_WEIGHTS).")

# Live sessions, per generator replica (sessions/, services/generator/session_servicer.py).
MAX_SESSIONS = EnvVar("INSPATIO_MAX_SESSIONS", "1", "Live sessions a generator replica holds at once; one more gets RESOURCE_EXHAUSTED with RetryInfo.")
SESSION_IDLE_SECONDS = EnvVar("INSPATIO_SESSION_IDLE_SECONDS", "60", "A live session with no command and nothing read for this long ends (reason idle).")
SESSION_MAX_BLOCKS = EnvVar("INSPATIO_SESSION_MAX_BLOCKS", "100", "Blocks a live session generates (per generation) before it ends (reason max_blocks).")
TENANT_MAX_SESSIONS = EnvVar(
    "INSPATIO_TENANT_MAX_SESSIONS", "4",
    "Coordinator: live sessions one tenant (the open mode's anonymous one too) holds open at once, unless its "
    "tenants-file entry sets max_concurrent_sessions; one more gets RESOURCE_EXHAUSTED with RetryInfo.")
SESSION_START_GRACE_SECONDS = EnvVar(
    "INSPATIO_SESSION_START_GRACE_SECONDS", "1",
    "A live session's block 0 starts at the client's first command, or after this long without one (so cameras "
    "sent right after `ready` apply to block 0).")

ALL: tuple[EnvVar, ...] = (
    ATTENTION, CROSS_ATTENTION, ROPE_PRECISION, FUSED_GELU, PARITY_PACK, WEIGHTS, COMPILE_CACHE, CACHE_DIR, STORE, STORE_RETRY_SECONDS, S3_ACCESS_KEY, S3_SECRET_KEY, GRPC_ADDRESS,
    METRICS_ADDRESS, DEVICE, MAX_IN_FLIGHT, MAX_QUEUE, MAX_STREAMS, CAPTION_ADDRESS, DEPTHRENDER_ADDRESS, GENERATOR_ADDRESS,
    GENERATOR_V1_5_ADDRESS, MODEL_VERSION,
    JOB_LEASE_SECONDS, MAX_PARALLEL_JOBS, DRAIN_SECONDS, FP8, STAGE_WAIT_SECONDS, STREAM_RENDER, COMPILE, COMPILE_AUTOENCODERS,
    AUTOENCODER_CHANNELS_LAST,
    DIT_CHECKPOINT, DA3_DIR, FLORENCE_DIR, TAEHV_CHECKPOINT, MAX_INPUT_PIXELS, MAX_INPUT_FRAMES, MAX_OUTPUT_FRAMES,
    TLS_CERT, TLS_KEY, TLS_CLIENT_CA, TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY, TLS_SERVER_NAME, ALLOW_PLAINTEXT,
    TOKEN, TOKEN_FILE, TENANTS_FILE, SERVICE_TOKEN_FILE,
    STAGE_BUDGET_BASE_SECONDS, CAPTION_SECONDS_PER_FRAME, DEPTH_SECONDS_PER_FRAME, RENDER_SECONDS_PER_FRAME,
    GENERATE_SECONDS_PER_BLOCK, SHARED_GPU, CAPTION_MAX_NEW_TOKENS,
    MAX_SESSIONS, SESSION_IDLE_SECONDS, SESSION_MAX_BLOCKS, SESSION_START_GRACE_SECONDS, TENANT_MAX_SESSIONS,
)  # fmt: skip


def get(var: EnvVar) -> str:
    return os.environ.get(var.name, var.default)


def cache_dir() -> Path:
    return Path(get(CACHE_DIR)).expanduser().resolve()


def store_url() -> str:
    """INSPATIO_STORE, else the per-user local-folder store."""
    return get(STORE) or (cache_dir() / "store").as_uri()


def get_flag(var: EnvVar) -> bool:
    """A 0/1 variable; anything else is refused, so a typo never silently means "off"."""
    value = get(var).strip()
    if value not in ("0", "1"):
        raise ValueError(f"{var.name}={value!r}: expected 0 or 1")
    return value == "1"


def get_positive_int(var: EnvVar) -> int:
    """A whole number of at least 1; anything else is refused, naming the variable."""
    value = get(var).strip()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{var.name}={value!r}: expected a whole number, at least 1")
    return int(value)


def get_positive_float(var: EnvVar) -> float:
    """A finite number above 0 (seconds, say); anything else is refused, naming the variable."""
    value = get(var).strip()
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (0 < number < float("inf")):
        raise ValueError(f"{var.name}={value!r}: expected a number above 0")
    return number


def get_auto_flag(var: EnvVar) -> bool | None:
    """An auto/0/1 variable: None for auto (the caller decides), else the flag; anything else is refused."""
    value = get(var).strip().lower()
    if value not in ("auto", "0", "1"):
        raise ValueError(f"{var.name}={value!r}: expected auto, 0 or 1")
    return None if value == "auto" else value == "1"
