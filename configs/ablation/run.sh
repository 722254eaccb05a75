#!/usr/bin/env bash
# Ablations of stage 2 on one pretrained backbone, the same step budget for every arm:
#   stage 1 only | low-rank prompts + contrastive | full-rank prompts of equal size | no contrastive terms.
# Then the t-SNE with vs without the contrastive terms, and the comparison table (docs/ablation_table.md).
set -euo pipefail
RUN=${RUN:-runs/default}
OUT=${OUT:-runs/ablation}
STEPS=${STEPS:-1500}  # the bundled recipe's stage-2 budget (configs/default/prompt-tune.yaml)
INIT=$RUN/pretrain/model.safetensors
VAL=../shared/data/validation
tune() { tap-train prompt-tune --config configs/default/prompt-tune.yaml --init "$INIT" --out "$OUT/$1" "steps=$STEPS" "${@:2}"; }
evaluate() {
    tap-train evaluate "$1" --out "$OUT/eval-$2" --synthetic 8 \
        --paired "rain=$VAL/rain100h" --paired "haze=$VAL/sots-indoor" > /dev/null
}
tune lowrank
# Full rank: P = G + dense task tokens; 5 tokens make the prompt parameters (G + all task parts,
# 12,000) match the low-rank arm's G + U + V + cores (13,056).
tune fullrank prompt.mode=full prompt.tokens=5
tune no-contrastive loss.contrastive=false
evaluate "$INIT" stage1
for arm in lowrank fullrank no-contrastive; do evaluate "$OUT/$arm/model.safetensors" "$arm"; done
tap-train compare "stage 1 only=$OUT/eval-stage1/metrics.json" \
    "stage 1 + low-rank prompts + contrastive=$OUT/eval-lowrank/metrics.json" \
    "full-rank prompts of equal size=$OUT/eval-fullrank/metrics.json" \
    "low-rank prompts, no contrastive terms=$OUT/eval-no-contrastive/metrics.json" \
    --method "given task" --method auto --out docs/ablation_table.md
tap-train tsne "$OUT/lowrank/model.safetensors" --compare "$OUT/no-contrastive/model.safetensors" --out docs/tsne.png
