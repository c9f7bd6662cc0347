#!/usr/bin/env bash
# `make image-test`: builds the four role images with podman and runs them here as a deployment would,
# on 127.0.0.1 only: read-only root filesystem, tiny weights mounted read-only, a folder store, one job
# through the SDK, then SIGTERM. The GPU roles are built with CPU torch (GPU_TORCH=cpu) and run with
# INSPATIO_DEVICE=cpu. Needs root, podman and (once, for the base image) mmdebstrap: see README.md.
# Environment: PYTHON (with the project's dependencies; default .venv/bin/python), TORCH_WHEELS (a
# folder holding torch-<version>+cpu wheels; default /opt/wheels), TAG (default image-test),
# KEEP=1 (leave the work folder and the containers' logs).
set -euo pipefail
cd "$(dirname "$0")/../../.."
repo=$PWD
PYTHON=${PYTHON:-$repo/.venv/bin/python}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
TAG=${TAG:-image-test}
BASE_IMAGE=${BASE_IMAGE:-localhost/inspatio-world/python-base:3.11-bookworm}
ROLES=(coordinator caption depthrender generator)
export PYTHONPATH=$repo/libs:$repo

die() { echo "image-test: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (rootful podman: the image-test containers use host networking)"
command -v podman >/dev/null || die "podman missing: apt-get update && apt-get install -y podman buildah mmdebstrap runc"
# runc, not Debian 12's default crun: crun 1.8 refuses hosts with cgroup v1 controllers and a v2 mount
# ("cgroups in hybrid mode not supported"). CONTAINER_RUNTIME=crun where it works.
RUNTIME=${CONTAINER_RUNTIME:-runc}
command -v "$RUNTIME" >/dev/null || die "$RUNTIME missing: apt-get install -y $RUNTIME"
podman() { command podman --runtime "$RUNTIME" "$@"; }
[[ -x $PYTHON ]] || die "$PYTHON missing: make install (or PYTHON=/path/to/python with the project installed)"
compgen -G "$TORCH_WHEELS/torch-*+cpu-*.whl" >/dev/null \
  || die "no CPU torch wheel in $TORCH_WHEELS (TORCH_WHEELS=folder; pip download 'torch==2.13.0+cpu' into one)"
# podman's default limits (open files 1048576, processes 32768) can exceed what this host lets a
# container set ("setrlimit: Operation not permitted"): the host's open-files limit, a modest nproc.
ulimit_opts="--ulimit=nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit=nproc=8192:8192"

work=$(mktemp -d "${TMPDIR:-/tmp}/inspatio-image-test.XXXXXX")
chmod 755 "$work"  # the store below it is written by uid 10001
cleanup() {
  for role in "${ROLES[@]}"; do podman rm -f -t 0 "inspatio-it-$role" >/dev/null 2>&1 || true; done
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== base image"
deploy/docker/image-test/base.sh

echo "== build (podman; GPU roles with CPU torch from $TORCH_WHEELS)"
# Bind mounts for the RUN steps only, so nothing of them stays in an image: the wheel folder (pip finds
# torch there: TORCH_CPU_PIP), and the host's CA bundle over the image's (Debian's pip reads the system
# bundle; where PyPI is reached through a TLS-inspecting proxy, its CA is in the host's bundle only).
# Fixed paths keep the build arguments, and so the layer cache, the same from run to run.
ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
build_start=$SECONDS
ENGINE=podman ROLES="${ROLES[*]}" BUILD_OPTS="--runtime=$RUNTIME --network=host $ulimit_opts \
--volume=$TORCH_WHEELS:/tmp/torch-wheels:ro --volume=$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro \
--build-arg=PYTHON_IMAGE=$BASE_IMAGE --build-arg=GPU_TORCH=cpu --build-arg=FLASH_ATTN=skip --build-arg=TORCH_CPU_PIP=--find-links=/tmp/torch-wheels" \
  deploy/docker/build.sh "$TAG"
build_s=$((SECONDS - build_start))

echo "== tiny weights, clip, store"
"$PYTHON" deploy/docker/image-test/job.py prepare "$work"
chmod -R a+rX "$work/weights" "$work/clip.mp4"
install -d -o 10001 -g 10001 "$work/store"

echo "== start (host network, 127.0.0.1 only, read-only root)"
declare -A grpc metrics
read -r -a ports <<< "$("$PYTHON" deploy/docker/image-test/job.py ports $((2 * ${#ROLES[@]})))"
for i in "${!ROLES[@]}"; do
  grpc[${ROLES[$i]}]=127.0.0.1:${ports[$((2 * i))]}; metrics[${ROLES[$i]}]=127.0.0.1:${ports[$((2 * i + 1))]}
done
for role in "${ROLES[@]}"; do
  args=(--detach --name "inspatio-it-$role" --network host --read-only $ulimit_opts
        --tmpfs /tmp:rw,mode=1777 --tmpfs /var/cache/inspatio:rw,mode=1777
        -v "$work/store:$work/store:rw"  # same path inside: the SDK downloads its file:// URLs here
        -e "INSPATIO_GRPC_ADDRESS=${grpc[$role]}" -e "INSPATIO_METRICS_ADDRESS=${metrics[$role]}"
        -e "INSPATIO_STORE=file://$work/store")
  if [[ $role == coordinator ]]; then
    args+=(-e "INSPATIO_CAPTION_ADDRESS=${grpc[caption]}" -e "INSPATIO_DEPTHRENDER_ADDRESS=${grpc[depthrender]}"
           -e "INSPATIO_GENERATOR_ADDRESS=${grpc[generator]}")
  else
    args+=(-v "$work/weights:/weights:ro" -e INSPATIO_DEVICE=cpu)
  fi
  podman run "${args[@]}" "inspatio-world/$role:$TAG" >/dev/null
  echo "$role: gRPC ${grpc[$role]}, metrics ${metrics[$role]}"
done
"$PYTHON" deploy/docker/image-test/job.py wait --timeout 180 "${grpc[@]}"

echo "== users"
for role in "${ROLES[@]}"; do
  users=$(podman top "inspatio-it-$role" user huser args | tail -n +2)
  echo "$role:"; sed 's/^/  /' <<< "$users"
  [[ $(podman exec "inspatio-it-$role" id -u) == 10001 ]] || die "$role does not run as uid 10001"
  # every process, tini included: the user in the container and on the host (rootful: the same uid)
  awk '$1 != "inspatio" && $1 != "10001" || ($2 != "10001" && $2 != "inspatio") { exit 1 }' <<< "$users" \
    || die "$role has a process not running as uid 10001"
done

echo "== job through the SDK"
"$PYTHON" deploy/docker/image-test/job.py run "${grpc[coordinator]}" "$work"

echo "== SIGTERM: each container drains and exits 0"
failed=0
for role in "${ROLES[@]}"; do
  stop_start=$(date +%s.%N)
  podman kill --signal TERM "inspatio-it-$role" >/dev/null
  code=$(podman wait "inspatio-it-$role")
  stop_s=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $stop_start }")
  logs=$(podman logs "inspatio-it-$role" 2>&1)
  echo "$role: exit $code after ${stop_s} s; last log lines:"
  tail -n 3 <<< "$logs" | cut -c 1-220 | sed 's/^/  /'
  # exit 0 alone would also follow a crash handler: the server must have drained and stopped
  if [[ $code != 0 ]] || ! grep -q '"draining ' <<< "$logs" || ! grep -q '"stopped ' <<< "$logs"; then
    failed=1; echo "$logs" > "$work/$role.log"
  fi
done
[[ $failed == 0 ]] || die "a container did not drain and exit 0 (KEEP=1 keeps the logs in $work)"

echo "== images"
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "inspatio-world/[^ ]+:($TAG|3.11-bookworm) "
echo "shared and unique parts (the four share every layer but the last few):"
podman system df -v | grep -E "^(REPOSITORY|[^ ]*inspatio-world/[^ ]+ +($TAG|3.11-bookworm) )"
echo "build of the four images: $build_s s"
echo "image-test: OK"
