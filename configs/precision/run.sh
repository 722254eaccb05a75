#!/usr/bin/env bash
# bf16 autocast vs fp32 at equal steps (issue 13): two 1000-step stage-1 runs that differ only in
# `amp`, each evaluated on the dev sets and synthetic validation; table in bench/results/train_precision.md.
# The two arms can run as parallel processes: ARMS=bf16 / ARMS=fp32, then ARMS= for the table.
set -euo pipefail
OUT=${OUT:-runs/precision}
STEPS=${STEPS:-1000}
ARMS=${ARMS:-bf16 fp32}
TABLE=${TABLE:-bench/results/train_precision.md}
VAL=../shared/data/validation
for arm in $ARMS; do
    amp=true
    [ "$arm" = fp32 ] && amp=false
    tap-train pretrain --out "$OUT/$arm" "steps=$STEPS" threads=1 "amp=$amp" channels_last=true log_every=50 \
        save_every=500 data.batch_size=8 data.crop=128 optim.warmup_steps=100 "$@"
    tap-train evaluate "$OUT/$arm/model.safetensors" --out "$OUT/$arm/eval" --synthetic 8 \
        --paired "rain=$VAL/rain100h" --paired "haze=$VAL/sots-indoor" > /dev/null
done
[ -f "$OUT/bf16/eval/metrics.json" ] && [ -f "$OUT/fp32/eval/metrics.json" ] || exit 0
tap-train compare "bf16 autocast=$OUT/bf16/eval/metrics.json" "fp32=$OUT/fp32/eval/metrics.json" --out "$TABLE"
