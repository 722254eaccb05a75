#!/usr/bin/env bash
# The exact recipe of the bundled default model: both stages, the classifier, evaluation and export.
# Run from the repository root with the venv active (make test creates it). CPU: ~1.5 h on 2 cores.
set -euo pipefail
RUN=${RUN:-runs/default}
VERSION=${VERSION:-tap-default-$(date +%Y%m%d)}
VAL=../shared/data/validation
tap-train pretrain --config configs/default/pretrain.yaml --out "$RUN/pretrain" "$@"
tap-train prompt-tune --config configs/default/prompt-tune.yaml --init "$RUN/pretrain/model.safetensors" \
    --out "$RUN/prompt-tune"
tap-train tune-classifier --config configs/default/classifier.yaml --init "$RUN/prompt-tune/model.safetensors" \
    --out "$RUN/classifier"
tap-train evaluate "$RUN/classifier/model.safetensors" --out "$RUN/eval" --synthetic 8 \
    --paired "rain=$VAL/rain100h" --paired "haze=$VAL/sots-indoor" --json "$RUN/eval/summary.json"
tap-train export "$RUN/classifier" --out artifacts/default --model-version "$VERSION" --fp16 \
    --metrics "$RUN/eval/summary.json" --recipe configs/default/README.md
