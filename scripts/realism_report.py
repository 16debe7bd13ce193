"""Realism report: statistics of simulated (clean and realistic presets) vs real images.

Compares, for three kinds of image — DIC input, nucleus fluorescence, tubulin fluorescence —
the real reference images of ``../shared/real`` (a DIC image, a widefield DAPI / TuJ1 pair;
see its PROVENANCE.md) with in-focus fields of view of both presets:

* intensity histogram after the challenge's 2 / 99.8 percentile normalisation (mean, std,
  skewness, and the earth mover's distance to the real histogram);
* radially averaged power spectrum (Hann-windowed 512² tiles; slope of log power against
  log frequency over 0.02–0.25 cycles/px);
* background texture: the 10th percentile of the local standard deviation (7×7 windows) of
  the normalised image — how much the flattest regions still vary;
* objects on nucleus images (Gaussian σ 1.5 px, Otsu threshold, labels ≥ 10 px): count per
  megapixel, median area, area fraction, fraction of objects over twice the median area
  (touching, clustered nuclei).

The real images carry no pixel size, so sizes are compared in pixels; the simulated ones
mix pixel sizes (clean 0.06–0.162 µm, realistic 0.06–0.65 µm).

Writes a PNG figure (byte-reproducible: fixed seeds, no timestamp in the file) and prints
a Markdown table (also written next to the figure, ``.md``)::

    PYTHONPATH=. python scripts/realism_report.py [--real ../shared/real] \\
        [--out docs/realism.png] [--studies 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage, stats  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402

from lightmycells.eval.metrics import percentile_normalize  # noqa: E402
from lightmycells.simulate import Preset, render_fov, study_for  # noqa: E402
from lightmycells.vocab import Modality, Organelle  # noqa: E402

TILE = 512
BINS = np.linspace(-0.25, 1.25, 61)
KINDS = {  # kind → (real file, organelle or None for the DIC input)
    "DIC input": ("isl_dic.png", None),
    "nucleus": ("isl_dapi_widefield.png", Organelle.NUCLEUS),
    "tubulin": ("isl_tuj1_widefield.png", Organelle.TUBULIN),
}
SOURCES = ("real", "clean", "realistic")


@dataclass
class Stats:
    """Statistics of one source (a list of 2D tiles) for one kind of image."""

    tiles: list[np.ndarray]
    hist: np.ndarray = field(init=False)
    psd_f: np.ndarray = field(init=False)
    psd: np.ndarray = field(init=False)
    row: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        norm = [percentile_normalize(t.astype(np.float64)) for t in self.tiles]
        values = np.concatenate([n.ravel() for n in norm])
        self.hist = np.histogram(np.clip(values, BINS[0], BINS[-1]), BINS, density=True)[0]
        self.psd_f, self.psd = radial_psd(norm)
        band = (self.psd_f >= 0.02) & (self.psd_f <= 0.25)
        slope = np.polyfit(np.log(self.psd_f[band]), np.log(self.psd[band]), 1)[0]
        self.row = {
            "mean": float(values.mean()), "std": float(values.std()),
            "skew": float(stats.skew(values)), "psd_slope": float(slope),
            "bg_texture": float(np.median([background_texture(n) for n in norm])),
        }


def radial_psd(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (mean over images), frequency in cycles/px."""
    window = np.outer(np.hanning(TILE), np.hanning(TILE))
    fy = np.fft.fftfreq(TILE)[:, None]
    fx = np.fft.fftfreq(TILE)[None, :]
    ring = np.rint(np.hypot(fy, fx) * TILE).astype(int)
    n = TILE // 2
    total = np.zeros(n)
    for image in images:
        power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
        total += np.bincount(ring.ravel(), power.ravel(), minlength=ring.max() + 1)[:n]
    counts = np.bincount(ring.ravel(), minlength=ring.max() + 1)[:n]
    f = np.arange(n) / TILE
    keep = f > 0
    return f[keep], (total / counts / len(images))[keep]


def background_texture(norm: np.ndarray) -> float:
    """10th percentile of the 7×7 local standard deviation of a normalised image."""
    mean = ndimage.uniform_filter(norm, 7)
    var = ndimage.uniform_filter(norm * norm, 7) - mean * mean
    return float(np.percentile(np.sqrt(np.clip(var, 0, None)), 10))


def objects(tiles: list[np.ndarray]) -> dict[str, float]:
    """Nucleus-like objects: count / Mpx, median area (px), area fraction, clusters."""
    areas, pixels, covered = [], 0, 0
    for tile in tiles:
        smooth = ndimage.gaussian_filter(percentile_normalize(tile.astype(np.float64)), 1.5)
        mask = smooth > threshold_otsu(smooth)
        labels, n = ndimage.label(mask)
        size = np.bincount(labels.ravel())[1:]
        size = size[size >= 10]
        areas += size.tolist()
        pixels += tile.size
        covered += int(size.sum())
    areas = np.array(areas or [0])
    median = float(np.median(areas))
    return {"objects_per_mpx": len(areas) / pixels * 1e6, "median_area_px": median,
            "area_fraction": covered / pixels,
            "clustered": float((areas > 2 * median).mean()) if median else 0.0}


def real_tiles(path: Path) -> list[np.ndarray]:
    """Non-overlapping ``TILE``² tiles of a real image (grey levels as stored)."""
    image = iio.imread(path)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    h, w = image.shape
    return [image[y:y + TILE, x:x + TILE] for y in range(0, h - TILE + 1, TILE)
            for x in range(0, w - TILE + 1, TILE)]


def simulated_tiles(preset: Preset, studies: int, seed: int) -> dict[str, list[np.ndarray]]:
    """In-focus DIC planes and nucleus / tubulin ground truth of ``studies`` DIC studies."""
    out: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    for n in range(1, studies + 1):
        study = study_for(seed, n, Modality.DIC, size=(TILE, TILE), planes=1, preset=preset)
        fov = render_fov(np.random.default_rng([seed, n, 0]), study,
                         (Organelle.NUCLEUS, Organelle.TUBULIN), z_um=[0.0])
        out["DIC input"].append(fov.planes[0])
        out["nucleus"].append(fov.targets[Organelle.NUCLEUS])
        out["tubulin"].append(fov.targets[Organelle.TUBULIN])
    return out


def emd(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """Earth mover's distance between two histograms on ``BINS`` (normalised units)."""
    centres = 0.5 * (BINS[1:] + BINS[:-1])
    return float(stats.wasserstein_distance(centres, centres, hist_a + 1e-12, hist_b + 1e-12))


def table(results: dict[str, dict[str, Stats]], objs: dict[str, dict[str, float]]) -> str:
    """The Markdown table of every statistic, real first."""
    lines = ["| image | source | tiles | mean | std | skew | EMD to real | PSD slope | "
             "bg texture | objects / Mpx | median area px | area fraction | clustered |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, by_source in results.items():
        for source, st in by_source.items():
            r = st.row
            obj = objs.get(f"{kind}/{source}")
            extra = (f"{obj['objects_per_mpx']:.0f} | {obj['median_area_px']:.0f} | "
                     f"{obj['area_fraction']:.2f} | {obj['clustered']:.2f}" if obj
                     else "— | — | — | —")
            distance = emd(st.hist, by_source["real"].hist)
            lines.append(f"| {kind} | {source} | {len(st.tiles)} | {r['mean']:.2f} | "
                         f"{r['std']:.2f} | {r['skew']:.2f} | {distance:.3f} | "
                         f"{r['psd_slope']:.2f} | {r['bg_texture']:.3f} | {extra} |")
    return "\n".join(lines)


def figure(results: dict[str, dict[str, Stats]], out: Path) -> None:
    """Rows: kinds of image; columns: a crop per source, histogram, spectrum."""
    fig, axes = plt.subplots(len(KINDS), 5, figsize=(17, 3.6 * len(KINDS)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.3, 1.3]})
    colours = {"real": "black", "clean": "tab:blue", "realistic": "tab:orange"}
    centres = 0.5 * (BINS[1:] + BINS[:-1])
    for row, (kind, by_source) in zip(axes, results.items(), strict=True):
        for ax, source in zip(row[:3], SOURCES, strict=True):
            tile = percentile_normalize(by_source[source].tiles[0].astype(np.float64))
            ax.imshow(np.clip(tile[:256, :256], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{kind}: {source}", fontsize=10)
            ax.axis("off")
        for source, st in by_source.items():
            row[3].semilogy(centres, st.hist + 1e-4, color=colours[source], label=source)
            row[4].loglog(st.psd_f, st.psd / st.psd[0], color=colours[source], label=source)
        row[3].set(xlabel="normalised intensity (2 / 99.8 %)", ylabel="density",
                   title="intensity histogram")
        row[4].set(xlabel="cycles / pixel", ylabel="power (relative)",
                   title="radial power spectrum")
        row[3].legend(fontsize=8)
        row[4].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Compute the statistics, write the figure and the table; return the exit code."""
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=repo / ".." / "shared" / "real",
                        help="folder of the real reference images (default ../shared/real)")
    parser.add_argument("--out", type=Path, default=repo / "docs" / "realism.png")
    parser.add_argument("--studies", type=int, default=24,
                        help="simulated studies (one 512² field of view each) per preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    missing = [name for name, _ in KINDS.values() if not (args.real / name).is_file()]
    if missing:
        print(f"realism_report: {args.real} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    sim = {p.value: simulated_tiles(p, args.studies, args.seed) for p in Preset}
    results: dict[str, dict[str, Stats]] = {}
    objs: dict[str, dict[str, float]] = {}
    for kind, (name, organelle) in KINDS.items():
        tiles = {"real": real_tiles(args.real / name), **{p: sim[p][kind] for p in sim}}
        results[kind] = {source: Stats(tiles[source]) for source in SOURCES}
        if organelle is Organelle.NUCLEUS:
            objs.update({f"{kind}/{s}": objects(tiles[s]) for s in SOURCES})
    figure(results, args.out)
    text = table(results, objs)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
