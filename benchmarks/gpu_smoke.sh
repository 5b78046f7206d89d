#!/usr/bin/env bash
# GPU smoke test of hf-mig on one CUDA device, offline, in under 10 minutes: builds a small
# random Llama on the machine, times the transformers generation backend and the DEITA and IFD
# scorers in bf16 over a batch-size sweep (rows/s, tokens/s), then runs a few bf16 training
# steps through `hf-mig train` with recipes/tiny_cpu.yaml. Needs torch and transformers (no
# vLLM); downloads nothing. Exits non-zero without a CUDA device.
#
#   bash benchmarks/gpu_smoke.sh                       # defaults: batches 1,8,32,64
#   bash benchmarks/gpu_smoke.sh --batch-sizes 16,128 --train-steps 50
#   bash benchmarks/gpu_smoke.sh --dry-run             # the same code paths on CPU, one batch
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# the interpreter: $PYTHON, else python, else python3
if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif command -v python >/dev/null 2>&1; then
    python=python
else
    python=python3
fi
if ! command -v "$python" >/dev/null 2>&1; then
    echo "gpu_smoke.sh: error: no Python interpreter: '$python' is not on PATH (set PYTHON to" \
        "the Python of the environment where hf-mig is installed)" >&2
    exit 2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
dry=0
for arg in "$@"; do
    [[ "$arg" == "--dry-run" ]] && dry=1
done
if ! failed=$("$python" -c 'import torch' 2>&1); then
    echo "gpu_smoke.sh: error: $python cannot import torch (${failed##*$'\n'}); install hf-mig" \
        "with torch into it (pip install -e .), or set PYTHON to the Python of that environment" >&2
    exit 2
fi
if [[ "$dry" == 0 ]]; then
    if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu_smoke.sh: error: torch imports, but no CUDA device is visible to it; run it on" \
            "a GPU machine (check nvidia-smi and CUDA_VISIBLE_DEVICES), or pass --dry-run for" \
            "the CPU check" >&2
        exit 2
    fi
    "$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
    command -v nvidia-smi >/dev/null && nvidia-smi -L || true
fi
exec "$python" "$here/gpu_smoke.py" "$@"
