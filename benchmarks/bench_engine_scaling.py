"""Peak memory and time per megapixel of ``Predictor.predict`` across image sizes.

Usage: PYTHONPATH=. python benchmarks/bench_engine_scaling.py [--sizes 512,1024,2048,4096]
       [--four-models 2048] [--threads 1]

Each case runs in a fresh child process, so its peak resident set size (``ru_maxrss``)
belongs to that case alone: Python, ONNX Runtime, the sessions, the uint16 input (loaded
from a ``.npy`` the parent wrote, so building the test image does not count) and the
prediction. Each session first runs one tile of the planned shape, as in a run over many
images, where sessions and their first-call set-up are reused. Cases:

- ``--four-models N``: one N² image through four separate RUNet models (one per organelle);
- ``--sizes``: one model (one output), one image per size, per-image tile plan; CPU seconds per
  megapixel (process CPU time, single-threaded session: robust to other jobs on the box).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lightmycells.engine import manifest, predictor, runtime, tiling
from lightmycells.io.ome import ImageMeta
from lightmycells.vocab import ORGANELLES


def child(weights: Path, image_path: Path, threads: int) -> None:
    """Run one case and print a JSON line (peak RSS, CPU and wall seconds)."""
    m = manifest.load(weights)
    rt = runtime.Runtime("cpu", threads)
    image = np.load(image_path)
    organelles = [o for o in ORGANELLES if any(o in e.organelles for e in m.models)]
    p = predictor.Predictor(m, rt)
    meta = ImageMeta("bench", "YX", None, "stated", None)
    for entry in m.models:  # warm-up: one tile of the planned shape (a run reuses sessions)
        plan = tiling.plan_tiles(image.shape, patch=entry.patch, overlap=entry.overlap)
        rt.model(entry, weights)(np.zeros((1, 1, *plan.tile), np.float32))
    cpu, wall = time.process_time(), time.perf_counter()
    out = p.predict(image, meta, organelles)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(np.isfinite(v).all() and v.shape == image.shape for v in out.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "peak_rss_mb": peak_mb,
                      "models": len(m.models), "outputs": len(out)}))


def run_case(weights: Path, shape: tuple[int, int], threads: int, tmp: Path) -> dict:
    from bench_engine_common import cell_image  # parent only: it imports torch

    image_path = tmp / f"image_{shape[0]}x{shape[1]}.npy"
    np.save(image_path, cell_image(shape))
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(weights), str(image_path), str(threads)],
        check=True, capture_output=True, text=True)
    image_path.unlink()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024,2048,4096")
    parser.add_argument("--four-models", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), int(args.child[2]))
        return
    from bench_engine_common import load_line, write_runet_weights  # imports torch

    tmp = Path(tempfile.mkdtemp())
    print(f"# {load_line()} at start; ORT threads {args.threads}")
    if args.four_models:
        four = write_runet_weights(tmp / "four", [str(o) for o in ORGANELLES], separate=True)
        n = args.four_models
        r = run_case(four, (n, n), args.threads, tmp)
        print(f"four models, {n}²: peak RSS {r['peak_rss_mb']:.0f} MB, {r['cpu_s']:.1f} s CPU, "
              f"{r['wall_s']:.1f} s wall")
    one = write_runet_weights(tmp / "one")
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        r = run_case(one, (n, n), args.threads, tmp)
        mp = n * n / 1e6
        rows.append((n, r["cpu_s"] / mp))
        print(f"one model, {n:5d}²: {r['cpu_s'] / mp:.3f} CPU s/MP ({r['wall_s'] / mp:.3f} wall "
              f"s/MP), peak RSS {r['peak_rss_mb']:.0f} MB")
    if rows:
        values = [v for _, v in rows]
        mid = (max(values) + min(values)) / 2
        print(f"CPU s/MP spread: {min(values):.3f}–{max(values):.3f} = "
              f"±{(max(values) - mid) / mid:.1%} around the midpoint")
    print(f"# {load_line()} at end")


if __name__ == "__main__":
    main()
