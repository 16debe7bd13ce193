"""What an evaluation tells a reader: markdown tables, plots and a gallery (matplotlib, Agg).

``write_report(folder, evaluation)`` writes ``report.md`` with tables per organelle,
per organelle × transmitted-light modality and per focus deviation (baselines scored in the
same run, the *floors*, beside the model), ``focus.png`` (metric vs. |image_z − best_z|),
``distributions.png`` (per-image PCC and SSIM), and per organelle ``gallery_<organelle>.png``:
input | prediction | ground truth for the best, median and worst image by PCC.
``compare_table`` is the side-by-side table of ``--compare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightmycells.eval import metrics
from lightmycells.eval.evaluate import Evaluation
from lightmycells.eval.scoring import read_2d
from lightmycells.eval.sources import BASELINES, Source, baseline_prediction
from lightmycells.io import atomic, ome
from lightmycells.vocab import MODALITIES, ORGANELLES, Metric, Organelle

REPORT_NAME = "report.md"
#: Longest edge of a gallery panel, in pixels (keeps the PNGs small).
GALLERY_EDGE = 160
_DPI = 80
#: Metrics shown per table, in reading order; which exist depends on the organelle.
_SHOWN = (Metric.PCC, Metric.SSIM, Metric.MAE, Metric.E_DIST, Metric.C_DIST)
#: Metrics of the per-modality and per-focus tables, plots and gallery (all organelles have
#: them).
_SIMILARITIES = (Metric.PCC, Metric.SSIM)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(data: Mapping[str, Any]) -> str:
    """Mean per organelle and metric (the ``agregate`` block) as a markdown table."""
    rows = [[organelle, *(_fmt(values.get(m)) for m in _SHOWN)]
            for organelle, values in data.get("agregate", {}).items()]
    return _table(["organelle", *_SHOWN], rows)


def compare_table(a: Mapping[str, Any], b: Mapping[str, Any], labels: Sequence[str]) -> str:
    """Side by side: every mean of ``a`` and ``b`` (overall and per modality) and b − a."""
    la, lb = labels
    rows = []
    scopes = [("all", a.get("agregate", {}), b.get("agregate", {}))]
    tl_a, tl_b = a.get("transmitted_light", {}), b.get("transmitted_light", {})
    for modality in sorted(set(tl_a) | set(tl_b)):
        scopes.append((modality, tl_a.get(modality, {}), tl_b.get(modality, {})))
    for scope, block_a, block_b in scopes:
        for organelle in [o.value for o in ORGANELLES]:
            va, vb = block_a.get(organelle, {}), block_b.get(organelle, {})
            for metric in _SHOWN:
                x, y = va.get(metric, math.nan), vb.get(metric, math.nan)
                if math.isnan(x) and math.isnan(y):
                    continue
                diff = y - x
                better = "" if math.isnan(diff) or diff == 0 else (
                    "better" if (diff > 0) == metric.higher_is_better else "worse")
                rows.append([scope, organelle, metric, _fmt(x), _fmt(y),
                             ("—" if math.isnan(diff) else f"{diff:+.3f}"), better])
    return _table(["scope", "organelle", "metric", la, lb, f"{lb} − {la}", ""], rows)


# --- report.md ---------------------------------------------------------------------------

def _counts(evaluation: Evaluation, source: Source) -> dict[str, dict[str, int]]:
    """Number of scored images per organelle and modality (key "all" for every modality)."""
    counts: dict[str, dict[str, int]] = {o.value: {} for o in ORGANELLES}
    for result in evaluation.results:
        for organelle in result.scores.get(source, {}):
            per = counts[organelle.value]
            for key in ("all", result.modality or "?"):
                per[key] = per.get(key, 0) + 1
    return counts


def _organelle_table(evaluation: Evaluation) -> str:
    counts = _counts(evaluation, evaluation.primary)
    rows = []
    for organelle in ORGANELLES:
        for source, data in evaluation.metrics.items():
            values = data["agregate"].get(organelle.value)
            if values is None:
                continue
            label = _label(evaluation, source)
            rows.append([organelle.value if source == evaluation.primary else "", label,
                         str(counts[organelle.value].get("all", 0)),
                         *(_fmt(values.get(m)) for m in _SHOWN)])
    return _table(["organelle", "prediction", "images", *_SHOWN], rows)


def _floors_sentence(evaluation: Evaluation) -> str:
    floors = [s for s in evaluation.metrics if s != evaluation.primary]
    if not floors:
        return ""
    listed = "; ".join(f"`{s}`: {BASELINES[s].description}" for s in floors)
    return (f" Floors are baselines scored on the same images ({listed}); a model should "
            "beat them clearly.")


def _label(evaluation: Evaluation, source: Source) -> str:
    if source == evaluation.primary:
        return f"**{source}**" if len(evaluation.metrics) > 1 else source
    return f"{source} (floor)"


def _modality_tables(evaluation: Evaluation) -> str:
    counts = _counts(evaluation, evaluation.primary)
    modalities = sorted(m.value for m in MODALITIES)
    parts = []
    for metric in _SIMILARITIES:
        rows = []
        for organelle in ORGANELLES:
            if not counts[organelle.value]:
                continue  # no ground truth for it anywhere
            for source, data in evaluation.metrics.items():
                cells = []
                for modality in modalities:
                    value = data["transmitted_light"][modality][organelle.value].get(metric)
                    n = counts[organelle.value].get(modality, 0)
                    cells.append(f"{_fmt(value)} ({n})" if n else "—")
                rows.append([organelle.value if source == evaluation.primary else "",
                             _label(evaluation, source), *cells])
        parts.append(f"**{metric}** (images in brackets)\n\n"
                     + _table(["organelle", "prediction", *modalities], rows))
    return "\n\n".join(parts)


def _focus_table(data: Mapping[str, Any]) -> str:
    per = data["z_deviation"]
    deviations = sorted({int(dz) for values in per.values() for dz in values})
    header = ["abs(z − best z)"]
    columns = []
    for organelle in ORGANELLES:
        if organelle.value in per:
            for metric in _SIMILARITIES:
                header.append(f"{organelle.value} {metric}")
                columns.append((organelle.value, metric))
    rows = [[str(dz), *(_fmt(per[o].get(str(dz), {}).get(m)) for o, m in columns)]
            for dz in deviations]
    return _table(header, rows)


def write_report(folder: Path, evaluation: Evaluation, *, command: str | None = None) -> Path:
    """Write ``report.md``, ``focus.png``, ``distributions.png`` and the gallery.

    ``command``, when given, is quoted in the report so it can be reproduced.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = evaluation.metrics[evaluation.primary]
    n_images = len(evaluation.results)
    focus = _plot_focus(folder, evaluation)
    dist = _plot_distributions(folder, evaluation)
    galleries = _gallery(folder, evaluation)
    parts = [
        "# Evaluation report",
        f"Prediction: **{evaluation.primary}**; {n_images} transmitted-light images. "
        "Both images percentile-normalised (2 / 99.8) as in the official Light My Cells "
        "evaluation; PCC and SSIM: higher is better; MAE, E_dist, C_dist: lower is better."
        + _floors_sentence(evaluation)
        + (f"\n\nMade with `{command}`." if command else ""),
        "## Mean per organelle", _organelle_table(evaluation),
        "## Per transmitted-light modality", _modality_tables(evaluation),
        f"## Per focus deviation ({evaluation.primary})",
        _focus_table(data) if data["z_deviation"] else "No `best_z` known for these images.",
    ]
    if focus:
        parts.append(f"![metrics vs focus deviation]({focus.name})")
    if dist:
        parts += ["## Per-image distributions", f"![per-image PCC and SSIM]({dist.name})"]
    if galleries:
        parts.append("## Gallery: best, median and worst image by PCC")
        parts += [f"![{o} gallery]({p.name})" for o, p in galleries.items()]
    if evaluation.errors:
        parts += ["## Failures", "\n".join(f"- {e}" for e in evaluation.errors)]
    return atomic.write_text(folder / REPORT_NAME, "\n\n".join(parts) + "\n")


# --- plots -------------------------------------------------------------------------------

def _per_image(evaluation: Evaluation, source: Source, organelle: Organelle, metric: Metric
               ) -> list[tuple[int, float]]:
    """(index into results, value) of every scored image."""
    return [(i, r.scores[source][organelle][metric]) for i, r in enumerate(evaluation.results)
            if organelle in r.scores.get(source, {})]


def _plot_focus(folder: Path, evaluation: Evaluation) -> Path | None:
    import matplotlib.pyplot as plt

    source = evaluation.primary
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=_DPI)
    drawn = False
    for ax, metric in zip(axes, _SIMILARITIES, strict=True):
        for k, organelle in enumerate(ORGANELLES):
            points = [(abs(r.image_z - r.best_z), value)
                      for i, value in _per_image(evaluation, source, organelle, metric)
                      if (r := evaluation.results[i]).image_z is not None
                      and r.best_z is not None]
            if not points:
                continue
            drawn = True
            dz = np.array([p[0] for p in points], float)
            values = np.array([p[1] for p in points])
            offset = (k - 1.5) * 0.08  # side by side, not on top of each other
            ax.plot(dz + offset, values, ".", alpha=0.35, color=f"C{k}")
            levels = np.unique(dz)
            ax.plot(levels + offset, [values[dz == d].mean() for d in levels], "-o",
                    color=f"C{k}", label=organelle.value, markersize=4)
        ax.set_xlabel("|image z − best z| (planes)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{source}: per image (dots) and mean (lines) vs. focus deviation", fontsize=9)
    return _save(fig, folder / "focus.png")


def _plot_distributions(folder: Path, evaluation: Evaluation) -> Path | None:
    import matplotlib.pyplot as plt

    present = [o for o in ORGANELLES
               if _per_image(evaluation, evaluation.primary, o, Metric.PCC)]
    if not present:
        return None
    sources = list(evaluation.metrics)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=_DPI)
    width = 0.8 / len(sources)
    for ax, metric in zip(axes, _SIMILARITIES, strict=True):
        for s, source in enumerate(sources):
            data = [[v for _, v in _per_image(evaluation, source, o, metric)] for o in present]
            positions = np.arange(len(present)) + (s - (len(sources) - 1) / 2) * width
            keep = [i for i, d in enumerate(data) if d]
            if not keep:
                continue
            parts = ax.boxplot([data[i] for i in keep], positions=positions[keep],
                               widths=width * 0.9, patch_artist=True, showfliers=False)
            for box in parts["boxes"]:
                box.set_facecolor(f"C{s}")
                box.set_alpha(0.6 if source == evaluation.primary else 0.3)
            ax.plot([], [], "s", color=f"C{s}", label=source)
        ax.set_xticks(range(len(present)), [o.value for o in present], fontsize=8)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("per-image distribution (box: quartiles, whiskers: 1.5 IQR)", fontsize=9)
    return _save(fig, folder / "distributions.png")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


# --- gallery -----------------------------------------------------------------------------

def _thumbnail(image: np.ndarray) -> np.ndarray:
    """Percentile-normalised, clipped to [0, 1], block-averaged to ≤ GALLERY_EDGE pixels."""
    image = np.clip(np.asarray(metrics.percentile_normalize(image), np.float32), 0.0, 1.0)
    step = max(1, math.ceil(max(image.shape) / GALLERY_EDGE))
    h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    return image[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def _picks(evaluation: Evaluation, organelle: Organelle) -> list[tuple[str, int, float]]:
    """(label, result index, PCC) of the best, median and worst image."""
    scored = sorted(_per_image(evaluation, evaluation.primary, organelle, Metric.PCC),
                    key=lambda p: p[1], reverse=True)
    if not scored:
        return []
    chosen = {"best": scored[0], "median": scored[len(scored) // 2], "worst": scored[-1]}
    seen: set[int] = set()
    picks = []
    for label, (index, value) in chosen.items():
        if index not in seen:
            seen.add(index)
            picks.append((label, index, value))
    return picks


def _gallery(folder: Path, evaluation: Evaluation) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    out = {}
    for organelle in ORGANELLES:
        picks = _picks(evaluation, organelle)
        if not picks:
            continue
        fig, axes = plt.subplots(len(picks), 3, figsize=(6, 0.4 + 1.9 * len(picks)),
                                 dpi=_DPI, squeeze=False)
        for row, (label, index, pcc) in zip(axes, picks, strict=True):
            item, result = evaluation.items[index], evaluation.results[index]
            image = read_2d(item.input) if item.input is not None else None
            if evaluation.primary in BASELINES and image is not None:
                pred = baseline_prediction(evaluation.primary, image)
            else:
                pred = read_2d(item.preds[organelle])  # type: ignore[arg-type]  # was scored
            ssim = result.scores[evaluation.primary][organelle][Metric.SSIM]
            panels = [(f"{ome.stem(item.name)} ({result.modality or '?'})", image),
                      (f"{label}: PCC {pcc:.2f}, SSIM {ssim:.2f}", pred),
                      ("ground truth", read_2d(item.truth[organelle]))]
            for ax, (title, panel) in zip(row, panels, strict=True):
                ax.set_axis_off()
                ax.set_title(title, fontsize=7)
                if panel is not None:
                    ax.imshow(_thumbnail(panel), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
        fig.suptitle(f"{organelle.value} ({evaluation.primary}): input | prediction | "
                     "ground truth", fontsize=9)
        out[organelle.value] = _save(fig, folder / f"gallery_{organelle.value}.png")
    return out


