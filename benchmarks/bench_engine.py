"""One 2048² image through a shipped-size RUNet: engine overhead, tile plan, MONAI, torchio.

Usage: PYTHONPATH=. python benchmarks/bench_engine.py [--size 2048] [--reps 1] [--threads 1]
       [--clock cpu|wall]

All figures come from one ONNX Runtime session (CPU, ``--threads`` intra-op threads) and
are measured side by side in this run, interleaved, best of ``--reps`` after one warm-up
call per input shape. ``--clock cpu`` (default) times process CPU seconds: on a machine
shared with other jobs, wall time mostly measures the neighbours, while the CPU time of a
single-threaded session measures the work (use ``--threads 1`` with it: a multi-threaded
ORT pool spin-waits, which counts as CPU time).

1. overhead: ``Predictor.predict`` end to end ÷ ``session.run`` alone on exactly the
   batches the tiler feeds (fixed 512 grid at 25 % overlap, and the per-image plan);
2. the limit: the image's pixel count × the model's best seconds per megapixel over the
   probed tile shapes; end-to-end with the per-image plan ÷ that limit;
3. MONAI ``sliding_window_inference`` (Gaussian) and torchio ``GridSampler`` /
   ``GridAggregator`` (Hann) driving the same session with the same tile, overlap and
   batch (the fixed grid, and the per-image plan), normalisation included as in ours;
   their time ÷ ours, and the Pearson correlation of the outputs with ours;
4. seams: each tiled output against the model run once on the whole image.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchio as tio
from bench_engine_common import (
    OVERLAP,
    PATCH,
    cell_image,
    load_line,
    pearson,
    timed,
    write_runet_weights,
)
from monai.inferers import sliding_window_inference

from lightmycells.engine import manifest, normalize, predictor, runtime, tiling
from lightmycells.io.ome import ImageMeta

BATCH = 4
PROBE_TILES = [(1, 512), (4, 512), (1, 1024), (1, 1088), (1, 2048)]


def recorded_batches(x, model, **tile_args):
    """The exact (B, 1, T, T) batches the tiler feeds for ``x``."""
    batches = []

    def record(batch):
        batches.append(batch.copy())
        return model(batch)

    tiling.predict_tiled(x, record, **tile_args)
    return batches


def monai_run(image, session, tile, overlap_px, batch):
    """Normalise, then MONAI's sliding window (Gaussian blending) over the ORT session."""
    x = normalize.Percentile().before(image)[0]

    def predict(t):
        return torch.from_numpy(session.run(None, {"input": t.numpy()})[0])

    with torch.no_grad():
        out = sliding_window_inference(torch.from_numpy(x)[None, None], (tile, tile), batch,
                                       predict, overlap=overlap_px / tile, mode="gaussian")
    return out[0].numpy()


def torchio_run(image, session, tile, overlap_px, batch):
    """Normalise, then torchio's grid sampler and aggregator (Hann) over the ORT session."""
    x = normalize.Percentile().before(image)[0]
    subject = tio.Subject(img=tio.ScalarImage(tensor=torch.from_numpy(x)[None, ..., None]))
    sampler = tio.inference.GridSampler(subject, (tile, tile, 1), (overlap_px, overlap_px, 0))
    aggregator = tio.inference.GridAggregator(sampler, overlap_mode="hann")
    loader = torch.utils.data.DataLoader(sampler, batch_size=batch)
    for batch in loader:
        tiles = batch["img"][tio.DATA][..., 0].numpy()  # (B, 1, T, T)
        out = torch.from_numpy(session.run(None, {"input": tiles})[0])[..., None]
        aggregator.add_batch(out, batch[tio.LOCATION])
    return aggregator.get_output_tensor()[..., 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)  # torch only moves arrays here; ORT does the compute

    folder = write_runet_weights(Path(tempfile.mkdtemp()) / "weights")
    m = manifest.load(folder)
    entry = m.models[0]
    rt = runtime.Runtime("cpu", args.threads)
    model = rt.model(entry, folder)
    session = model.session
    size_mb = (folder / entry.file).stat().st_size / 1e6
    image = cell_image((args.size, args.size))
    meta = ImageMeta("bench", "YX", None, "stated", None)
    x = normalize.Percentile().before(image)[0]
    mp = image.size / 1e6

    fixed = predictor.Predictor(m, rt, tiles="patch", batch_size=BATCH)
    auto = predictor.Predictor(m, rt, batch_size=BATCH)
    plan = tiling.plan_tiles(x.shape, patch=PATCH, overlap=OVERLAP)
    auto_batch = max(1, BATCH * PATCH**2 // (plan.tile[0] * plan.tile[1]))
    overlap_px = tiling.overlap_pixels(PATCH, OVERLAP)
    fixed_batches = recorded_batches(x, model, tile=PATCH, overlap=OVERLAP, batch_size=BATCH,
                                     overlap_px=overlap_px)
    auto_batches = recorded_batches(x, model, tile=plan.tile, overlap=OVERLAP,
                                    batch_size=auto_batch, overlap_px=plan.overlap_px)

    def bare(batches):
        return lambda: [session.run(None, {"input": b}) for b in batches]

    def no_model(batch):  # what the engine costs around ORT: the model replaced by a no-op
        return np.ones((batch.shape[0], 1, *batch.shape[2:]), np.float32)

    def engine_only(tile, batch, overlap_px):
        return lambda: tiling.predict_tiled(normalize.Percentile().before(image)[0], no_model,
                                            tile=tile, overlap=OVERLAP, batch_size=batch,
                                            overlap_px=overlap_px)

    probes = {(b, t): np.random.default_rng(0).random((b, 1, t, t), dtype=np.float32)
              for b, t in PROBE_TILES if t <= args.size}
    methods = {
        "fixed grid, end to end": lambda: fixed.predict(image, meta, ["nucleus"]),
        "fixed grid, bare ORT": bare(fixed_batches),
        "planned tiles, end to end": lambda: auto.predict(image, meta, ["nucleus"]),
        "planned tiles, bare ORT": bare(auto_batches),
        "MONAI, fixed grid": lambda: monai_run(image, session, PATCH, overlap_px, BATCH),
        "torchio, fixed grid": lambda: torchio_run(image, session, PATCH, overlap_px, BATCH),
        "MONAI, planned tile": lambda: monai_run(image, session, plan.tile[0], plan.overlap_px,
                                                 auto_batch),
        "torchio, planned tile": lambda: torchio_run(image, session, plan.tile[0],
                                                     plan.overlap_px, auto_batch),
        "fixed grid, engine without ORT": engine_only(PATCH, BATCH, overlap_px),
        "planned tiles, engine without ORT": engine_only(plan.tile, auto_batch, plan.overlap_px),
        **{f"probe {b}x{t}²": (lambda p=p: session.run(None, {"input": p}))
           for (b, t), p in probes.items()},
    }
    print(f"# {load_line()} at start; ORT threads {rt.threads}; {args.clock} clock; model RUNet "
          f"depth 4 width 16, {size_mb:.1f} MB; image {args.size}²")
    for batch in {b.shape: b for b in fixed_batches + auto_batches}.values():
        session.run(None, {"input": batch})  # warm-up: first call per input shape
    best = dict.fromkeys(methods, float("inf"))
    outputs = {}
    for _ in range(args.reps):
        for name, fn in methods.items():
            seconds, outputs[name] = timed(fn, args.clock)
            best[name] = min(best[name], seconds)
    print(f"# {load_line()} at end")

    for name, seconds in best.items():
        print(f"{name:34s} {seconds:7.2f} s")
    spm = {(b, t): best[f"probe {b}x{t}²"] / (b * t * t / 1e6) for b, t in probes}
    for (b, t), value in spm.items():
        print(f"  s/MP at {b}x{t}²: {value:.3f}")
    best_spm = min(spm.values())
    limit = mp * best_spm
    fixed_px = sum(b.shape[0] * b.shape[2] * b.shape[3] for b in fixed_batches) / image.size
    auto_px = sum(b.shape[0] * b.shape[2] * b.shape[3] for b in auto_batches) / image.size
    print(f"pixels computed ÷ image: fixed grid {fixed_px:.2f}, "
          f"plan {plan.tile} x{plan.tiles} {auto_px:.2f}")
    print(f"end-to-end ÷ bare ORT, fixed grid:    "
          f"{best['fixed grid, end to end'] / best['fixed grid, bare ORT']:.3f}")
    print(f"end-to-end ÷ bare ORT, planned tiles: "
          f"{best['planned tiles, end to end'] / best['planned tiles, bare ORT']:.3f}")
    for grid in ("fixed grid", "planned tiles"):
        print(f"engine work outside ORT ÷ bare ORT, {grid}: "
              f"{best[f'{grid}, engine without ORT'] / best[f'{grid}, bare ORT']:.3f}")
    print(f"limit {mp:.2f} MP x {best_spm:.3f} s/MP = {limit:.2f} s; planned end-to-end ÷ limit "
          f"{best['planned tiles, end to end'] / limit:.3f}; fixed grid ÷ limit "
          f"{best['fixed grid, end to end'] / limit:.3f}")
    tiled = {name: (out["nucleus"] if isinstance(out, dict) else out[0])
             for name, out in outputs.items()
             if not name.startswith("probe") and "bare" not in name and "without" not in name}
    for grid, ours_name in (("fixed grid", "fixed grid, end to end"),
                            ("planned tile", "planned tiles, end to end")):
        for lib in ("MONAI", "torchio"):
            name = f"{lib}, {grid}"
            print(f"{name:22s}: time ÷ ours (same tiles) {best[name] / best[ours_name]:.2f}; "
                  f"Pearson with ours {pearson(tiled[name], tiled[ours_name]):.7f}")
    whole = session.run(None, {"input": x[None, None]})[0][0, 0]
    span = whole.max() - whole.min()
    for name, values in tiled.items():
        diff = np.abs(values - whole)
        print(f"seams: {name:17s} vs one whole-image pass: max |diff| {diff.max() / span:.2e} of "
              f"range, mean {diff.mean() / span:.2e}, Pearson {pearson(values, whole):.7f}")


if __name__ == "__main__":
    main()
