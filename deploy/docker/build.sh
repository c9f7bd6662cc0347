#!/usr/bin/env bash
# Builds the four images inspatio-world/<role>:<tag> (the names the Helm chart pulls).
#   deploy/docker/build.sh [TAG]       TAG defaults to the project version in pyproject.toml
# Environment: REGISTRY=ghcr.io/acme (prefix, and push after building), FLASH_ATTN=build (compile the
# `gpu` extra into the GPU images), ROLES="generator coordinator" (a subset).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")}
prefix=${REGISTRY:+$REGISTRY/}inspatio-world
for role in ${ROLES:-coordinator caption depthrender generator}; do
  image="$prefix/$role:$tag"
  # The GPU roles share every layer but the last, so the second and third builds take seconds.
  docker build -f deploy/docker/Dockerfile --target "$role" --build-arg "FLASH_ATTN=${FLASH_ATTN:-skip}" -t "$image" .
  if [[ -n "${REGISTRY:-}" ]]; then docker push "$image"; fi
done
