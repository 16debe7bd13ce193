"""Package every shipped model as a bioimage.io model and validate it with bioimageio.core.

    python -m scripts.make_bioimageio_packages                 # → runs/bioimageio/*.zip
    python -m scripts.make_bioimageio_packages --out DIR --weights weights

One ``<organelle>.zip`` per entry of ``weights/manifest.json`` (~4.5 MB each; not committed),
each tested with ``bioimageio.core.test_model`` on the CPU; one summary line per package, and
``DIR/validation.txt`` with every check. Exit code 1 when a package fails its test.

The model cards take their facts from ``weights/README.md`` (the shipped models' card): the
row of the "Files" table and the rows of the held-out tables for the model's organelle, so
the figures are written once, there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightmycells.engine import manifest
from lightmycells.train import bioimageio
from lightmycells.train.bioimageio import ModelCard

REPO = Path(__file__).resolve().parents[1]
AUTHORS = ("lightmycells maintainers",)
LIMITATIONS = (
    "Trained on simulated images only (the lightmycells simulated microscope, "
    "`lightmycells.simulate`), never on real microscopy: do not expect it to work on real "
    "BF, PC or DIC images; it demonstrates the pipeline (data, training, ONNX, serving, "
    "challenge metrics), not a biological result. The simulated studies have pixel sizes of "
    "60-162 nm and training did not resample, so the package states no pixel size. The "
    "output is percentile-normalised fluorescence (no absolute intensity). One 2D plane at a "
    "time; the held-out figures below are on simulated images from the same simulator.")
TRAINING_DATA = (
    "Simulated images only: `python -m lightmycells.simulate --studies 12 --fovs 8 --seed 11 "
    "--size 512 --all-labels` (12 studies: 4 BF, 4 PC, 4 DIC; 96 fields of view of 512², "
    "1-11 focus planes each; pixel sizes 60-162 nm), 10 % of the fields of view held out "
    "for validation. Input and target percentile-normalised (2 / 99.8); random focus plane "
    "per sample; flips, rotations, gamma, contrast and brightness augmentation. Reproduced "
    "by `scripts/train_demo_weights.sh` of the lightmycells repository.")


def table(text: str, header_start: str, keys: tuple[str, ...]) -> str:
    """The markdown table whose header starts with ``header_start``, keeping the rows whose
    first cell is one of ``keys`` ("" when the README has no such table)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                if row.split("|")[1].strip() in keys:
                    rows.append(row)
            return "\n".join([line, lines[i + 1], *rows]) if rows else ""
    return ""


def card_for(entry: manifest.ModelEntry, readme: str) -> ModelCard:
    """The model card of a shipped model, its figures read from ``weights/README.md``."""
    organelle = "-".join(str(o) for o in entry.organelles)
    files = table(readme, "| file |", (f"`{entry.file}`",))
    held_out = table(readme, "| organelle | images | metric |", (organelle,))
    per_modality = table(readme, "| organelle | modality |", (organelle,))
    evaluation = (
        "Held-out simulated set (6 studies, 18 fields of view, every plane of 3-plane stacks; "
        "`python -m lightmycells.simulate --studies 6 --fovs 3 --seed 9001 --size 512 "
        "--all-labels --planes 3 --gc`), predictions by the lightmycells container on the CPU, "
        "official Light My Cells metrics; baselines: the input itself and a blurred input.\n\n"
        f"{held_out}\n\nPer modality:\n\n{per_modality}\n\nSource: `weights/README.md`.")
    return ModelCard(
        name=f"LightMyCells {organelle} RUNet (simulated data)",
        description=(f"Predicts {organelle} fluorescence from one 2D transmitted-light image "
                     f"(bright field, phase contrast or DIC). Demo weights of the lightmycells "
                     f"project, trained on simulated images only."),
        authors=AUTHORS, training_data=TRAINING_DATA, limitations=LIMITATIONS,
        details=f"The shipped model (from `weights/README.md`):\n\n{files}",
        evaluation=evaluation, tags=("lightmycells-demo",),
    )


def main(argv: list[str] | None = None) -> int:
    """Write and validate one package per manifest entry."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bioimageio")
    parser.add_argument("--sample", type=Path, default=bioimageio.DEFAULT_SAMPLE)
    args = parser.parse_args(argv)
    readme = (args.weights / "README.md").read_text(encoding="utf-8")
    report, failed = [], 0
    for entry in manifest.load(args.weights).models:
        out = args.out / f"{'-'.join(str(o) for o in entry.organelles)}.zip"
        bioimageio.export_package(args.weights, entry.name, out, card_for(entry, readme),
                                  sample=args.sample)
        summary = bioimageio.validate(out)
        line = bioimageio.summary_line(out, summary)
        print(f"{line}; {out.stat().st_size / 1e6:.1f} MB", flush=True)
        report += [line, *(f"  {d.status:7} {d.name}" for d in summary.details)]
        failed += not bioimageio.passed(summary)
    (args.out / "validation.txt").write_text("\n".join(report) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
