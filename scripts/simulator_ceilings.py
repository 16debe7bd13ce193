"""Noise ceilings of the simulated data: the challenge metrics between two independent noisy
renderings of the same fluorescence ground truth (no model can predict the noise of the
image it is scored against), and between the noise-free image and a noisy one (the best
possible prediction, the expected image).

Run: ``PYTHONPATH=. python scripts/simulator_ceilings.py [--fovs 36] [--size 512] [--seed 0]``.
Fields of view come from ``--fovs`` different simulated studies (each its own pixel size,
NA, brightness and cells), drawn exactly as ``make_dataset`` draws them. Prints a Markdown
table: mean ± standard deviation over the fields of view, per organelle and metric.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from lightmycells.eval.metrics import score
from lightmycells.simulate import expected_fluorescence, make_scene, noisy_pair, study_for
from lightmycells.vocab import METRICS, ORGANELLES, Modality

PAIRS = ("noisy vs noisy", "noise-free vs noisy")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fovs", type=int, default=36)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for n in tqdm(range(1, args.fovs + 1), desc="ceilings", unit="fov"):
        study = study_for(args.seed, n, Modality.BF, size=(args.size, args.size))
        rng = np.random.default_rng([args.seed, n, 0])
        scene = make_scene(rng, study.size, study.pixel_size_um, study.cells)
        for organelle in ORGANELLES:
            a, b = noisy_pair(scene, organelle, study.fluorescence, seed=args.seed * 10**6 + n)
            clean = expected_fluorescence(scene, organelle, study.fluorescence)
            for pair, (x, y) in zip(PAIRS, ((a, b), (clean, b)), strict=True):
                for metric, value in score(x, y, organelle).items():
                    results[(pair, organelle.value, metric)].append(value)
    print(f"{args.fovs} fields of view of {args.size}² px, seed {args.seed}\n")
    metrics = ("PCC", "SSIM", "MAE", "E_dist", "C_dist")
    print("| organelle | pair | " + " | ".join(metrics) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in metrics) + " |")
    for organelle in ORGANELLES:
        for pair in PAIRS:
            cells = []
            for metric in metrics:
                values = results.get((pair, organelle.value, metric))
                cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}"
                             if values and metric in METRICS[organelle] else "—")
            print(f"| {organelle.value} | {pair} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
