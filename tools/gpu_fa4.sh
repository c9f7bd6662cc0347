#!/usr/bin/env bash
# FlashAttention-4 on the device machine (whose image lacks it) for `inspatio bench generator`.
# Its CUDA 13 DSL library wheel (92 MB) is more than one carry (64 MiB), so it travels in two parts:
#   here:    bash tools/gpu_fa4.sh download            -> .whl-fa4a/ (part 1), .whl-fa4b/ (part 2 + the rest)
#   call 1:  carry .whl-fa4a  ->  bash tools/gpu_fa4.sh stash      (keeps part 1 in the ignored .gpu-bench/)
#   call 2:  carry .whl-fa4b  ->  bash tools/gpu_fa4.sh install    (into .gpu-site/; send it within the
#            machine's idle release, ~30 s, or part 1 is gone)
# then run with PYTHONPATH=$PWD/.gpu-site:$PWD/.gpu-site/nvidia_cutlass_dsl/dsl_packages:$PWD/libs:$PWD
# (a --target install does not process the DSL's .pth file, hence its folder on the path).
set -euo pipefail
cd "$(dirname "$0")/.."
libs=nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
case "${1:?usage: tools/gpu_fa4.sh download|stash|install}" in
  download)
    mkdir -p .whl-fa4a .whl-fa4b /tmp/fa4-wheels
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 -d /tmp/fa4-wheels \
      flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
      nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 quack-kernels==0.6.5 \
      apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5 ftfy==6.3.1 wcwidth==0.9.4
    split -b 48000000 -d "/tmp/fa4-wheels/$libs" /tmp/fa4-wheels/part
    mv /tmp/fa4-wheels/part00 .whl-fa4a/ && mv /tmp/fa4-wheels/part01 .whl-fa4b/
    sha256sum "/tmp/fa4-wheels/$libs" | cut -c1-64 > .whl-fa4b/libs.sha256
    find /tmp/fa4-wheels -name '*.whl' ! -name "$libs" -exec mv {} .whl-fa4b/ \;
    du -sh .whl-fa4a .whl-fa4b ;;
  stash)
    mkdir -p .gpu-bench && cp .whl-fa4a/part00 .gpu-bench/fa4-part00 ;;
  install)
    cat .gpu-bench/fa4-part00 .whl-fa4b/part01 > "/tmp/$libs"
    echo "$(cat .whl-fa4b/libs.sha256)  /tmp/$libs" | sha256sum -c
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu-site \
      .whl-fa4b/*.whl "/tmp/$libs"
    PYTHONPATH="$PWD/.gpu-site:$PWD/.gpu-site/nvidia_cutlass_dsl/dsl_packages" python -c "import flash_attn.cute" ;;
esac
