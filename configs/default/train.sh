#!/usr/bin/env bash
# The exact recipe of the bundled default model: stage 1, prompts, few-shot cores on the real pairs,
# the classifier, evaluation and export. Run from the repository root with the venv active (make
# test creates it). Stage 1 is long on a CPU: it checkpoints every 250 steps and continues with
# `bash configs/default/train.sh --resume` (the other stages are minutes and simply rerun).
set -euo pipefail
RUN=${RUN:-runs/default}
VERSION=${VERSION:-tap-default-$(date +%Y%m%d)}
DATA=../shared/data
VAL=$DATA/validation
tap-train pretrain --config configs/default/pretrain.yaml --out "$RUN/pretrain" "$@"
# Stage 1b: a short fine-tune of the backbone on long downpour streaks, on its own schedule.
tap-train pretrain --config configs/default/pretrain-finetune.yaml --out "$RUN/pretrain-finetune" \
    init="$RUN/pretrain/model.safetensors"
# Stage 1c (issue 30): flat skies and walls painted into the clean photos and the clear photos of
# weather-photos (train split) as a clean source, so flat greys stay as they are.
tap-train pretrain --config configs/default/pretrain-noharm.yaml --out "$RUN/pretrain-noharm" \
    init="$RUN/pretrain-finetune/model.safetensors"
tap-train prompt-tune --config configs/default/prompt-tune.yaml --init "$RUN/pretrain-noharm/model.safetensors" \
    --out "$RUN/prompt-tune"
# Few-shot: a weather's whole adaptation to real pairs is its 256-number core (backbone and the
# other weathers untouched). Raindrop only: the rain core tuned on train/rain-heavy lowered
# Rain100H-dev on three backbones (-0.16, -0.53, -0.50 dB: docs/training_history.md), so rain keeps its
# stage-2 core. To try it again: tap-train tune-core rain ... --data "$DATA/train/rain-heavy".
tap-train tune-core raindrop --config configs/default/tune-core.yaml --init "$RUN/prompt-tune/model.safetensors" \
    --data "$DATA/train/raindrop" --out "$RUN/tune-raindrop"
# Auto mode: a classifier trained here (on synthetic weather, then real photos labelled by weather,
# then calibrated on their dev split), or with CLASSIFIER_FROM=weights.safetensors an earlier
# model's calibrated classifier kept as it is (its keys re-solved for the new prompts, its
# temperature and rule carried: the same decisions).
if [ -n "${CLASSIFIER_FROM:-}" ]; then
    tap-train reuse-classifier "$RUN/tune-raindrop/model.safetensors" --classifier "$CLASSIFIER_FROM" \
        --out "$RUN/calibrated"
else
    tap-train tune-classifier --config configs/default/classifier.yaml --init "$RUN/tune-raindrop/model.safetensors" \
        --out "$RUN/classifier"
    tap-train tune-classifier --config configs/default/classifier-real.yaml --init "$RUN/classifier/model.safetensors" \
        --out "$RUN/classifier-real"
    tap-train calibrate "$RUN/classifier-real/model.safetensors" --weather-photos "$DATA/weather-photos" \
        --out "$RUN/calibrated"
fi
tap-train evaluate "$RUN/calibrated/model.safetensors" --out "$RUN/eval" --synthetic 8 --synthetic-v2 \
    --paired "rain=$VAL/rain100h" --paired "haze=$VAL/sots-indoor" --real "$DATA/real" \
    --weather-photos "$DATA/weather-photos" --no-harm-clear "$DATA/weather-photos/clear" \
    --no-harm-haze "$DATA/real/haze" --no-harm-rain "$DATA/real/rain" --json "$RUN/eval/summary.json"
tap-train export "$RUN/calibrated" --out artifacts/default --model-version "$VERSION" --fp16 --int8 \
    --metrics "$RUN/eval/summary.json" --recipe configs/default/README.md
