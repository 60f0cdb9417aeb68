#!/usr/bin/env bash
# reviewlake's EMR bootstrap action: runs on every node (primary, core, task) before the
# cluster's applications start, and sets up the Python the steps run with
# (emr.python in the profile, passed to spark-submit as spark.pyspark.python):
#
#   1. Python 3.11 (Amazon Linux 2023 packages; EMR 7.x) and the compilers Horovod needs
#   2. a venv (default /opt/reviewlake/venv)
#   3. the reviewlake wheel (from S3) with the stage dependencies (transformers, tokenizers,
#      pydeequ), boto3, and TensorFlow for the node: tensorflow[and-cuda] where nvidia-smi
#      sees a GPU, tensorflow-cpu elsewhere
#   4. Horovod built against that TensorFlow: Gloo (horovod.spark.run needs no MPI), NCCL
#      all-reduce on GPU nodes that have the CUDA toolkit (else Gloo all-reduce through host
#      memory, which still trains on the GPUs), no PyTorch/MXNet
#
# NCCL for the GPU build needs a header (nccl.h) and a library to link (libnccl.so); pip's
# nvidia-nccl-cu12 (TensorFlow's) has only libnccl.so.2 to load, so it is not used. The
# first of these that has both is built against: --nccl-home DIR (or NCCL_HOME), the CUDA
# toolkit ($CUDA_HOME), /usr; else NVIDIA's libnccl and libnccl-devel packages are installed
# from its CUDA repository for RHEL 9 (Amazon Linux 2023, EMR 7.x), NCCL --nccl VERSION (by
# default the one TensorFlow's pip package brings) built for the toolkit's CUDA major
# version. Without both afterwards the script stops, naming what is missing.
#
# usage: emr_bootstrap.sh WHEEL_S3_URI [--python python3.11] [--venv DIR]
#            [--tensorflow 2.15.1] [--horovod 0.28.1] [--gpu auto|yes|no]
#            [--nccl VERSION] [--nccl-home DIR]
# `reviewlake launch emr --upload-only` ships this script and prints the create-cluster
# argument. REVIEWLAKE_BOOTSTRAP_DRY_RUN=1 prints the commands instead of running them
# (REVIEWLAKE_BOOTSTRAP_SYSROOT, for tests, is where it looks for /usr).
set -euo pipefail

usage="usage: $0 WHEEL_S3_URI [--python P] [--venv DIR] [--tensorflow V] [--horovod V] [--gpu auto|yes|no] [--nccl V] [--nccl-home DIR]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
wheel_uri=$1; shift
python=python3.11
venv=/opt/reviewlake/venv
tf_version=2.15.1
hvd_version=0.28.1
gpu=auto
nccl_version=auto
nccl_home=${NCCL_HOME:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --tensorflow) tf_version=$2; shift 2 ;;
    --horovod) hvd_version=$2; shift 2 ;;
    --gpu) gpu=$2; shift 2 ;;
    --nccl) nccl_version=$2; shift 2 ;;
    --nccl-home) nccl_home=$2; shift 2 ;;
    *) echo "emr_bootstrap.sh: unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
case "$gpu" in auto|yes|no) ;; *) echo "emr_bootstrap.sh: --gpu must be auto, yes or no" >&2; exit 2 ;; esac
case "$wheel_uri" in
  s3://*.whl|/*.whl) ;;
  *) echo "emr_bootstrap.sh: WHEEL_S3_URI must be an s3:// (or local) path to a .whl, got $wheel_uri" >&2; exit 2 ;;
esac

dry_run=${REVIEWLAKE_BOOTSTRAP_DRY_RUN:-0}
run() {
  if [ "$dry_run" = 1 ]; then echo "+ $*"; else echo "+ $*" >&2; "$@"; fi
}
say() { echo "reviewlake bootstrap: $*" >&2; }
die() { echo "emr_bootstrap.sh: $*" >&2; exit 1; }
sysroot=${REVIEWLAKE_BOOTSTRAP_SYSROOT:-}

# nccl_find ROOT: sets nccl_inc and nccl_lib when ROOT has include/nccl.h and libnccl.so
# (lib64/ or lib/); else nccl_missing says which of the two is not there.
nccl_find() {
  local dir
  nccl_inc="" nccl_lib="" nccl_missing=""
  [ -f "$1/include/nccl.h" ] && nccl_inc="$1/include"
  for dir in "$1/lib64" "$1/lib"; do
    if [ -e "$dir/libnccl.so" ]; then nccl_lib=$dir; break; fi
  done
  [ -n "$nccl_inc" ] || nccl_missing="$1/include/nccl.h"
  [ -n "$nccl_lib" ] || nccl_missing="${nccl_missing:+$nccl_missing and }$1/lib64/libnccl.so (or lib/)"
  [ -z "$nccl_missing" ]
}

if [ "$gpu" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    gpu=yes
  else
    gpu=no
  fi
fi
cuda_home=${CUDA_HOME:-/usr/local/cuda}

# 1. interpreter and build tools (Horovod compiles C++; GPU builds also CUDA)
if [ "$dry_run" = 1 ] || ! command -v "$python" >/dev/null 2>&1; then
  run sudo dnf install -y "$python" "$python-devel" "$python-pip"
fi
run sudo dnf install -y gcc-c++ make cmake

# 2. the venv the steps run with
run sudo "$python" -m venv "$venv"
pip=("sudo" "$venv/bin/python" "-m" "pip" "install" "--no-cache-dir" "--disable-pip-version-check")
run "${pip[@]}" --upgrade "pip>=23" "setuptools>=68" wheel

# 3. TensorFlow for this node, the wheel and the stage dependencies
if [ "$gpu" = yes ]; then
  tf_pkg="tensorflow[and-cuda]==$tf_version"
else
  tf_pkg="tensorflow-cpu==$tf_version"
fi
say "node has GPU: $gpu -> $tf_pkg"
wheel_dir=$(mktemp -d /tmp/reviewlake-wheel.XXXXXX)
wheel_file="$wheel_dir/$(basename "$wheel_uri")"
case "$wheel_uri" in
  s3://*) run aws s3 cp --only-show-errors "$wheel_uri" "$wheel_file" ;;
  *) run cp "$wheel_uri" "$wheel_file" ;;
esac
run "${pip[@]}" "$tf_pkg" "${wheel_file}[features,quality]" boto3 matplotlib

# 4. Horovod against the TensorFlow just installed
hvd_env=(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1
         HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 "MAKEFLAGS=-j$(nproc 2>/dev/null || echo 2)")
if [ "$gpu" = yes ]; then
  if [ -x "$cuda_home/bin/nvcc" ]; then
    if [ -n "$nccl_home" ]; then        # given: that one, or stop
      nccl_find "$nccl_home" || die "NCCL at $nccl_home (--nccl-home / NCCL_HOME) has no $nccl_missing: Horovod's NCCL build needs nccl.h and libnccl.so"
    elif nccl_find "$cuda_home"; then
      nccl_home=$cuda_home
    elif nccl_find "$sysroot/usr"; then
      nccl_home=$sysroot/usr
    else
      # NVIDIA's packages: libnccl (libnccl.so.2) and libnccl-devel (nccl.h, libnccl.so)
      cuda_major=$("$cuda_home/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p' | head -n 1)
      cuda_major=${cuda_major:-12}
      if [ "$nccl_version" = auto ]; then
        nccl_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("nvidia-nccl-cu'"$cuda_major"'"))' 2>/dev/null || true)
        nccl_version=${nccl_version:-2.18.3}
      fi
      case "$(uname -m)" in aarch64) repo_arch=sbsa ;; *) repo_arch=x86_64 ;; esac
      say "no nccl.h + libnccl.so here: installing NCCL $nccl_version for CUDA $cuda_major from NVIDIA's repository"
      run sudo curl -fsSL -o /etc/yum.repos.d/cuda-rhel9.repo \
        "https://developer.download.nvidia.com/compute/cuda/repos/rhel9/$repo_arch/cuda-rhel9.repo"
      run sudo dnf install -y "libnccl-$nccl_version-1+cuda$cuda_major*" "libnccl-devel-$nccl_version-1+cuda$cuda_major*"
      nccl_find "$sysroot/usr" || die "no NCCL to build Horovod against: $nccl_missing not found after installing libnccl-devel $nccl_version (pass --nccl-home DIR with include/nccl.h and lib64/libnccl.so)"
      nccl_home=$sysroot/usr
    fi
    hvd_env+=(HOROVOD_GPU_OPERATIONS=NCCL "HOROVOD_CUDA_HOME=$cuda_home"
              "HOROVOD_NCCL_HOME=$nccl_home" "HOROVOD_NCCL_INCLUDE=$nccl_inc"
              "HOROVOD_NCCL_LIB=$nccl_lib" HOROVOD_NCCL_LINK=SHARED)
    say "building Horovod with NCCL ($nccl_inc/nccl.h, $nccl_lib/libnccl.so; CUDA at $cuda_home)"
  else
    say "no CUDA toolkit at $cuda_home: Horovod all-reduces through host memory (Gloo)"
  fi
fi
run "${pip[@]}" "cmake>=3.13,<4" packaging psutil cloudpickle pyyaml cffi
run sudo env "${hvd_env[@]}" "$venv/bin/python" -m pip install --no-cache-dir \
  --disable-pip-version-check --no-build-isolation "horovod==$hvd_version"

# 5. check what the steps will import
run "$venv/bin/python" -c "import reviewlake, tensorflow, transformers, horovod.tensorflow; print('reviewlake', reviewlake.__version__, 'ready')"
run "$venv/bin/horovodrun" --check-build
rm -rf "$wheel_dir"
say "done: $venv"
