"""Draw docs/simulator.png: per modality, the input out of focus and at focus, and the four
ground truths of the same field of view.

Run: ``PYTHONPATH=. python scripts/make_simulator_figure.py [--out docs/simulator.png]``;
``--preset realistic --out docs/simulator_realistic.png`` draws the realistic preset (its
planes one z-step either side of focus, whose size follows the objective's depth of field).
Each row is one simulated study (its own pixel size, optics and camera); the ground truths
are rendered for all four organelles even in the DIC row, which the dataset itself never
labels with actin (the real data has no DIC→actin pair).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lightmycells.simulate import render_fov, study_for  # noqa: E402
from lightmycells.vocab import ORGANELLES, Modality  # noqa: E402

SEED = 11
SIZE = (384, 384)
DEFOCUS_UM = (-2.0, 0.0, 2.0)


def _show(ax, image, title, cmap="gray"):
    lo, hi = np.percentile(image, (0.5, 99.8))
    ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("docs/simulator.png"))
    parser.add_argument("--preset", default="clean", help="clean (default) or realistic")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    columns = len(DEFOCUS_UM) + len(ORGANELLES)
    tall = 2.5 if args.preset == "clean" else 2.8  # room for the objective and cell type
    fig, axes = plt.subplots(3, columns, figsize=(2.1 * columns, tall * 3))
    for row, modality in enumerate(Modality):
        study = study_for(args.seed, row + 1, modality, size=SIZE, planes=len(DEFOCUS_UM),
                          preset=args.preset)
        z_um = DEFOCUS_UM if study.realism is None else (-study.z_step_um, 0.0, study.z_step_um)
        fov = render_fov(np.random.default_rng([args.seed, row]), study, ORGANELLES, z_um=z_um)
        what = "" if study.realism is None else (f"\n{study.realism.objective}, "
                                                 f"{study.realism.cell_type}")
        for col, (z, plane) in enumerate(zip(fov.z_um, fov.planes, strict=True)):
            _show(axes[row, col], plane,
                  f"{modality.value} z={z:+.1f} µm" + (f"\n{study.pixel_size_um * 1e3:.0f} nm, "
                                                      f"NA {study.optics.na:.2f}{what}"
                                                      if col == 0 else ""))
        for col, organelle in enumerate(ORGANELLES, start=len(DEFOCUS_UM)):
            _show(axes[row, col], fov.targets[organelle], organelle.value, cmap="magma")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=72)
    # a 256-colour palette keeps the noisy panels' PNG small enough for the repository
    Image.open(buffer).convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
