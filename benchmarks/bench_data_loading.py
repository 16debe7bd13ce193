"""Training-sample loading from raw OME-TIFFs vs the packed zarr store, one worker each.

A sample is what one training item costs the data loader: pick a field of view, a random
focus plane, a 512² patch at a random place, read the input patch and the field of view's
targets there, normalise with the plane's 2 / 99.8 percentiles, gamma + contrast +
brightness on the input, a random flip/rotation. Raw: the whole plane is decoded and its
percentiles computed for every sample (training's ImageStore with ``cache: false``, what the
real set needs at ~57k files). Store: only the touched 256² chunks are decoded and the
percentiles are read from the store's table.

Each loader runs in its own fresh process (one "worker") for ``--seconds`` after a warm-up;
the table gives samples/s, the CPU time per sample and the process's peak RSS. Both read the
same files from the page cache (warm): on a real disk the raw side also reads ~10× more
bytes per sample.

    PYTHONPATH=. python benchmarks/bench_data_loading.py --fovs 6 --planes 4 --seconds 20
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
import tifffile
from scipy import ndimage

from lightmycells.data.index import build_index, write_index
from lightmycells.data.pack import pack
from lightmycells.data.store import Store
from lightmycells.engine.normalize import percentiles
from lightmycells.io.planes import read_plane

PATCH = 512
TARGETS = ("Nucleus", "Mitochondria")


def make_tree(root: Path, fovs: int, planes: int, size: int, compression: str | None) -> None:
    """Real-sized uint16 OME-TIFFs in the archive layout: smooth structure + shot noise."""
    rng = np.random.default_rng(0)
    folder = root / "Study_1"
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(fovs):
        base = ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 6)
        base = (base - base.min()) / (np.ptp(base) + 1e-6)
        names = [(f"image_{f}_BF_z{k}", 3000 + 2000 * base * (1 - 0.1 * k)) for k in
                 range(planes)]
        names += [(f"image_{f}_{t}", 200 + 3000 * base ** (2 + i)) for i, t in
                  enumerate(TARGETS)]
        for name, level in names:
            pixels = rng.poisson(level).astype(np.uint16)
            tifffile.imwrite(folder / f"{name}.ome.tiff", pixels, ome=True,
                             bigtiff=compression is not None, compression=compression,
                             metadata={"axes": "YX", "PhysicalSizeX": 0.1,
                                       "PhysicalSizeY": 0.1})


def _augment(rng: np.random.Generator, x: np.ndarray, low: float, high: float,
             vmin: float, vmax: float, ys: list[np.ndarray]) -> np.ndarray:
    gamma = float(np.exp(rng.uniform(-np.log(1.3), np.log(1.3))))
    span = max(vmax - vmin, 1e-6)

    def curve(v):
        return np.clip((np.asarray(v, np.float32) - vmin) / span, 0, 1) ** gamma

    lo, hi = curve(low), curve(high)
    x = (curve(x) - lo) / max(float(hi - lo), 1e-6)
    x = x * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    stack = np.rot90(np.stack([x, *ys]), int(rng.integers(4)), axes=(-2, -1))
    return np.ascontiguousarray(stack[..., ::-1] if rng.integers(2) else stack, np.float32)


def _raw_plane(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    pixels = read_plane(path).pixels
    lo, hi = percentiles(pixels, (2.0, 99.8), np.float64)
    return pixels, (float(lo), float(hi), float(pixels.min()), float(pixels.max()))


def sample_raw(rng: np.random.Generator, root: Path, fovs: list[dict]) -> np.ndarray:
    fov = fovs[int(rng.integers(len(fovs)))]
    plane, (lo, hi, vmin, vmax) = _raw_plane(root / fov["planes"][int(rng.integers(
        len(fov["planes"])))])
    top, left = (int(rng.integers(n - PATCH + 1)) for n in plane.shape)
    ys = []
    for rel in fov["targets"].values():
        target, (tlo, thi, _, _) = _raw_plane(root / rel)
        ys.append((target[top:top + PATCH, left:left + PATCH] - tlo) / max(thi - tlo, 1e-6))
    crop = plane[top:top + PATCH, left:left + PATCH]
    return _augment(rng, crop, lo, hi, vmin, vmax, ys)


def sample_store(rng: np.random.Generator, store: Store, fovs: list[dict]) -> np.ndarray:
    fov = fovs[int(rng.integers(len(fovs)))]
    rel = fov["planes"][int(rng.integers(len(fov["planes"])))]
    ref, plane = store.ref(rel), store.plane(rel)
    top, left = (int(rng.integers(n - PATCH + 1)) for n in plane.shape)
    window = (slice(top, top + PATCH), slice(left, left + PATCH))
    ys = []
    for trel in fov["targets"].values():
        t = store.ref(trel)
        tlo, thi = t.percentile(2.0), t.percentile(99.8)
        ys.append((store.plane(trel)[window] - tlo) / max(thi - tlo, 1e-6))
    return _augment(rng, plane[window], ref.percentile(2.0), ref.percentile(99.8),
                    ref.stats["min"], ref.stats["max"], ys)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (Linux; starts afresh at exec, unlike
    ru_maxrss, which a child inherits from its parent), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind: str, root: Path, store_path: Path, seconds: float) -> dict:
    """Run one loader in this process; samples/s, CPU s/sample, peak RSS MB."""
    rng = np.random.default_rng(1)
    if kind == "raw":
        fovs = json.loads((root / "lmc_index.json").read_text())["fovs"]

        def one():
            return sample_raw(rng, root, fovs)
    else:
        store = Store(store_path)

        def one():
            return sample_store(rng, store, store.fovs)
    for _ in range(3):
        one()
    base_mb = peak_rss_mb()
    n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"kind": kind, "samples": n, "per_s": n / wall, "cpu_ms": 1e3 * cpu / n,
            "rss_mb": peak_rss_mb(),
            "warm_rss_mb": base_mb}


#: Dense bf16/fp16 tensor peak, TFLOP/s (vendor data sheets), and the assumed fraction of it
#: a convolutional U-Net step reaches under AMP. Computed figures, not measurements.
GPUS = {"A100 (SXM)": 312.0, "H100 (SXM)": 989.0}
ASSUMED_MFU = 0.4


def gpu_estimate(config: str, patch: int = PATCH) -> list[str]:
    """Patches/s one GPU consumes for ``config``'s model, computed from its FLOPs.

    Multiply-accumulates of every convolution for one ``patch``² forward pass (counted with
    forward hooks), × 2 FLOPs per MAC, × 3 for forward + backward.
    """
    import torch  # only this estimate needs torch
    from torch import nn

    from lightmycells.train.config import load_config
    from lightmycells.train.models import build_model

    cfg = load_config(config)
    model = build_model(cfg.model, len(cfg.data.organelles)).eval()
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        kernel = module.kernel_size[0] * module.kernel_size[1] // module.groups
        if isinstance(module, nn.ConvTranspose2d):
            macs += inputs[0].numel() * module.out_channels * kernel
        else:
            macs += output.numel() * module.in_channels * kernel

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 1, patch, patch))
    step_gflop = 3 * 2 * macs / 1e9
    lines = [f"{config}: {cfg.model.name} depth {cfg.model.depth} width {cfg.model.width} "
             f"blocks {cfg.model.blocks}: {macs / 1e9:.1f} GMAC per {patch}² forward, "
             f"~{step_gflop:.0f} GFLOP per training patch (forward + backward)"]
    for gpu, peak in GPUS.items():
        rate = peak * 1e3 * ASSUMED_MFU / step_gflop
        lines.append(f"  {gpu}: {peak:.0f} TFLOP/s peak x {ASSUMED_MFU:.0%} -> "
                     f"~{rate:.0f} patches/s (computed, not measured)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fovs", type=int, default=6)
    parser.add_argument("--planes", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--raw-compression", default=None, help="e.g. zlib (BigTIFF)")
    parser.add_argument("--dir", default=None, help="keep the data here (default: temp)")
    parser.add_argument("--gpu-estimate", metavar="CONFIG", default=None,
                        help="also print the patches/s a GPU consumes for CONFIG's model")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpu_estimate:
        print("\n".join(gpu_estimate(args.gpu_estimate)))
    if args.worker:
        kind, root, store = args.worker
        print(json.dumps(worker(kind, Path(root), Path(store), args.seconds)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root, store = Path(tmp) / "raw", Path(tmp) / "store"
        t = time.perf_counter()
        make_tree(root, args.fovs, args.planes, args.size, args.raw_compression)
        write_index(root, build_index(root, jobs=2))
        t_pack = time.perf_counter()
        pack(root, store, jobs=2)
        t_pack = time.perf_counter() - t_pack
        raw_mb = sum(p.stat().st_size for p in root.rglob("*.ome.tiff")) / 1e6
        store_mb = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6
        print(f"data: {args.fovs} FOVs x ({args.planes} planes + {len(TARGETS)} targets) of "
              f"{args.size}² uint16, raw {raw_mb:.0f} MB ({args.raw_compression or 'none'}), "
              f"store {store_mb:.0f} MB; made in {time.perf_counter() - t:.0f} s, "
              f"pack (2 jobs) {t_pack:.1f} s")
        rows = {}
        for kind in ("raw", "store"):
            out = subprocess.run(
                [sys.executable, __file__, "--seconds", str(args.seconds), "--worker", kind,
                 str(root), str(store)], check=True, capture_output=True, text=True)
            rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        print("| loader | samples | samples/s per worker | CPU ms / sample | peak RSS MB "
              "(after 3 warm-up samples) |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows.values():
            print(f"| {r['kind']} | {r['samples']} | {r['per_s']:.1f} | {r['cpu_ms']:.1f} | "
                  f"{r['rss_mb']:.0f} ({r['warm_rss_mb']:.0f}) |")
        print(f"store / raw: {rows['store']['per_s'] / rows['raw']['per_s']:.1f}x samples/s")


if __name__ == "__main__":
    main()
