#!/usr/bin/env bash
# One command for a GPU owner: onnxruntime CUDA EP in fp32 and fp16 (and TensorRT when it is
# there), 1080p and 4K latency, tile throughput; writes bench/results/gpu.md with the card name.
# Extra arguments go to bench.gpu_engine, e.g. `bash bench/gpu.sh --quick` or
# `bash bench/gpu.sh --bundle artifacts/default` (a bundle exported with --fp16).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}

if ! command -v nvidia-smi >/dev/null; then
    echo "gpu.sh: nvidia-smi not found: this needs an NVIDIA GPU and its driver" >&2
    exit 1
fi
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
"$PY" - <<'PYEOF'
import sys

import onnxruntime as ort

providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, providers)
if "CUDAExecutionProvider" not in providers:
    sys.exit("gpu.sh: this onnxruntime has no CUDA execution provider: pip install 'onnxruntime-gpu[cuda,cudnn]'")
PYEOF
exec "$PY" -m bench.gpu_engine --provider cuda "$@"
