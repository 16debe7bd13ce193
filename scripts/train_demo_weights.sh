#!/usr/bin/env bash
# Train the shipped demo weights on the simulated microscope, on a small CPU, and export them.
#
#   scripts/train_demo_weights.sh [STAGE ...]   stages: data train export evaluate (default: all)
#
# data:   simulate the training sets — the clean preset (seed TRAIN_SEED) and the realistic
#         preset (seed REALISTIC_SEED: 10×–100× objectives, dense cultures, debris, haze,
#         camera artefacts, 8-bit exports) — and two held-out sets never used for training:
#         clean (seed HELDOUT_SEED) and realistic (seed HELDOUT_REALISTIC_SEED), under $RUN/data/
# train:  four single-organelle RUNets in two lanes of one process each (one torch thread
#         per process) on both training sets, each at a physical pixel size
#         (data.resample_um), nucleus with the largest budget; logs in $RUN/<organelle>/
# export: ONNX (+ fp16 variant) with parity checks and manifest entries into $WEIGHTS
# evaluate: the container's CLI (inference.py) with $WEIGHTS on both held-out sets, then the
#         challenge metrics beside the input and blurred-input baselines:
#         $RUN/eval/<set>/metrics*.json (set: clean, realistic)
#
# Environment: RUN (runs/demo), WEIGHTS (weights), TRAIN_SEED (11), REALISTIC_SEED (12),
# HELDOUT_SEED (9001), HELDOUT_REALISTIC_SEED (9002), STUDIES (12), FOVS (8), SIZE (512),
# PYTHON (python).
set -euo pipefail

RUN=${RUN:-runs/demo}
WEIGHTS=${WEIGHTS:-weights}
TRAIN_SEED=${TRAIN_SEED:-11}
REALISTIC_SEED=${REALISTIC_SEED:-12}
HELDOUT_SEED=${HELDOUT_SEED:-9001}
HELDOUT_REALISTIC_SEED=${HELDOUT_REALISTIC_SEED:-9002}
STUDIES=${STUDIES:-12}
FOVS=${FOVS:-8}
SIZE=${SIZE:-512}
PYTHON=${PYTHON:-python}

# organelle:steps:max_minutes:config:pixel_um[:init] — steps sized for ~1 s/step on a shared 2-core
# CPU; the minutes cap is a safety net (the run then stops early with a checkpoint). Nucleus,
# tubulin and actin get the deeper model (depth 4, 192² patches), which validated better than
# the depth-3 one (weights/README.md); mitochondria keeps depth 3. Every model sees its images
# at one physical pixel size, so a 10× and a 100× image of a cell look alike to it
# (docs/MODELS.md, issue 11: the 0.16 µm nucleus beat native pixels by 3–4× the seed noise).
# Nucleus (~10 µm objects, context matters): 0.16 µm. The filaments are imaged at
# fluorescence NA up to 1.4, whose cut-off (2 NA/λ ≈ 5 cycles/µm) needs ~0.1 µm pixels:
# coarser ones would blur away what the target holds.
# init (optional): a git revision of weights/<organelle>.onnx to start from, at a quarter of
# the learning rate with its folded batch norms frozen. Tubulin starts from the tubulin model
# shipped before (trained on the clean preset at native pixels): it kept the clean held-out
# score that a run from scratch lost (docs/MODELS.md, issue 12), and won on validation.
LANE_A=("nucleus:1600:50:configs/demo_deep.yaml:0.16" "actin:1500:35:configs/demo_deep.yaml:0.1")
LANE_B=("mitochondria:1500:40:configs/demo.yaml:0.1"
        "tubulin:1500:40:configs/demo_deep.yaml:0.1:abb9102")

# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

stage_data() {
    echo "[$(stamp)] simulating training data (seeds $TRAIN_SEED clean, $REALISTIC_SEED realistic)" \
        "and held-out data (seeds $HELDOUT_SEED clean, $HELDOUT_REALISTIC_SEED realistic)"
    echo "simulator: commit $(git log -1 --format=%h -- lightmycells/simulate 2>/dev/null || echo unknown)"
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/train" --studies "$STUDIES" --fovs "$FOVS" \
        --seed "$TRAIN_SEED" --size "$SIZE" --all-labels --quiet
    # 3 planes per field of view: a 10× field resampled to 0.1 µm is 6.5× larger per side,
    # and the loader keeps every plane it has read in memory
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/train_realistic" --studies "$STUDIES" \
        --fovs "$FOVS" --seed "$REALISTIC_SEED" --size "$SIZE" --all-labels --planes 3 \
        --preset realistic --quiet
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/heldout" --studies 6 --fovs 3 \
        --seed "$HELDOUT_SEED" --size "$SIZE" --all-labels --planes 3 --gc --quiet
    "$PYTHON" -m lightmycells.simulate --out "$RUN/data/heldout_realistic" --studies 9 --fovs 2 \
        --seed "$HELDOUT_REALISTIC_SEED" --size "$SIZE" --all-labels --planes 3 --gc \
        --preset realistic --quiet
}

train_one() {
    local organelle=$1 steps=$2 minutes=$3 config=$4 pixel_um=$5 init=${6:-}
    local start=()
    if [ -n "$init" ]; then
        git show "$init:weights/$organelle.onnx" > "$RUN/$organelle.init.onnx"
        start=(--set "init_from=$RUN/$organelle.init.onnx" --set optim.lr=0.0005
               --set optim.freeze_norm=true)
    fi
    echo "[$(stamp)] training $organelle ($config, $pixel_um µm${init:+, from $init}):" \
        "$steps steps, at most $minutes min"
    "$PYTHON" -m lightmycells.train --config "$config" "${start[@]}" \
        --set "out=$RUN/$organelle" \
        --set "data.roots=[$RUN/data/train,$RUN/data/train_realistic]" \
        --set "data.resample_um=$pixel_um" \
        --set "data.organelles=[$organelle]" --set "steps=$steps" \
        --set "max_minutes=$minutes" > "$RUN/$organelle.log" 2>&1
    echo "[$(stamp)] $organelle finished: $(tail -n 1 "$RUN/$organelle.log")"
}

run_lane() {
    local item
    for item in "$@"; do
        IFS=: read -r organelle steps minutes config pixel_um init <<< "$item"
        train_one "$organelle" "$steps" "$minutes" "$config" "$pixel_um" "$init"
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

evaluate_set() {
    local name=$1 data=$2 out="$RUN/eval/$1"
    echo "[$(stamp)] predicting the $name held-out set with $WEIGHTS"
    rm -rf "$out/pred"
    "$PYTHON" inference.py --input "$data" --output "$out/pred" \
        --weights "$WEIGHTS" --device cpu --threads 2
    "$PYTHON" -m lightmycells.evaluate --truth "$data" --pred "$out/pred" \
        --floors input,blur --out "$out/metrics.json" --report "$out/report" --jobs 2 --quiet
}

stage_evaluate() {
    evaluate_set clean "$RUN/data/heldout"
    evaluate_set realistic "$RUN/data/heldout_realistic"
}

main() {
    run_stages "data train export evaluate" "$@"
    echo "[$(stamp)] done: ${*:-data train export evaluate}"
}

main "$@"
