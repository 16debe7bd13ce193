"""Transfer to real images: PCC of weights trained on simulated data on real Light My Cells pairs.

Runs the container's :class:`~lightmycells.engine.predictor.Predictor` (the same code path as
``python inference.py``) on the input of each pair in ``../shared/real/lmc_figures`` and
scores its prediction against the pair's ground truth with the challenge's PCC, at several
input scales: the images are panels read back from published figures, downscaled by an
unknown factor from the microscope's pixels, so the input is rescaled by each factor, the
model run, and its prediction rescaled back onto the ground truth's grid. Two floors are
scored beside the models: the input image itself (its negative scores the opposite PCC), and
an oracle floor, the best |PCC| of the input or its negative blurred by σ ∈ {0, 1, 2, 4, 8}
px — chosen with the ground truth, so it flatters the floor, not the models. A model that
only copies, inverts or blurs the input gains nothing over it.

To MEASURE only: nothing here trains, tunes or chooses anything on these images.

    PYTHONPATH=. python scripts/transfer_real.py [--pairs ../shared/real/lmc_figures] \\
        [--weights weights [OTHER ...]] [--scales 0.5,1,2,4,8] [--out docs/transfer.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage
from skimage.transform import resize

from lightmycells.engine import manifest as manifest_mod
from lightmycells.engine.predictor import Predictor
from lightmycells.engine.runtime import Runtime
from lightmycells.eval.metrics import pcc
from lightmycells.io.ome import ImageMeta
from lightmycells.vocab import Organelle


def read_grey(path: Path) -> np.ndarray:
    """A PNG as a 2D float64 image (colour averaged to grey)."""
    image = iio.imread(path).astype(np.float64)
    return image[..., :3].mean(axis=2) if image.ndim == 3 else image


def rescale(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling to ``shape``, anti-aliased when shrinking."""
    shrink = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    return resize(image, shape, order=1, anti_aliasing=shrink, preserve_range=True)


def pairs(folder: Path) -> list[tuple[str, Organelle, np.ndarray, np.ndarray]]:
    """``(name, organelle, input, target on the input's grid)`` from ``pairs.jsonl``."""
    out = []
    for line in (folder / "pairs.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        name = record["name"]
        organelle = Organelle(record["organelle"].split()[0].lower())
        x = read_grey(folder / f"{name}_input.png")
        y = read_grey(folder / f"{name}_target.png")
        if y.shape != x.shape:  # MWod's panels differ by a few pixels
            y = rescale(y, x.shape)
        out.append((name, organelle, x, y))
    return out


def blur_floor(image: np.ndarray, target: np.ndarray) -> float:
    """Best |PCC| of the input blurred by σ ∈ {0, 1, 2, 4, 8} px (an oracle floor)."""
    return max(abs(pcc(ndimage.gaussian_filter(image, s), target)) for s in (0, 1, 2, 4, 8))


def predict_at(predictor: Predictor, image: np.ndarray, organelle: Organelle,
               scale: float) -> np.ndarray:
    """The prediction for ``image`` rescaled by ``scale``, back on the image's grid."""
    shape = (max(16, round(image.shape[0] * scale)), max(16, round(image.shape[1] * scale)))
    x = rescale(image, shape).astype(np.float32)
    meta = ImageMeta(name="real", axes="YX", modality=None, modality_source="unknown",
                     pixel_size_um=None)
    pred = predictor.predict(x, meta, [organelle])[organelle]
    return rescale(pred.astype(np.float64), image.shape)


def main(argv: list[str] | None = None) -> int:
    """Score every weights folder at every scale; print (and write) the Markdown tables."""
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path,
                        default=repo / ".." / "shared" / "real" / "lmc_figures")
    parser.add_argument("--weights", type=Path, nargs="+", default=[repo / "weights"])
    parser.add_argument("--scales", default="0.5,1,2,4,8",
                        help="input rescaling factors (comma-separated)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the tables here (Markdown)")
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    if not (args.pairs / "pairs.jsonl").is_file():
        print(f"transfer_real: {args.pairs / 'pairs.jsonl'}: not found", file=sys.stderr)
        return 2
    data = pairs(args.pairs)
    runtime = Runtime("cpu", threads=args.threads)
    # named by the path as given: two folders both called weights/ must not collide
    predictors = {str(w): Predictor(manifest_mod.load(w), runtime) for w in args.weights}
    if len(predictors) < len(args.weights):
        print("transfer_real: a weights folder is given twice", file=sys.stderr)
        return 2
    head = ("| pair | organelle | px | input | blur floor | "
            + " | ".join(f"{w} ×{s:g}" for w in predictors for s in scales) + " |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    scores: dict[tuple[str, str], list[list[float]]] = {}
    for name, organelle, x, y in data:
        row = [pcc(x, y), blur_floor(x, y)]
        for predictor in predictors.values():
            row += [pcc(predict_at(predictor, x, organelle, s), y) for s in scales]
        scores.setdefault((organelle.value, "all"), []).append(row)
        lines.append(f"| {name} | {organelle} | {x.shape[0]}×{x.shape[1]} | "
                     + " | ".join(f"{v:.3f}" for v in row) + " |")
    lines += ["", "Mean per organelle:", "", head.replace("| pair | organelle | px |",
                                                         "| organelle | pairs |"),
              "|" + " --- |" * (head.count("|") - 2)]
    for (organelle, _), rows in scores.items():
        mean = np.mean(rows, axis=0)
        lines.append(f"| {organelle} | {len(rows)} | " + " | ".join(f"{v:.3f}" for v in mean)
                     + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
