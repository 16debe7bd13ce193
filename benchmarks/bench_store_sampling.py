"""Training samples per second from a packed store, at the stored pixels and resampled.

Usage: PYTHONPATH=. python benchmarks/bench_store_sampling.py [--samples 30] [--um 0.16 0.1]

A replica of two Light My Cells studies (Study 3 at 0.1 µm, Study 4 at 0.06 µm; 2048² planes,
two fields of view each) is packed into a store; training's own ``PatchDataset`` (512²
patches, nucleus + mitochondria targets, the default augmentation) then draws samples in
this one process: with ``data.resample_um`` null, and at each ``--um``, where every crop
reads and resamples only the region it needs (``ResampledPlane``), and from a second store
packed at that pixel size (``pack --pixel-um``), which needs no resampling. One process,
one thread: the figure is per data-loader worker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from lightmycells.data.index import build_index, write_index  # noqa: E402
from lightmycells.data.pack import pack  # noqa: E402
from lightmycells.simulate.replica import make_replica  # noqa: E402
from lightmycells.train import data  # noqa: E402
from lightmycells.train.config import parse_config  # noqa: E402


def rate(store: Path, root: Path, um: float | None, samples: int) -> float:
    cfg = parse_config({"out": "unused", "steps": 1, "data": {
        "roots": [str(root)], "organelles": ["nucleus", "mitochondria"], "patch": 512,
        "cache": False, "store": str(store), "resample_um": um}})
    organelles = list(cfg.data.organelles)
    fovs = data.with_targets(data.stored_fovs(store), organelles)
    dataset = data.PatchDataset(fovs, organelles, cfg.data, seed=1, length=samples + 1)
    dataset[0]  # opens the store
    started = time.perf_counter()
    for i in range(1, samples + 1):
        dataset[i]
    return samples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--um", type=float, nargs="*", default=[0.16, 0.1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "replica"
        make_replica(root, studies=[3, 4], max_fovs=2, scale=1, quirks=(), seed=2)
        write_index(root, build_index(root))
        native = Path(tmp) / "replica.store"
        pack(root, native)
        print("| data.resample_um | store | samples/s per worker |\n| --- | --- | --- |")
        print(f"| null | stored pixels | {rate(native, root, None, args.samples):.1f} |")
        for um in args.um:
            lazy = rate(native, root, um, args.samples)
            print(f"| {um} | stored pixels, crops resampled | {lazy:.1f} |")
            packed = Path(tmp) / f"at{um}.store"
            pack(root, packed, pixel_um=um)
            print(f"| {um} | packed at {um} µm | {rate(packed, root, um, args.samples):.1f} |")


if __name__ == "__main__":
    main()
