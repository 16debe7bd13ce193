"""The tile plan for the challenge's image shapes, and what tiling costs around the model.

Usage: PYTHONPATH=. python benchmarks/bench_tiling.py [--patch 512] [--overlap 0.25]

1. For each image shape in the Light My Cells data: pixels the model computes ÷ the image's
   pixels, for the fixed patch grid and for the per-image plan (``tiling.plan_tiles``).
2. Tiling's own cost (pure numpy: cutting, Hann weighting, accumulation, one division) with
   the model replaced by a no-op of the right output shape, in CPU seconds per megapixel,
   next to the measured cost of a width-16 RUNet on this machine (~0.6-1.0 CPU s/MP,
   docs/BENCHMARKS.md), so the ratio is what tiling adds to a real run.
No torch needed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lightmycells.engine import tiling

SHAPES = [(512, 512), (966, 1296), (980, 1016), (1024, 1024), (1200, 1200), (1300, 1624),
          (2044, 2048), (2048, 2048), (4096, 4096), (8192, 8192)]


def fixed_ratio(shape, patch, overlap_px):
    tiles = [len(tiling.tile_starts(max(n, patch), patch, overlap_px)) for n in shape]
    return tiles[0] * tiles[1] * patch * patch / (shape[0] * shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--channels", type=int, default=1)
    args = parser.parse_args()
    overlap_px = tiling.overlap_pixels(args.patch, args.overlap)
    print(f"patch {args.patch}, minimum overlap {overlap_px} px")
    print(f"{'shape':>11s}  {'fixed grid':>10s}  {'planned tile':>12s} {'tiles':>5s} "
          f"{'planned':>7s}  {'tiling CPU s/MP':>15s}")

    for shape in SHAPES:
        plan = tiling.plan_tiles(shape, patch=args.patch, overlap=args.overlap)
        image = np.random.default_rng(0).random(shape, dtype=np.float32)

        def no_model(batch):
            return np.ones((batch.shape[0], args.channels, *batch.shape[2:]), np.float32)

        start = time.process_time()
        tiling.predict_tiled(image, no_model, tile=plan.tile, overlap=args.overlap,
                             batch_size=1, overlap_px=plan.overlap_px)
        per_mp = (time.process_time() - start) / (image.size / 1e6)
        print(f"{shape[0]:>5d}x{shape[1]:<5d}  {fixed_ratio(shape, args.patch, overlap_px):10.2f}"
              f"  {plan.tile[0]:>5d}x{plan.tile[1]:<6d} {plan.tiles:5d} "
              f"{plan.cost_ratio(shape):7.2f}  {per_mp:15.4f}")


if __name__ == "__main__":
    main()
