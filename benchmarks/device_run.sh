#!/usr/bin/env bash
# The one script a session with a GPU runs (issue 9), in a single device call:
#
#   run(command="bash benchmarks/device_run.sh", carry=[".whl"], timeout_s=590)
#
# It installs nothing the device already has: the device image's python3
# holds torch (CUDA), numba, numba-cuda and the CUDA toolkit, OpenCV,
# scikit-image, pytest; nlmeans itself runs from this checkout (PYTHONPATH).
# Only modules that fail to import are installed, from wheels carried in .whl/
# (the device reaches no registry). PyWavelets (scikit-image's estimate_sigma
# needs it) and pypng (nlmeans.io reads PNG with it; seen missing on an H200
# there) are the likely ones; prepare them here, once, from the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl PyWavelets pypng
#
# Steps (each with its own time limit, the most important first; everything
# lands in $OUT): environment facts, the CUDA kernel tests on the GPU (no
# simulator), bench_gpu.py (2048 x 2048 tables against all CPU cores),
# bench_speed.py case t (thread scaling). Without the device tool, OUT
# defaults to ./out (ignored by git).
set -uo pipefail
cd "$(dirname "$0")/.."
unset NUMBA_ENABLE_CUDASIM
DEVICE_MODULES="numpy numba numba_cuda scipy skimage pywt png cv2 imageio tifffile PIL torch \
    safetensors typer rich pytest hypothesis"
source benchmarks/device_env.sh

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
    nproc
    "$PY" - <<'PYEOF'
import numba, torch
from nlmeans.device import cuda_unavailable_reason
print("numba", numba.__version__, "threads", numba.config.NUMBA_NUM_THREADS)
try:
    import numba_cuda
    print("numba-cuda", getattr(numba_cuda, "__version__", "?"))
except ImportError as exc:
    print("numba-cuda missing:", exc)
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())
print("classical kernels on the GPU:", cuda_unavailable_reason() or "usable")
print("network on the GPU:", cuda_unavailable_reason("neural") or "usable")
PYEOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s, at $((SECONDS - start))s)"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s"
}

# 1. The CUDA kernels against the CPU kernels, on the GPU (several compile).
step tests 200 "$PY" -m pytest -q -p no:cacheprovider -rs tests/cuda_cases.py tests/test_cuda.py \
    tests/test_threads.py --deselect tests/test_cuda.py::test_cuda_kernels_match_the_cpu_kernels
# 2. GPU against all cores: classical, network, training.
step bench_gpu 200 "$PY" benchmarks/bench_gpu.py --repeats 3 --budget 5 --out "$OUT/gpu.md"
# 3. Thread scaling of the CPU kernel against OpenCV.
step bench_threads 150 "$PY" benchmarks/bench_speed.py --cases t --repeats 2 --budget 4 \
    --out "$OUT/speed_threads.md"
echo "done after $((SECONDS - start))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
