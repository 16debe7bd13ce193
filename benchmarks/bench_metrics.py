"""Time the challenge metrics against the reference libraries on one 2048² pair.

Usage: python benchmarks/bench_metrics.py [--size 2048] [--repeat 3]

Ground truth uint16, prediction float32 (what the evaluation meets). Each line prints the
best-of-N wall time and CPU time (all threads) of the reference call and of ours, measured
side by side in this run, and their ratios; the last line is the whole per-image
computation (normalise both, five metrics) as the official evaluation does it vs.
``lightmycells.eval.metrics.score``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity
from sklearn.metrics import mean_absolute_error
from sklearn.metrics.pairwise import cosine_distances, euclidean_distances

from lightmycells.eval import metrics


def best_of(repeat, func, *args):
    """Best wall time, best CPU time (all threads of this process) and the value."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = func(*args)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, value


def ref_normalize(image):
    low = np.percentile(image, 2, keepdims=True)
    high = np.percentile(image, 99.8, keepdims=True)
    return image if low == high else (image - low) / (high - low)


def ref_ssim(x, y):
    data_range = np.maximum(x.max() - x.min(), y.max() - y.min())
    return structural_similarity(y, x, data_range=data_range)


def ref_pcc(x, y):
    return pearsonr(y.ravel(), x.ravel())[0]


def ref_e_dist(x, y):
    return euclidean_distances(y.ravel().reshape(1, -1), x.ravel().reshape(1, -1))[0, 0]


def ref_c_dist(x, y):
    return abs(cosine_distances(y.ravel().reshape(1, -1), x.ravel().reshape(1, -1))[0, 0])


def ref_score(pred, gt):
    x, y = ref_normalize(pred), ref_normalize(gt)
    return {"PCC": ref_pcc(x, y), "SSIM": ref_ssim(x, y), "MAE": mean_absolute_error(y, x),
            "E_dist": ref_e_dist(x, y), "C_dist": ref_c_dist(x, y)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    shape = (args.size, args.size)
    gt = rng.integers(100, 4000, shape).astype(np.uint16)
    pred = (gt * 0.01 + rng.normal(0, 5, shape)).astype(np.float32)
    x = metrics.percentile_normalize(pred).astype(np.float64)
    y = metrics.percentile_normalize(gt)
    rows = [
        ("normalise uint16 gt", ref_normalize, metrics.percentile_normalize, (gt,)),
        ("normalise float32 pred", ref_normalize, metrics.percentile_normalize, (pred,)),
        ("SSIM", ref_ssim, metrics.ssim, (x, y)),
        ("PCC", ref_pcc, metrics.pcc, (x, y)),
        ("MAE", lambda a, b: mean_absolute_error(b, a), metrics.mae, (x, y)),
        ("E_dist", ref_e_dist, metrics.e_dist, (x, y)),
        ("C_dist", ref_c_dist, metrics.c_dist, (x, y)),
        ("score (normalise + 5 metrics)", ref_score,
         lambda p, g: metrics.score(p, g, "nucleus"), (pred, gt)),
    ]
    print(f"{args.size}x{args.size}, best of {args.repeat}")
    print(f"{'step':30s} {'ref ms':>8s} {'ours ms':>8s} {'speed-up':>8s} "
          f"{'ref CPU':>8s} {'ours CPU':>8s} {'CPU ratio':>9s}")
    for name, ref, ours, call_args in rows:
        t_ref, c_ref, v_ref = best_of(args.repeat, ref, *call_args)
        t_ours, c_ours, v_ours = best_of(args.repeat, ours, *call_args)
        if isinstance(v_ref, dict):
            agree = max(abs(v_ref[k] - v_ours[k]) for k in v_ours)
        else:
            agree = float(np.max(np.abs(np.asarray(v_ref) - np.asarray(v_ours))))
        print(f"{name:30s} {t_ref * 1e3:8.1f} {t_ours * 1e3:8.1f} {t_ref / t_ours:7.1f}x "
              f"{c_ref * 1e3:8.1f} {c_ours * 1e3:8.1f} {c_ref / c_ours:8.1f}x"
              f"  max |diff| {agree:.1e}")


if __name__ == "__main__":
    main()
