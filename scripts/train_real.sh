#!/usr/bin/env bash
# Real models from the real data (BioImage Archive S-BIAD1047), in one command, on a GPU node.
#
#   scripts/train_real.sh [--dry-run] [STAGE ...]
#   stages: fetch index pack train export evaluate (default: all, in that order)
#
# fetch:    download the studies (parallel, resumable: rerun after a cut) into $DATA
# index:    report every quirk of the files, write $DATA/lmc_index.json
# pack:     chunked store with per-plane statistics in $STORE (resumable); the held-out
#           studies ($HELDOUT) stay out of it, so training never sees them. With $PIXEL_UM,
#           one store per pixel size named there, $STORE-<um>um, planes resampled to it
# train:    one model per organelle ($ORGANELLES), torchrun on all $GPUS GPUs (AMP), from
#           the store; study-level validation split inside the training studies; with
#           $PIXEL_UM, at the organelle's pixel size (data.resample_um) from its store
# export:   ONNX + fp16 variants with parity checks into $WEIGHTS
# evaluate: the container (inference.py) on the held-out studies, challenge metrics
#
# --dry-run prints the plan (every command), the data, index and store found, the GPUs, and
# the estimated hours and disk (docs/REAL_DATA.md) without running anything.
#
# Environment: DATA (data/S-BIAD1047), STORE (data/S-BIAD1047.store), RUN (runs/real),
# WEIGHTS ($RUN/weights), CONFIG (configs/real_sbiad1047.yaml), STUDIES (all),
# HELDOUT ("6 9 20": PC actin+nucleus, BF mitochondria+nucleus, DIC tubulin+mitochondria+
# nucleus), ORGANELLES ("nucleus mitochondria tubulin actin"), GPUS (all visible), JOBS (CPU
# cores for index/pack, at most 16), BASE_URL (the archive), PYTHON (python), PIXEL_UM
# (empty: the stored pixels; e.g. "nucleus:0.16 mitochondria:0.1 tubulin:0.1 actin:0.1", the
# shipped weights' pixel sizes: docs/TRAINING.md).
set -euo pipefail

DATA=${DATA:-data/S-BIAD1047}
STORE=${STORE:-data/S-BIAD1047.store}
RUN=${RUN:-runs/real}
WEIGHTS=${WEIGHTS:-$RUN/weights}
CONFIG=${CONFIG:-configs/real_sbiad1047.yaml}
STUDIES=${STUDIES:-}
HELDOUT=${HELDOUT:-6 9 20}
ORGANELLES=${ORGANELLES:-nucleus mitochondria tubulin actin}
PYTHON=${PYTHON:-python}
BASE_URL=${BASE_URL:-}
PIXEL_UM=${PIXEL_UM:-}
CORES=$(nproc 2>/dev/null || echo 4)
JOBS=${JOBS:-$(( CORES < 16 ? CORES : 16 ))}
if [[ -z "${GPUS:-}" ]]; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi

DRY=0
STAGES=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        fetch|index|pack|train|export|evaluate) STAGES+=("$arg") ;;
        *) echo "unknown argument: $arg (stages: fetch index pack train export evaluate;" \
                "option: --dry-run)" >&2; exit 2 ;;
    esac
done
[[ ${#STAGES[@]} -gt 0 ]] || STAGES=(fetch index pack train export evaluate)

read -r -a STUDY_ARGS <<< "$STUDIES"
read -r -a HELD_ARGS <<< "$HELDOUT"
read -r -a ORGANELLE_LIST <<< "$ORGANELLES"
read -r -a PIXEL_PAIRS <<< "$PIXEL_UM"

# The pixel size $PIXEL_UM names for an organelle (empty: none, the stored pixels).
pixel_um() {
    local pair
    for pair in "${PIXEL_PAIRS[@]}"; do
        if [[ "${pair%%:*}" == "$1" ]]; then echo "${pair#*:}"; return; fi
    done
}

# The store an organelle trains from: $STORE, or the one packed at its pixel size.
store_for() {
    local um
    um=$(pixel_um "$1")
    if [[ -n "$um" ]]; then echo "$STORE-${um}um"; else echo "$STORE"; fi
}

stamp() { date -u +%H:%M:%S; }

# Print a command (always), run it unless --dry-run.
run() {
    printf '  $'
    printf ' %q' "$@"
    printf '\n'
    if [[ $DRY -eq 0 ]]; then "$@"; fi
}

stage_fetch() {
    local extra=()
    [[ -z "$BASE_URL" ]] || extra+=(--base-url "$BASE_URL")
    [[ ${#STUDY_ARGS[@]} -eq 0 ]] || extra+=(--studies "${STUDY_ARGS[@]}")
    run "$PYTHON" -m lightmycells.data fetch --dest "$DATA" --jobs 16 "${extra[@]}"
}

stage_index() {
    run "$PYTHON" -m lightmycells.data index "$DATA" --jobs "$JOBS"
}

stage_pack() {
    local organelle um packed=" "
    for organelle in "${ORGANELLE_LIST[@]}"; do
        um=$(pixel_um "$organelle")
        [[ "$packed" != *" ${um:-stored} "* ]] || continue
        packed+="${um:-stored} "
        if [[ -n "$um" ]]; then
            run "$PYTHON" -m lightmycells.data pack "$DATA" --out "$(store_for "$organelle")" \
                --jobs "$JOBS" --exclude-studies "${HELD_ARGS[@]}" --pixel-um "$um"
        else
            run "$PYTHON" -m lightmycells.data pack "$DATA" --out "$STORE" --jobs "$JOBS" \
                --exclude-studies "${HELD_ARGS[@]}"
        fi
    done
}

stage_train() {
    local launcher organelle
    if [[ "$GPUS" -ge 1 ]]; then
        launcher=(torchrun --standalone --nproc_per_node "$GPUS" -m lightmycells.train)
    else
        echo "  (no GPU found: one CPU process; expect days, not hours)"
        launcher=("$PYTHON" -m lightmycells.train)
    fi
    for organelle in "${ORGANELLE_LIST[@]}"; do
        local scale=()
        [[ -z "$(pixel_um "$organelle")" ]] || scale=(--set "data.resample_um=$(pixel_um "$organelle")")
        run "${launcher[@]}" --config "$CONFIG" --set "data.store=$(store_for "$organelle")" \
            --set "data.organelles=[$organelle]" --set "out=$RUN/$organelle" "${scale[@]}"
    done
}

stage_export() {
    local organelle checkpoints=()
    for organelle in "${ORGANELLE_LIST[@]}"; do
        checkpoints+=("$RUN/$organelle/best.pt")
    done
    run "$PYTHON" -m lightmycells.export --checkpoint "${checkpoints[@]}" --out "$WEIGHTS" --fp16
}

stage_evaluate() {
    local held="$RUN/heldout" n
    echo "  (held-out studies ${HELDOUT} linked under $held; never packed, never trained on)"
    if [[ $DRY -eq 0 ]]; then
        mkdir -p "$held"
        for n in "${HELD_ARGS[@]}"; do
            ln -sfn "$(realpath "$DATA/Study_$n")" "$held/Study_$n"
        done
    fi
    run "$PYTHON" inference.py --input "$held" --output "$RUN/eval/pred" --weights "$WEIGHTS"
    run "$PYTHON" -m lightmycells.evaluate --truth "$held" --pred "$RUN/eval/pred" \
        --floors input,blur --out "$RUN/eval/metrics.json" --report "$RUN/eval/report"
}

if [[ $DRY -eq 1 ]]; then
    echo "dry run: nothing is downloaded, written or trained"
    echo "GPUs: $GPUS; CPU cores for index/pack: $JOBS; config: $CONFIG"
    echo "held-out studies: $HELDOUT; organelles: $ORGANELLES"
    "$PYTHON" -m lightmycells.data status --dest "$DATA" --store "$STORE" \
        --studies "${STUDY_ARGS[@]}"
    echo "estimates (docs/REAL_DATA.md, not measured on a GPU node): disk ~109 GB download +"
    echo "  ~75 GB store + ~1 GB runs; fetch ~0.5-3 h (network), index ~0.2-0.5 h, pack"
    echo "  ~0.5-1 h (16 cores), training ~1-4 h per organelle on one A100/H100-class GPU"
fi

for stage in "${STAGES[@]}"; do
    echo "[$(stamp)] $stage"
    "stage_$stage"
done
