#!/usr/bin/env bash
# Install carried wheels into .gpu-site/ (an ignored folder that stays on a warm device machine
# between calls) and check what the local stack imports. The GPU image lacks av, ftfy, minio, the
# grpcio extras and the DA3 packages, and its grpcio 1.84 is older than the committed stubs need
# (1.85.1). The wheels (Python 3.12, manylinux) are more than one carry (64 MiB) holds, so:
#   call 1: carry .whl      ->  bash tools/gpu_site.sh .whl
#   call 2: carry .whl-da3  ->  bash tools/gpu_site.sh .whl-da3 --check
# then run with PYTHONPATH=$PWD/.gpu-site:$PWD/libs:$PWD.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${1:?usage: tools/gpu_site.sh WHEEL_DIR [--check]}"
if python -m pip --version >/dev/null 2>&1; then
  python -m pip install --quiet --no-deps --no-index --upgrade --target .gpu-site "$wheels"/*.whl
else  # no pip in the image: a wheel is a zip of the files site-packages would hold
  for wheel in "$wheels"/*.whl; do python -m zipfile -e "$wheel" .gpu-site; done
fi
echo "installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into .gpu-site"
if [[ "${2:-}" == "--check" ]]; then
  PYTHONPATH="$PWD/.gpu-site:$PWD/libs:$PWD" python - <<'PY'
import importlib
missing = []
for name in ("av", "ftfy", "grpc", "grpc_health", "grpc_reflection", "grpc_status", "minio", "prometheus_client",
             "depth_anything_3", "omegaconf", "addict", "einops", "cv2", "evo.core.trajectory", "plyfile"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every failure, not just ImportError
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
import grpc
print("grpcio", grpc.__version__)
import inspatio_world.rpc.generated.coordinator_pb2_grpc  # the stubs refuse an older grpcio
print("missing:", missing or "nothing")
raise SystemExit(1 if missing else 0)
PY
fi
