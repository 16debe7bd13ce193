#!/usr/bin/env bash
# Issue 9's comparison (docs/MODELS.md, seed 003): pix2pix ResNet generator with per-organelle
# decoders, adversarial weight 0 vs 0.005, and separate / unified / dynamic models per
# modality at matched total steps, on all four organelles, at a small CPU budget.
#
#   scripts/zoo_issue9.sh [STAGE ...]   stages: data train evaluate table (default: all)
#
# data:     the zoo's training set (simulator seed 11, 12 studies × 8 fields of view, 512², all
#           labels) and held-out set (seed 9001, 12 × 3 × 3 planes), as scripts/zoo_issue11.sh;
#           the held-out best-focus planes only are predicted (best_z.csv), to save CPU
# train:    two lanes (one torch thread each, nice 10): unified (GAN), the three separate
#           models at STEPS/3 each, unified at gan.weight 0.05; unified without GAN, dynamic,
#           unified without GAN at seed 1 (run-to-run noise)
# evaluate: export; weights folders unified, unified_nogan, separate (+ unified's "*"),
#           dynamic (+ unified's "*"); predict with the container (inference.py, one thread),
#           score with python -m lightmycells.evaluate
# table:    PCC / SSIM per organelle × modality, high-frequency power ratio, GAN health
#
# Environment: RUN (runs/zoo), STEPS (300), PYTHON (python), SETS (evaluate only these sets).
set -euo pipefail

RUN=${RUN:-runs/zoo}
STEPS=${STEPS:-300}
THIRD=$((STEPS / 3))
PYTHON=${PYTHON:-python}
Z=configs/zoo
LANE_A=("s003_unified|$Z/seed003_unified.yaml|"
        "s003_separate_BF|$Z/seed003_separate_BF.yaml|--steps $THIRD"
        "s003_separate_PC|$Z/seed003_separate_PC.yaml|--steps $THIRD"
        "s003_separate_DIC|$Z/seed003_separate_DIC.yaml|--steps $THIRD"
        "s003_unified_gan05|$Z/seed003_unified.yaml|--set gan.weight=0.05")
LANE_B=("s003_unified_nogan|$Z/seed003_unified.yaml|--set gan.weight=0"
        "s003_dynamic|$Z/seed003_dynamic.yaml|"
        "s003_unified_nogan_s1|$Z/seed003_unified.yaml|--set gan.weight=0 --set seed=1")

# shellcheck source=scripts/zoo_lanes.sh
source "$(dirname "$0")/zoo_lanes.sh"

stage_data() {
    zoo_data
    "$PYTHON" - "$RUN/data/heldout" "$RUN/data/heldout_best" <<'EOF'
import csv, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(dst, ignore_errors=True)
rows = list(csv.DictReader((src / "best_z.csv").open()))
best = {r["name"] for r in rows if r["image_z"] == r["best_z"]}
for path in sorted(src.glob("Study_*/*.ome.tiff")):
    stem = path.name.removesuffix(".ome.tiff")
    if "_z" in stem and stem not in best:
        continue
    (dst / path.parent.name).mkdir(parents=True, exist_ok=True)
    shutil.copy(path, dst / path.parent.name / path.name)
with (dst / "best_z.csv").open("w", newline="") as out:
    writer = csv.DictWriter(out, list(rows[0]))
    writer.writeheader()
    writer.writerows(r for r in rows if r["name"] in best)
EOF
}

stage_train() { train_lanes; }

export_into() {  # WEIGHTS RUN_NAME...
    local weights=$1 name
    shift
    rm -rf "$weights"
    for name in "$@"; do
        "$PYTHON" -m lightmycells.export --checkpoint "$RUN/$name/last.pt" --out "$weights" \
            2>&1 | grep -v -i warn | grep -v _jit_pass || true
    done
}

# weights set → the runs exported into it (the unified model's "*" entry completes the
# per-modality sets: DIC→actin and unknown modality)
declare -A MEMBERS=(
    [unified]="s003_unified"
    [unified_nogan]="s003_unified_nogan"
    [unified_nogan_s1]="s003_unified_nogan_s1"
    [unified_gan05]="s003_unified_gan05"
    [separate]="s003_unified s003_separate_BF s003_separate_PC s003_separate_DIC"
    [dynamic]="s003_unified s003_dynamic"
)

evaluate_set() {
    local set=$1 pred="$RUN/pred3_$1"
    # shellcheck disable=SC2086  # the members are separate words
    export_into "$RUN/w3_$set" ${MEMBERS[$set]}
    rm -rf "$pred"
    "$PYTHON" inference.py --weights "$RUN/w3_$set" --check > "$pred.routes.txt"
    nice -n 10 "$PYTHON" inference.py --input "$RUN/data/heldout_best" --output "$pred" \
        --weights "$RUN/w3_$set" --device cpu --threads 1 > "$pred.log" 2>&1
    nice -n 10 "$PYTHON" -m lightmycells.evaluate --truth "$RUN/data/heldout_best" \
        --pred "$pred" --out "$RUN/metrics3_$set.json" --jobs 1 --quiet
    echo "[$(stamp)] $set scored: $RUN/metrics3_$set.json"
}

stage_evaluate() {
    local set
    for set in ${SETS:-unified unified_nogan separate dynamic unified_nogan_s1 unified_gan05}; do
        evaluate_set "$set"
    done
}

stage_table() {
    "$PYTHON" scripts/seed003_table.py "$RUN"
}

run_stages "data train evaluate table" "$@"
