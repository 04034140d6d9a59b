#!/usr/bin/env bash
# The GPU check (issue 14), the one script to run on a GPU machine; under 8 minutes on one GPU:
#   1. the tests that need CUDA (tests/test_cuda.py: fit on CUDA reproducible and close to CPU, batched reruns
#      equal to separate fits on CUDA);
#   2. benchmarks/gpu_check.py: seconds per epoch of every digit-pair family, the K=15 rerun benchmark (sequential
#      vs batched), fp32 / TF32 / bf16 autocast.
# Needs python3 with torch, torchvision, PyYAML, pytest (no Ray, Optuna, MLflow or MNIST). Run from anywhere:
#   bash benchmarks/gpu_check.sh                 # PYTHON=... picks the interpreter; $OUT set: log in $OUT/gpu_check.log
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
check() {
    start=$SECONDS
    echo "== gpu_check.sh $(date -u +%FT%TZ) on $(hostname)," \
        "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"

    echo "== 1. tests/test_cuda.py"
    timeout 150 "$PY" -m pytest -q tests/test_cuda.py -p no:cacheprovider
    tests=$?

    echo "== 2. benchmarks/gpu_check.py"
    timeout 240 "$PY" benchmarks/gpu_check.py "$@"
    bench=$?

    echo "== done in $((SECONDS - start)) s: tests exit $tests, benchmark exit $bench"
    [ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
}

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    check "$@" 2>&1 | tee "$OUT/gpu_check.log"
    exit "${PIPESTATUS[0]}"
fi
check "$@"
