"""Batch throughput: pipelined run vs the same run one image at a time vs computing alone.

A batch of ``--images`` simulated-size OME-TIFFs (``--size``², uint16, zlib as microscopes
write them) goes through the container's processor (``process.build``, CPU) three ways,
each in its own child process so that its peak RSS is its own:

- ``compute``: the images loaded beforehand (read, normalised and resampled to the models'
  pixel sizes); only ``Processor.compute`` is timed (tiling, the models, resampling back:
  the bound a pipeline can at best reach);
- ``sequential``: ``batch.run(..., pipelined=False)``: read, compute, write in a row;
- ``pipelined``: ``batch.run(...)``: next read and previous write on background threads.

Every child first computes one image untimed (session warm-up). The three are interleaved
per repeat so that they share the machine's load. Prints a Markdown table with each
child's process CPU seconds per image (all its threads: less sensitive to the machine's
load than wall time) and the 1-minute load average when it ended; ``--json`` writes the
raw figures.

    PYTHONPATH=. python benchmarks/bench_pipeline.py --images 4 --repeats 3
    PYTHONPATH=. python benchmarks/bench_pipeline.py --light     # a tiny model: I/O matters more
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VARIANTS = ("compute", "sequential", "pipelined")


def make_inputs(folder: Path, n: int, size: int) -> None:
    """``n`` smooth uint16 images (a microscope-like spectrum), written as OME-TIFF with zlib."""
    from lightmycells.io import ome

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise = rng.normal(size=(size, size)).astype(np.float32)
        smooth = np.fft.irfft2(np.fft.rfft2(noise) / (1 + np.hypot(
            *np.meshgrid(np.fft.rfftfreq(size), np.fft.fftfreq(size))) * 40), s=(size, size))
        image = np.clip(2000 + smooth / smooth.std() * 400 + rng.normal(0, 30, smooth.shape),
                        0, 65535).astype(np.uint16)
        ome.write(folder / f"im{i:03d}_BF.ome.tiff", image, channel="BF",
                  pixel_size_um=(0.1, 0.1))


def light_weights(folder: Path) -> Path:
    """A tiny 4-channel UNet for all organelles (tests/onnx_models.py), patch 256."""
    from tests import onnx_models

    return onnx_models.write_weights(folder, onnx_models.unet_model(4), name="unet")


def child(args: argparse.Namespace) -> dict:
    """One variant, timed; returns its figures."""
    import process
    from lightmycells.engine.manifest import load as load_manifest
    from lightmycells.io.inputs import discover
    from lightmycells.run import batch
    from lightmycells.vocab import ORGANELLES

    proc, _ = process.build(load_manifest(args.weights), ORGANELLES, device="cpu",
                            threads=args.threads)
    discovery = discover(args.inputs)
    sources = [job.source for job in discovery.jobs]
    proc.compute(proc.load(sources[0]))  # warm-up, untimed
    out = Path(tempfile.mkdtemp(prefix="bench_pipeline_", dir=args.scratch))
    started, cpu = time.perf_counter(), time.process_time()
    if args.variant == "compute":
        loaded = [proc.load(s) for s in sources]
        started, cpu = time.perf_counter(), time.process_time()
        for item in loaded:
            proc.compute(item)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            code = batch.run(discovery, proc, output=out, organelles=ORGANELLES,
                             pipelined=args.variant == "pipelined")
        assert code == 0, f"the batch run failed (exit {code})"
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"variant": args.variant, "images": len(sources), "seconds": seconds,
            "cpu_s_per_image": cpu / len(sources),
            "images_per_min": 60 * len(sources) / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def parent(args: argparse.Namespace) -> None:
    """Make the inputs, run the children interleaved, print the table."""
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_", dir=args.scratch) as tmp:
        inputs = Path(tmp) / "in"
        make_inputs(inputs, args.images, args.size)
        weights = light_weights(Path(tmp) / "weights") if args.light else args.weights
        load_before = os.getloadavg()
        runs = []
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                cmd = [sys.executable, __file__, "--child", variant, "--inputs", str(inputs),
                       "--weights", str(weights), "--scratch", tmp]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(REPO)})
                row = json.loads(done.stdout.strip().splitlines()[-1])
                runs.append({"repeat": repeat, **row, "load": os.getloadavg()[0]})
                print(f"repeat {repeat} {variant}: {row['images_per_min']:.2f} images/min, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        load_after = os.getloadavg()
    print_table(runs, args, load_before, load_after)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load_before": load_before,
                                         "load_after": load_after, "size": args.size,
                                         "light": args.light}, indent=2))


def print_table(runs: list[dict], args: argparse.Namespace, before: tuple, after: tuple) -> None:
    print(f"{args.images} images of {args.size}², four organelles, "
          f"{'tiny UNet' if args.light else args.weights}; load average before "
          f"{before[0]:.1f}, after {after[0]:.1f}\n")
    print("| repeat | compute only img/min | sequential img/min | pipelined img/min | "
          "pipelined ÷ compute | sequential ÷ compute | CPU s/img (c / s / p) | "
          "peak RSS MB (c / s / p) | load (c / s / p) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for repeat in range(args.repeats):
        row = {r["variant"]: r for r in runs if r["repeat"] == repeat}
        c, s, p = (row[v]["images_per_min"] for v in VARIANTS)
        ratios.append(p / c)
        rss = " / ".join(f"{row[v]['peak_rss_mb']:.0f}" for v in VARIANTS)
        cpu = " / ".join(f"{row[v]['cpu_s_per_image']:.1f}" if "cpu_s_per_image" in row[v]
                         else "–" for v in VARIANTS)
        load = " / ".join(f"{row[v]['load']:.1f}" for v in VARIANTS)
        print(f"| {repeat} | {c:.2f} | {s:.2f} | {p:.2f} | {p / c:.3f} | {s / c:.3f} | {cpu} | "
              f"{rss} | {load} |")
    print(f"\npipelined ÷ compute: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}–{max(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--light", action="store_true", help="a tiny UNet instead of --weights")
    parser.add_argument("--threads", type=int, help="ORT threads (default: all CPUs allowed)")
    parser.add_argument("--scratch", type=Path, help="folder for inputs and outputs")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--table", type=Path, help="print the table of a --json file and exit")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        args.repeats = 1 + max(r["repeat"] for r in saved["runs"])
        args.images, args.size, args.light = saved["runs"][0]["images"], saved["size"], \
            saved["light"]
        print_table(saved["runs"], args, saved["load_before"], saved["load_after"])
    elif args.child:
        args.variant = args.child
        print(json.dumps(child(args)))
    else:
        parent(args)


if __name__ == "__main__":
    main()
