"""Domain shift on simulated data: zero-shot, fine-tuned on two images, and from scratch.

The shipped weights were trained on the simulator's ``clean`` preset. Each study of the
``realistic`` preset stands for one user's microscope: its first two fields of view become a
pairs CSV, the shipped model is fine-tuned on them with ``python -m lightmycells.finetune``'s
recipe, the same architecture is trained from scratch on the same two images for the same
steps, and all three are scored (PCC, SSIM, as the challenge computes them) on the study's
other fields of view through the container's own inference.

    python scripts/domain_shift.py --out runs/shift --study 1 --steps 150

prints one Markdown row per model for that study and writes ``OUT/study_<k>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import inference
from lightmycells.eval import metrics
from lightmycells.io import ome
from lightmycells.simulate import make_dataset
from lightmycells.train.finetune import finetune
from lightmycells.vocab import INPUT_FOLDER, Organelle

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ["init_from=null", "optim.freeze_norm=false", "optim.lr=0.002",
           "optim.warmup_steps=20"]


def fields(study: Path) -> list[tuple[list[Path], Path]]:
    """(planes, nucleus target) of every field of view with a nucleus target, by image id."""
    out = []
    for target in sorted(study.glob("image_*_Nucleus.ome.tiff"),
                         key=lambda p: int(p.name.split("_")[1])):
        image_id = target.name.split("_")[1]
        planes = sorted(study.glob(f"image_{image_id}_*_z*.ome.tiff"))
        out.append((planes, target))
    return out


def score(weights: Path, held: list[tuple[list[Path], Path]], work: Path) -> dict[str, float]:
    """Mean PCC and SSIM of ``weights`` on the middle plane of each held-out field."""
    inputs = work / "in" / "images" / INPUT_FOLDER
    shutil.rmtree(work, ignore_errors=True)
    inputs.mkdir(parents=True)
    for planes, _ in held:
        shutil.copy(planes[len(planes) // 2], inputs)
    code = inference.main(["--input", str(work / "in"), "--output", str(work / "pred"),
                           "--weights", str(weights), "--organelles", "nucleus"], {})
    if code != 0:
        raise SystemExit(f"inference on {weights} failed ({code})")
    values: dict[str, list[float]] = {"pcc": [], "ssim": []}
    for planes, target in held:
        name = ome.stem(planes[len(planes) // 2])
        pred, _ = ome.read(work / "pred" / "images" / "nucleus-fluorescence-ome-tiff"
                           / f"{name}.tiff")
        truth, _ = ome.read(target)
        scores = metrics.score(pred, truth, Organelle.NUCLEUS)
        for key in values:
            values[key].append(float(scores[key.upper()]))
    return {f"{k}_{s}": f(v) for k, v in values.items()
            for s, f in (("mean", statistics.mean), ("sd", statistics.pstdev))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shift"))
    parser.add_argument("--study", type=int, required=True)
    parser.add_argument("--studies", type=int, default=2)
    parser.add_argument("--fovs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7001)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--tune", type=int, default=2, help="fields of view to fine-tune on")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="seed of initialisation and patch sampling (run-to-run noise)")
    args = parser.parse_args()
    data = args.out / "data"
    if not data.exists():
        make_dataset(data, studies=args.studies, fovs=args.fovs, seed=args.seed,
                     size=(args.size, args.size), modalities=["BF", "PC"], planes=3,
                     all_labels=True, progress=False, preset="realistic")
    study = data / f"Study_{args.study}"
    fovs = fields(study)
    tune, held = fovs[: args.tune], fovs[args.tune:]
    work = args.out / f"study_{args.study}"
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "pairs.csv"
    csv.write_text("input,organelle,target\n" + "".join(
        f"{';'.join(str(p.resolve()) for p in planes)},nucleus,{target.resolve()}\n"
        for planes, target in tune))
    common = [f"steps={args.steps}", "progress=false", "threads=1", f"seed={args.train_seed}"]
    tag = f"_seed{args.train_seed}" if args.train_seed else ""
    rows = {"shipped (zero-shot)": ROOT / "weights"}
    for label, extra in (("fine-tuned", []), ("from scratch", SCRATCH)):
        folder = work / (label.replace(" ", "_") + tag)
        if not (folder / "manifest.json").exists():
            finetune(csv, Organelle.NUCLEUS, folder, run_dir=work / f"run_{folder.name}",
                     overrides=[*common, *extra])
        rows[label] = folder
    meta = ome.read(fovs[0][0][0])[1]
    result = {"study": args.study, "pixel_size_um": meta.pixel_size_um,
              "modality": str(meta.modality), "tune": len(tune), "held_out": len(held),
              "steps": args.steps,
              "models": {k: score(v, held, work / "eval") for k, v in rows.items()}}
    result["train_seed"] = args.train_seed
    (work.parent / f"study_{args.study}{tag}.json").write_text(json.dumps(result, indent=2))
    for label, s in result["models"].items():
        print(f"| {args.study} | {result['modality']} | {meta.pixel_size_um[1]:.3f} | "
              f"{label} | {args.train_seed} | "
              f"{s['pcc_mean']:.3f} ± {s['pcc_sd']:.3f} | {s['ssim_mean']:.3f} ± "
              f"{s['ssim_sd']:.3f} |")


if __name__ == "__main__":
    main()
