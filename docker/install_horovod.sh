#!/usr/bin/env bash
# Build Horovod against the TensorFlow of an environment and install it; or check what the
# installed Horovod was built with. One script for both places that need it:
#
#   * docker/Dockerfile (the SageMaker training image: the TF 2.14 training image has no
#     Horovod): --with-mpi --with-gloo --gpu-operations nccl
#   * the Makefile's set-up (CPU, this machine's TensorFlow): --without-mpi --with-gloo,
#     the wheel cached in ~/.cache/reviewlake/wheels/tf<version> so it is built once
#
#   install_horovod.sh [build options] [--wheel-dir DIR] [--dry-run]   build (unless DIR has
#                                                                       the wheel) and install
#   install_horovod.sh --check [build options]                         verify the installed one
#
# Build options: --version V (default 0.28.1), --with-mpi | --without-mpi (default without),
# --with-gloo | --without-gloo (default with), --gpu-operations nccl|none (default none),
# --nccl-home DIR, --python PY (default python3), --pip "PIP" (default "PY -m pip"),
# --constraints FILE, --jobs N (default nproc).
# --check imports horovod.tensorflow with the environment's TensorFlow and compares the
# controllers (MPI, Gloo) and tensor operations (NCCL) it was built with against the build
# options: one line and exit 1 when they differ, one line of what it has otherwise.
# --dry-run prints the build environment and commands instead of running them.
set -euo pipefail

version=0.28.1
mpi=0
gloo=1
gpu_ops=none
nccl_home=""
python=python3
pip=""
constraints=""
wheel_dir=""
jobs="$(nproc 2>/dev/null || echo 2)"
mode=install
dry_run=0

die() { echo "install_horovod.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift ;;
    --with-mpi) mpi=1 ;;
    --without-mpi) mpi=0 ;;
    --with-gloo) gloo=1 ;;
    --without-gloo) gloo=0 ;;
    --gpu-operations) gpu_ops="$(echo "$2" | tr '[:upper:]' '[:lower:]')"; shift ;;
    --nccl-home) nccl_home="$2"; shift ;;
    --python) python="$2"; shift ;;
    --pip) pip="$2"; shift ;;
    --constraints) constraints="$2"; shift ;;
    --wheel-dir) wheel_dir="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    --check) mode=check ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$gpu_ops" in nccl|none) ;; *) die "--gpu-operations must be nccl or none, got $gpu_ops" ;; esac
[ "$mpi" = 1 ] || [ "$gloo" = 1 ] || die "Horovod needs a controller: --with-mpi or --with-gloo"
pip="${pip:-$python -m pip}"

if [ "$mode" = check ]; then
  export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
  exec "$python" - "$version" "$mpi" "$gloo" "$gpu_ops" <<'EOF'
import sys

version, mpi, gloo, gpu_ops = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4]
try:
    import tensorflow as tf
    import horovod
    import horovod.tensorflow as hvd
except Exception as exc:  # not installed, or built against another TensorFlow
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    sys.exit(f"install_horovod.sh --check: horovod.tensorflow does not import: {first}")
have = {"mpi": bool(hvd.mpi_built()), "gloo": bool(hvd.gloo_built()),
        "nccl": bool(hvd.nccl_built())}
want = {"mpi": mpi, "gloo": gloo, "nccl": gpu_ops == "nccl"}
wrong = [f"{k} {'missing' if want[k] else 'present'}" for k in want if have[k] != want[k]]
if horovod.__version__ != version:
    wrong.insert(0, f"version {horovod.__version__}, not {version}")
summary = (f"horovod {horovod.__version__} on tensorflow {tf.__version__}: controllers "
           f"{' '.join(k for k in ('mpi', 'gloo') if have[k]) or 'none'}, tensor operations "
           f"{'nccl' if have['nccl'] else 'cpu'}")
if wrong:
    sys.exit(f"install_horovod.sh --check: {summary}; expected otherwise ({', '.join(wrong)})")
print(summary)
EOF
fi

# ---- build and install
env_vars=(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
          "MAKEFLAGS=-j$jobs")
if [ "$mpi" = 1 ]; then env_vars+=(HOROVOD_WITH_MPI=1); else env_vars+=(HOROVOD_WITHOUT_MPI=1); fi
if [ "$gloo" = 1 ]; then env_vars+=(HOROVOD_WITH_GLOO=1); else env_vars+=(HOROVOD_WITHOUT_GLOO=1); fi
if [ "$gpu_ops" = nccl ]; then
  env_vars+=(HOROVOD_GPU_OPERATIONS=NCCL)
  [ -n "$nccl_home" ] && env_vars+=("HOROVOD_NCCL_HOME=$nccl_home")
fi
cons=()
[ -n "$constraints" ] && cons=(-c "$constraints")
tmp_wheels=""
if [ -z "$wheel_dir" ]; then
  tmp_wheels="$(mktemp -d)"
  wheel_dir="$tmp_wheels"
fi

run() {  # a command, or (--dry-run) its line
  if [ "$dry_run" = 1 ]; then echo "+ $*"; else "$@"; fi
}

cached="$(ls "$wheel_dir"/horovod-"$version"-*.whl 2>/dev/null | head -1 || true)"
if [ -n "$cached" ]; then
  echo "horovod $version: using the cached wheel $cached"
else
  echo "building Horovod $version against the installed TensorFlow (a few minutes, once):" \
       "${env_vars[*]}"
  run mkdir -p "$wheel_dir"
  # shellcheck disable=SC2086
  run $pip install -q "${cons[@]}" "cmake>=3.13,<4" packaging psutil cloudpickle pyyaml cffi
  stubs=/usr/local/cuda/targets/x86_64-linux/lib/stubs
  if [ "$gpu_ops" = nccl ] && [ -d "$stubs" ]; then
    run ldconfig "$stubs"  # libcuda for the link where no driver is mounted (docker build)
  fi
  # shellcheck disable=SC2086
  run env "${env_vars[@]}" $pip wheel -q --no-build-isolation --no-deps "horovod==$version" \
      -w "$wheel_dir"
  if [ "$gpu_ops" = nccl ] && [ -d "$stubs" ]; then
    run ldconfig  # the stubs out of the cache again: the job's driver is the real one
  fi
fi
# shellcheck disable=SC2086
run $pip install -q "${cons[@]}" "$wheel_dir"/horovod-"$version"-*.whl
[ -n "$tmp_wheels" ] && [ "$dry_run" = 0 ] && rm -rf "$tmp_wheels"
exit 0
