# Sourced by the scripts that run on the device machine (device_run.sh,
# train_on_gpu.sh), from the repository root: the environment they share.
#
# nlmeans runs from this checkout (PYTHONPATH), the CLI package (cli/) under
# its installed name; the device image's python3 has torch (CUDA), numba,
# OpenCV, scikit-image and the rest, and a module that fails to import is
# installed from the wheels carried in .whl/ (the device reaches no
# registry). Sets OUT (default ./out, ignored by git), PY and start.
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/nlmeans-numba-cache}"
start=$SECONDS

site=/tmp/nlmeans-site
mkdir -p "$site"
ln -sfn "$PWD/cli" "$site/nlmeans_cli"
missing=()
for module in ${DEVICE_MODULES:-numpy numba scipy skimage png imageio tifffile torch safetensors typer rich}; do
    "$PY" -c "import $module" 2>/dev/null || missing+=("$module")
done
if ((${#missing[@]})); then
    echo "not importable on the device: ${missing[*]}"
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$site" .whl/*.whl
    else
        echo "no wheels in .whl/ to install them from (see the top of the calling script)"
    fi
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
