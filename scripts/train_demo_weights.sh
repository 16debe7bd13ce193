#!/usr/bin/env bash
# Train the shipped demo weights on the simulated microscope, on a small CPU, and export them.
#
#   scripts/train_demo_weights.sh [STAGE ...]   stages: data train export evaluate (default: all)
#
# data:   simulate the training set (seed TRAIN_SEED) and a held-out set (seed HELDOUT_SEED,
#         never used for training) under $RUN/data/
# train:  four single-organelle RUNets in two lanes of one process each (one torch thread
#         per process), nucleus with the largest budget; logs in $RUN/<organelle>/
# export: ONNX (+ fp16 variant) with parity checks and manifest entries into $WEIGHTS
# evaluate: the container's CLI (inference.py) on the held-out set, then the challenge
#         metrics beside the input and blurred-input baselines: $RUN/eval/metrics*.json
#
# Environment: RUN (runs/demo), WEIGHTS (weights), TRAIN_SEED (11), HELDOUT_SEED (9001),
# STUDIES (12), FOVS (8), SIZE (512), PYTHON (python).
set -euo pipefail

RUN=${RUN:-runs/demo}
WEIGHTS=${WEIGHTS:-weights}
TRAIN_SEED=${TRAIN_SEED:-11}
HELDOUT_SEED=${HELDOUT_SEED:-9001}
STUDIES=${STUDIES:-12}
FOVS=${FOVS:-8}
SIZE=${SIZE:-512}
PYTHON=${PYTHON:-python}

# organelle:steps:max_minutes:config — steps sized for ~1 s/step on a shared 2-core CPU; the
# minutes cap is a safety net (the run then stops early with a checkpoint). Nucleus, tubulin
# and actin get the deeper model (depth 4, 192² patches), which validated better than the
# depth-3 one (weights/README.md); mitochondria keeps depth 3.
LANE_A=("nucleus:1600:50:configs/demo_deep.yaml" "actin:1500:30:configs/demo_deep.yaml")
LANE_B=("mitochondria:1500:38:configs/demo.yaml" "tubulin:1500:30:configs/demo_deep.yaml")

# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

stage_data() {
    echo "[$(stamp)] simulating training data (seed $TRAIN_SEED) and held-out data (seed $HELDOUT_SEED)"
    echo "simulator: commit $(git log -1 --format=%h -- lightmycells/simulate 2>/dev/null || echo unknown)"
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/train" --studies "$STUDIES" --fovs "$FOVS" \
        --seed "$TRAIN_SEED" --size "$SIZE" --all-labels --quiet
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/heldout" --studies 6 --fovs 3 \
        --seed "$HELDOUT_SEED" --size "$SIZE" --all-labels --planes 3 --gc --quiet
}

train_one() {
    local organelle=$1 steps=$2 minutes=$3 config=$4
    echo "[$(stamp)] training $organelle ($config): $steps steps, at most $minutes min"
    "$PYTHON" -m lightmycells.train --config "$config" \
        --set "out=$RUN/$organelle" --set "data.roots=[$RUN/data/train]" \
        --set "data.organelles=[$organelle]" --set "steps=$steps" \
        --set "max_minutes=$minutes" > "$RUN/$organelle.log" 2>&1
    echo "[$(stamp)] $organelle finished: $(tail -n 1 "$RUN/$organelle.log")"
}

run_lane() {
    local item
    for item in "$@"; do
        IFS=: read -r organelle steps minutes config <<< "$item"
        train_one "$organelle" "$steps" "$minutes" "$config"
    done
}

stage_train() {
    mkdir -p "$RUN"
    run_lane "${LANE_A[@]}" &
    local lane_a=$!
    run_lane "${LANE_B[@]}" &
    local lane_b=$!
    local status=0
    wait "$lane_a" || status=1
    wait "$lane_b" || status=1
    return "$status"
}

stage_export() {
    echo "[$(stamp)] exporting to $WEIGHTS"
    local organelle
    for organelle in nucleus mitochondria tubulin actin; do
        "$PYTHON" -m lightmycells.export --checkpoint "$RUN/$organelle/best.pt" --out "$WEIGHTS" \
            --fp16
    done
}

stage_evaluate() {
    echo "[$(stamp)] predicting the held-out set with $WEIGHTS"
    rm -rf "$RUN/eval/pred"
    "$PYTHON" inference.py --input "$RUN/data/heldout" --output "$RUN/eval/pred" \
        --weights "$WEIGHTS" --device cpu --threads 2
    "$PYTHON" -m lightmycells.evaluate --truth "$RUN/data/heldout" --pred "$RUN/eval/pred" \
        --floors input,blur --out "$RUN/eval/metrics.json" --report "$RUN/eval/report" \
        --jobs 2 --quiet
}

main() {
    run_stages "data train export evaluate" "$@"
    echo "[$(stamp)] done: ${*:-data train export evaluate}"
}

main "$@"
