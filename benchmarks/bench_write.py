"""Output writing cost: seconds and bytes per float32 prediction for each TIFF compression.

Usage: python benchmarks/bench_write.py [--size 2048] [--repeat 3]

A container writes four float32 OME-TIFFs per input, so on a GPU, where a 2048² image is
predicted in well under a second, the writer can dominate. The "prediction" here is a smooth
random field like a network's output (Gaussian-filtered noise plus a gradient, float32 with
full mantissas). Each row: best-of-N wall time of ``ome.write`` and of ``ome.read`` (page
cache warm), file size, and the write time relative to uncompressed, all in this one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from lightmycells.io import ome


def prediction(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.standard_normal((size, size)), 4).astype(np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    return field * 20 + ramp[None, :]


def best_of(repeat: int, func) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    image = prediction(args.size)
    print(f"{args.size}x{args.size} float32 ({image.nbytes / 1e6:.1f} MB raw), best of "
          f"{args.repeat}")
    print(f"{'compression':>12} {'write s':>8} {'read s':>7} {'MB':>6} {'write/none':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.tiff"
        baseline = None
        for compression in (None, "zstd", "zlib", "lzw"):
            def write(compression=compression):
                ome.write(path, image, channel="nucleus", pixel_size_um=(0.1, 0.1),
                          compression=compression)
            seconds = best_of(args.repeat, write)
            reading = best_of(args.repeat, lambda: ome.read(path))
            baseline = seconds if baseline is None else baseline
            print(f"{compression or 'none':>12} {seconds:8.3f} {reading:7.3f} "
                  f"{path.stat().st_size / 1e6:6.1f} {seconds / baseline:10.2f}")


if __name__ == "__main__":
    main()
