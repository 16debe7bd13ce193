"""Tables of issue 9 (seed 003) for docs/MODELS.md, from what scripts/zoo_issue9.sh wrote.

``python scripts/seed003_table.py RUN`` prints, as Markdown:

- PCC / SSIM per organelle × modality for each weights set (``RUN/metrics3_<set>.json``);
- the high-frequency power ratio prediction / truth per organelle: the share of an image's
  power (mean removed) above a quarter of the Nyquist frequency, averaged over the held-out
  images, prediction over truth (1 = as much fine texture as the truth; a blurry regression
  gives less). A share, not an absolute power, so the prediction's scale does not enter;
- GAN health from each run's ``log.csv``: discriminator loss and accuracy over the last
  ``LAST`` steps (ln 2 ≈ 0.693 and 50 % mean the discriminator tells nothing apart; → 0 means
  it wins outright).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import tifffile

from lightmycells.vocab import MODALITIES, ORGANELLES

SETS = ("unified", "unified_nogan", "unified_nogan_s1", "unified_gan05", "separate", "dynamic")
RUNS = ("s003_unified", "s003_unified_gan05", "s003_dynamic", "s003_separate_BF",
        "s003_separate_PC", "s003_separate_DIC")
#: Frequencies above this fraction of Nyquist count as high.
HIGH = 0.25
LAST = 100


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "–"


def scores(run: Path) -> None:
    """PCC and SSIM per organelle × modality, one row per weights set and metric."""
    head = [f"{o} {m}" for o in ORGANELLES for m in MODALITIES]
    print("| set | metric | " + " | ".join(head) + " | mean |")
    print("| --- | --- |" + " --- |" * (len(head) + 1))
    for name in SETS:
        path = run / f"metrics3_{name}.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())["results"]
        for metric in ("PCC", "SSIM"):
            cells, every = [], []
            for organelle in ORGANELLES:
                for modality in MODALITIES:
                    values = [r[organelle][metric] for r in rows
                              if r["modality"] == modality and r.get(organelle)]
                    every += values
                    cells.append(_mean(values))
            print(f"| {name} | {metric} | " + " | ".join(cells) + f" | {_mean(every)} |")


def high_share(image: np.ndarray) -> float:
    """Share of the image's power (mean removed) above ``HIGH`` × Nyquist (radial)."""
    x = image.astype(np.float64)
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    return float(power[np.hypot(fy, fx) > HIGH * 0.5].sum() / max(power.sum(), 1e-30))


def hf_ratios(run: Path) -> None:
    """High-frequency power ratio prediction / truth per organelle and weights set."""
    truth_root = run / "data" / "heldout_best"
    print("| set | " + " | ".join(str(o) for o in ORGANELLES) + " |")
    print("| --- |" + " --- |" * len(ORGANELLES))
    for name in SETS:
        pred_root = run / f"pred3_{name}" / "images"
        if not pred_root.exists():
            continue
        cells = []
        for organelle in ORGANELLES:
            pred_share, truth_share = [], []
            for pred in sorted((pred_root / organelle.output_folder).rglob("*.tiff")):
                image_id = pred.name.split("_")[1]
                truth = pred.parent.relative_to(pred_root / organelle.output_folder)
                truth = truth_root / truth / f"image_{image_id}_{organelle.title}.ome.tiff"
                if truth.exists():
                    pred_share.append(high_share(tifffile.imread(pred)))
                    truth_share.append(high_share(tifffile.imread(truth)))
            cells.append(f"{np.mean(pred_share) / np.mean(truth_share):.3f}"
                         if truth_share else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")


def gan_health(run: Path) -> None:
    """Discriminator loss and accuracy over the last ``LAST`` steps of each GAN run."""
    print(f"| run | steps | d_loss mean (min–max), last {LAST} steps | d_acc mean | g_adv mean |")
    print("| --- | --- | --- | --- | --- |")
    for name in RUNS:
        path = run / name / "log.csv"
        if not path.exists():
            continue
        with path.open() as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("d_loss")]
        if not rows:
            continue
        tail = rows[-LAST:]
        d = [float(r["d_loss"]) for r in tail]
        acc = [float(r["d_acc"]) for r in tail]
        g = [float(r["g_adv"]) for r in tail]
        print(f"| {name} | {rows[-1]['step']} | {np.mean(d):.3f} ({min(d):.3f}–{max(d):.3f}) "
              f"| {np.mean(acc):.1%} | {np.mean(g):.3f} |")
    print(f"\n(ln 2 = {math.log(2):.3f})")


def main(argv: list[str]) -> int:
    """Print the three tables for the run folder ``argv[0]``."""
    run = Path(argv[0] if argv else "runs/zoo")
    scores(run)
    print()
    hf_ratios(run)
    print()
    gan_health(run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
