#!/usr/bin/env bash
# Issue 10's comparison (docs/MODELS.md): seed 002's tiny UNETR, MAE-pretrained vs from scratch
# at equal fine-tuning steps, beside the RUNet under the same budget, on nucleus.
#
#   scripts/zoo_issue10.sh [STAGE ...]   stages: data pretrain train evaluate table figure
#                                        (default: all)
#
# data:     the zoo's training set (simulator seed 11, 12 studies × 8 fields of view, 512²) and
#           held-out set (seed 9001, 12 studies × 3 fields of view × 3 planes), as
#           scripts/zoo_issue11.sh makes them (skipped when present)
# pretrain: the MAE (configs/zoo/seed002_mae.yaml), PRE_STEPS steps
# train:    fine-tunes of FT_STEPS steps, two at a time (one torch thread each, nice 10):
#           unetr_mae (init_from the MAE), unetr_scratch, the two again with seed 1 (run-to-run
#           noise), and runet (seed000_runet_native.yaml) for RUNET_STEPS steps: a RUNet step
#           costs about 2.4 UNETR steps on one core, so 150 RUNet steps match 300 UNETR steps
#           in CPU time (the RUNet row of docs/MODELS.md is scripts/zoo_issue11.sh's
#           runet_native, the same config, data and steps)
# evaluate: export each run's best.pt (UNETRs with --static-tile: the container then always
#           feeds 128² tiles), predict the held-out set with the container (inference.py, one
#           thread), score it with python -m lightmycells.evaluate --floors input,blur
# table:    mean nucleus PCC / SSIM per run, overall and per modality, and s per image
# figure:   docs/mae_reconstruction.png (masked input, reconstruction, original; held-out)
#
# The patch of the cost stage is the manifest's (128 for the UNETRs, 256 for the RUNet).
# Environment: RUN (runs/zoo), PRE_STEPS (1500), FT_STEPS (300), RUNET_STEPS (150),
# PYTHON (python).
set -euo pipefail

RUN=${RUN:-runs/zoo}
PRE_STEPS=${PRE_STEPS:-1500}
FT_STEPS=${FT_STEPS:-300}
RUNET_STEPS=${RUNET_STEPS:-150}
PYTHON=${PYTHON:-python}
Z=configs/zoo
MAE=$RUN/mae$PRE_STEPS

# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

stage_data() { zoo_data; }

stage_pretrain() {
    nice -n 10 "$PYTHON" -m lightmycells.train --config "$Z/seed002_mae.yaml" \
        --set "data.roots=[$RUN/data/train]" --set "out=$MAE" --set val.every=250 \
        --steps "$PRE_STEPS" > "$MAE.log" 2>&1
    echo "[$(stamp)] pretraining: $(tail -n 1 "$MAE.log")"
}

train_one() {  # NAME CONFIG [--set key=value ...]
    local name=$1 config=$2
    shift 2
    nice -n 10 "$PYTHON" -m lightmycells.train --config "$config" "$@" \
        --set "data.roots=[$RUN/data/train]" --set "out=$RUN/$name" --steps "$FT_STEPS" \
        > "$RUN/$name.log" 2>&1
    echo "[$(stamp)] $name: $(tail -n 1 "$RUN/$name.log")"
}

stage_train() {  # two lanes side by side
    {
        train_one unetr_mae "$Z/seed002_unetr.yaml" --set "init_from=$MAE/best.pt"
        train_one unetr_mae_s1 "$Z/seed002_unetr.yaml" --set "init_from=$MAE/best.pt" \
            --set seed=1
    } &
    {
        train_one unetr_scratch "$Z/seed002_unetr_scratch.yaml"
        FT_STEPS=$RUNET_STEPS train_one runet "$Z/seed000_runet_native.yaml"
        train_one unetr_scratch_s1 "$Z/seed002_unetr_scratch.yaml" --set seed=1
    } &
    wait
}

evaluate_one() {
    local name=$1 weights="$RUN/w_$1" pred="$RUN/pred_heldout_$1" static=()
    [ -f "$RUN/$name/best.pt" ] || { echo "[$(stamp)] $name: no best.pt, skipped"; return; }
    [[ $name == unetr* ]] && static=(--static-tile)
    "$PYTHON" -m lightmycells.export --checkpoint "$RUN/$name/best.pt" --out "$weights" \
        "${static[@]}" --fp16 > "$weights.export.log" 2>&1
    rm -rf "$pred"
    nice -n 10 "$PYTHON" inference.py --input "$RUN/data/heldout" --output "$pred" \
        --weights "$weights" --organelles nucleus --device cpu --threads 1 > "$pred.log" 2>&1
    nice -n 10 "$PYTHON" -m lightmycells.evaluate --truth "$RUN/data/heldout" --pred "$pred" \
        --out "$RUN/metrics_heldout_$name.json" --floors input,blur --jobs 1 --quiet \
        > "$pred.eval.log" 2>&1 || true  # exits 1: the other organelles have no prediction
    echo "[$(stamp)] $name scored: $RUN/metrics_heldout_$name.json"
}

stage_evaluate() {
    local name
    for name in ${NAMES:-unetr_mae unetr_scratch runet unetr_mae_s1 unetr_scratch_s1}; do
        evaluate_one "$name"
    done
}

stage_table() {
    "$PYTHON" - "$RUN" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
run = Path(sys.argv[1])
print("| run | PCC | SSIM | PCC BF / PC / DIC | images | s per image |")
print("| --- | --- | --- | --- | --- | --- |")
def line(label, path, seconds):
    rows = [r for r in json.loads(path.read_text())["results"] if r.get("nucleus")]
    mean = lambda m, keep=lambda r: True: (
        f"{np.mean([r['nucleus'][m] for r in rows if keep(r)]):.3f}"
        if any(keep(r) for r in rows) else "n/a")
    mods = " / ".join(mean("PCC", lambda r, m=m: r["modality"] == m) for m in ("BF", "PC", "DIC"))
    print(f"| {label} | {mean('PCC')} | {mean('SSIM')} | {mods} | {len(rows)} | {seconds} |")
floors = {}
for path in sorted(run.glob("metrics_heldout_*.json")):
    name = path.name[len("metrics_heldout_"):-len(".json")]
    if "." in name:  # a floor (the input, its blur): the same for every run
        floors.setdefault(name.split(".")[1], path)
        continue
    if not (run / f"pred_heldout_{name}" / "summary.json").exists():
        continue
    info = json.loads((run / f"pred_heldout_{name}" / "summary.json").read_text())
    line(name, path, f"{info['seconds'] / max(1, info['written']):.2f}")
for floor, path in sorted(floors.items()):
    line(f"floor: {floor}", path, "")
EOF
}

stage_figure() {
    "$PYTHON" - "$RUN" "$MAE" <<'EOF'
import sys
from pathlib import Path
from lightmycells.train.mae import reconstruction_figure
run, mae = Path(sys.argv[1]), Path(sys.argv[2])
planes = [run / "data/heldout" / p for p in ("Study_1/image_2_BF_z1.ome.tiff",
          "Study_5/image_14_PC_z1.ome.tiff", "Study_9/image_26_DIC_z1.ome.tiff")]
planes = [p for p in planes if p.exists()] or sorted((run / "data/heldout").glob("*/*_z1.ome.tiff"))[:3]
print(reconstruction_figure(mae / "best.pt", planes, "docs/mae_reconstruction.png"))
EOF
}

stage_cost() {
    "$PYTHON" - "$RUN" <<'EOF'
import json, sys, time
from pathlib import Path
import numpy as np
import onnx
import onnxruntime as ort
run = Path(sys.argv[1])
def cpu_seconds(session, x):
    start = time.process_time()
    session.run(None, {"input": x})
    return time.process_time() - start
print("| run | parameters | ONNX MB | CPU s / MP (model only, 1 thread) |")
print("| --- | --- | --- | --- |")
for weights in sorted(run.glob("w_*/")):
    entry = json.loads((weights / "manifest.json").read_text())["models"][0]
    path = weights / entry["file"]
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((16, 1, entry["patch"], entry["patch"]),
                                                 dtype=np.float32)
    session.run(None, {"input": x[:1]})  # warm-up
    best = min(cpu_seconds(session, x) for _ in range(3))
    mp = x.shape[0] * entry["patch"] ** 2 / 1e6
    print(f"| {weights.name[2:]} | {params:,} | {path.stat().st_size / 1e6:.2f} "
          f"| {best / mp:.2f} |")
EOF
}

run_stages "data pretrain train evaluate table figure cost" "$@"
