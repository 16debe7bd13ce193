"""Simulator speed: seconds per 512² field of view with 5 z-planes, on one core.

Target (issue 4): ≤ 1 s per field of view, including writing the OME-TIFFs.
Run: ``python benchmarks/bench_simulate.py [--repeats 3] [--size 512]``.
Prints per modality the render time (scene + planes + ground truth), the time to write the
files, their sum and its ratio to the 1 s target — all measured in this one run, pinned to
one CPU — as wall time and as this process's CPU time (which other processes sharing the
core do not inflate).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lightmycells.simulate import render_fov, study_for
from lightmycells.simulate.dataset import write_fov
from lightmycells.vocab import ORGANELLES, Modality

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--planes", type=int, default=5)
    parser.add_argument("--preset", default="clean", help="clean or realistic")
    parser.add_argument("--studies", type=int, default=1,
                        help="studies per modality (realistic studies differ widely)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    size = (args.size, args.size)
    print(f"{args.size}² px, {args.planes} planes, 3 ground truths, one core, "
          f"median of {args.repeats}")
    print(f"{'modality':8} {'render s':>9} {'write s':>8} {'total s':>8} {'/ target':>9} "
          f"{'CPU s':>6} {'/ target':>9}")
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(1, 3 * args.studies + 1):
            modality = list(Modality)[(index - 1) % 3]
            study = study_for(0, index, modality, size=size, planes=args.planes,
                              preset=args.preset)
            labels = ORGANELLES[:3]  # typical: a field of view never has all four
            render, write, cpu = [], [], []
            for r in range(args.repeats):
                c0 = time.process_time()
                t0 = time.perf_counter()
                fov = render_fov(np.random.default_rng(r), study, labels)
                t1 = time.perf_counter()
                write_fov(Path(tmp), Path(tmp), r + 1, study, fov, gc=False)
                t2 = time.perf_counter()
                cpu.append(time.process_time() - c0)
                render.append(t1 - t0)
                write.append(t2 - t1)
            rs, ws, cs = (float(np.median(v)) for v in (render, write, cpu))
            totals.append((rs + ws, cs))
            what = (f" {study.realism.objective} {study.realism.cell_type}"
                    if study.realism else "")
            print(f"{modality.value:8} {rs:9.3f} {ws:8.3f} {rs + ws:8.3f} "
                  f"{(rs + ws) / TARGET_S:9.2f} {cs:6.3f} {cs / TARGET_S:9.2f}{what}")
    if len(totals) > 3:
        wall, cpu_s = np.array(totals).T
        print(f"median over {len(totals)} studies: {np.median(wall):.3f} s wall, "
              f"{np.median(cpu_s):.3f} s CPU; slowest {wall.max():.3f} s wall, "
              f"{cpu_s.max():.3f} s CPU")


if __name__ == "__main__":
    main()
