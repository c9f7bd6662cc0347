#!/usr/bin/env bash
# Builds the four images inspatio-world/<role>:<tag> (the names the Helm chart pulls).
#   deploy/docker/build.sh [TAG]       TAG defaults to the project version in pyproject.toml
# Environment: REGISTRY=ghcr.io/acme (prefix, and push after building), FLASH_ATTN=fa4|skip|build (the
# GPU images' attention kernels, default fa4: the `gpu` extra; see the Dockerfile), ROLES="generator coordinator" (a subset), ENGINE=podman (any
# docker-compatible CLI; default docker), BUILD_OPTS="--network host --build-arg GPU_TORCH=cpu" (more
# options for every build; make image-test uses it).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")}
prefix=${REGISTRY:+$REGISTRY/}inspatio-world
engine=${ENGINE:-docker}
read -r -a opts <<< "${BUILD_OPTS:-}"
for role in ${ROLES:-coordinator caption depthrender generator}; do
  image="$prefix/$role:$tag"
  start=$SECONDS
  # The GPU roles share every layer but the last, so the second and third builds take seconds.
  # podman/buildah read <Dockerfile>.dockerignore only when named (--ignorefile); docker finds it itself.
  ignore=()
  if [[ $engine != docker ]]; then ignore=(--ignorefile deploy/docker/Dockerfile.dockerignore); fi
  "$engine" build -f deploy/docker/Dockerfile "${ignore[@]}" --target "$role" \
    --build-arg "FLASH_ATTN=${FLASH_ATTN:-fa4}" "${opts[@]}" -t "$image" .
  echo "built $image in $((SECONDS - start)) s"
  if [[ -n "${REGISTRY:-}" ]]; then "$engine" push "$image"; fi
done
