"""What stays on the host per image: the floor under any GPU's end-to-end time.

Usage: PYTHONPATH=. python benchmarks/bench_host.py [--size 2048] [--repeat 3] [--threads 2]

One simulated bright-field ``size``² OME-TIFF (the GPU check's image), stated at three pixel
sizes, runs through the container's processor with the shipped weights on the CPU: load
(``Processor.load``: read, normalise, resample to the models' pixel sizes), compute
(``Processor.compute``) and write (``Processor.write``). Compute is split into the time inside
the ONNX models' calls and the rest (cutting and blending tiles, resampling back): on a GPU
only the model part shrinks, so load + host compute + write is what a GPU run cannot go
below on this host (a batch run overlaps load and write with compute; a one-image job
cannot).
Best of ``--repeat`` per stage, after one untimed run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_check import simulated_image  # noqa: E402

import process  # noqa: E402 - after the path is set
from lightmycells.engine import manifest as manifests  # noqa: E402
from lightmycells.engine import runtime  # noqa: E402
from lightmycells.engine.predictor import Predictor  # noqa: E402
from lightmycells.io import ome  # noqa: E402
from lightmycells.run import allocator  # noqa: E402
from lightmycells.vocab import ORGANELLES  # noqa: E402


class ModelClock:
    """Seconds spent inside every ONNX model call while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._call = runtime.OnnxModel.__call__
        clock = self

        def timed(model, batch):
            started = time.perf_counter()
            try:
                return clock._call(model, batch)
            finally:
                clock.seconds += time.perf_counter() - started

        runtime.OnnxModel.__call__ = timed


def stages(proc: process.Processor, path: Path, out: Path, clock: ModelClock) -> dict:
    """Seconds of each stage for one image."""
    started = time.perf_counter()
    loaded = proc.load(path)
    load = time.perf_counter() - started
    clock.seconds, started = 0.0, time.perf_counter()
    computed = proc.compute(loaded)
    compute, model = time.perf_counter() - started, clock.seconds
    started = time.perf_counter()
    proc.write(computed, {o: out / f"{o.value}.tiff" for o in ORGANELLES})
    write = time.perf_counter() - started
    return {"load": load, "model": model, "host compute": compute - model, "write": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--allocator", choices=["default", "keep"], default="keep",
                        help="keep: glibc keeps freed large blocks, as inference.py sets it "
                        "(run.allocator); default: glibc's own thresholds")
    args = parser.parse_args()
    if args.allocator == "keep":
        allocator.keep_large_blocks()
    manifest = manifests.load(args.weights)
    proc = process.Processor(Predictor(manifest, runtime.Runtime("cpu", args.threads)),
                             manifest, ORGANELLES)
    clock = ModelClock()
    print(f"{args.size}² BF, {args.threads} ORT threads, best of {args.repeat} per stage, "
          f"allocator {args.allocator}")
    print("| pixel µm | load s | host compute s | write s | host total s | model s (CPU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plane, _ = ome.read(simulated_image(folder, args.size))
        for um in (0.0718, 0.1, 0.162):
            path = folder / f"at_{um}_BF.ome.tiff"
            ome.write(path, plane, channel="BF", pixel_size_um=(um, um))
            stages(proc, path, folder, clock)  # sessions, first shapes
            runs = [stages(proc, path, folder, clock) for _ in range(args.repeat)]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            host = best["load"] + best["host compute"] + best["write"]
            print(f"| {um} | {best['load']:.3f} | {best['host compute']:.3f} | "
                  f"{best['write']:.3f} | {host:.3f} | {best['model']:.2f} |")


if __name__ == "__main__":
    main()
