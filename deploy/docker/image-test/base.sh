#!/usr/bin/env bash
# The Python base image for `make image-test`, bootstrapped from Debian's packages (no container
# registry needed): Debian 12 with python3.11, python3-venv, tini and ca-certificates, imported into
# podman as $BASE_IMAGE. Nothing is done when that image exists already (rm it to rebuild).
#   deploy/docker/image-test/base.sh            needs mmdebstrap and podman, as root
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-localhost/inspatio-world/python-base:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE: present"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: apt-get install -y mmdebstrap" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
# minbase: Priority required only (passwd brings useradd); docs, man pages and locales left out.
mmdebstrap --quiet --variant=minbase --include=python3.11,python3-venv,tini,ca-certificates,passwd \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$work/rootfs.tar" "$MIRROR"
# An imported tarball has no environment: give it what python:3.11-slim sets.
podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE: bootstrapped in $((SECONDS - start)) s"
