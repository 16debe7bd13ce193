"""From a CSV of one's own paired images to a weights folder the container serves.

``python -m lightmycells.finetune --pairs pairs.csv --organelle nucleus --out my_weights``

1. The base weights folder (default ``weights/``) routes the organelle for the pairs'
   modality and pixel size; that model's training config (``<file>.train.yaml``, written
   beside every exported model) gives its architecture, normalisation and pixel size.
2. The fine-tuning recipe (``configs/recipes/finetune.yaml``: dotted keys over that config) and the
   pairs make the run: ``init_from`` the base ONNX file, batch norms frozen, the bottom rows
   of every image held out for early stopping (:mod:`lightmycells.train.pairs`,
   ``data.split: region``).
3. The best checkpoint is exported (parity-checked) as ``<organelle>-finetuned.onnx`` into
   ``--out``, beside copies of the base models that still serve everything else; the
   manifest routes the organelle, for the pairs' modalities, to the new model. Then
   ``python inference.py --weights my_weights ...`` serves it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightmycells.engine import manifest
from lightmycells.train.config import (
    ConfigError,
    TrainConfig,
    parse_config,
    read_mapping,
    set_dotted,
)
from lightmycells.train.data import DataError
from lightmycells.train.export import config_beside, export_checkpoint, write_manifest
from lightmycells.train.init import InitError
from lightmycells.train.loop import BEST, train
from lightmycells.train.modality import conditioned
from lightmycells.train.pairs import read_pairs
from lightmycells.vocab import Organelle

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = ROOT / "configs" / "recipes" / "finetune.yaml"
DEFAULT_BASE = ROOT / "weights"
SUFFIX = "finetuned"


class FinetuneError(ValueError):
    """A fine-tuning request that cannot run; the message says why, in one line."""


def base_entry(weights: manifest.Manifest, organelle: Organelle, modality: str,
               pixel_size: Sequence[float] | None) -> manifest.ModelEntry:
    """The base model that serves ``organelle`` for the pairs; a single-organelle one."""
    try:
        entry = weights.route(organelle, modality, pixel_size)
    except manifest.RouteError as exc:
        raise FinetuneError(f"base weights: {exc}") from None
    if tuple(entry.organelles) != (organelle,):
        raise FinetuneError(f"base model {entry.name} serves {', '.join(entry.organelles)}: "
                            "fine-tuning needs a single-organelle model")
    return entry


def run_config(base_dir: Path, entry: manifest.ModelEntry, recipe: Path, pairs: Path,
               modalities: Sequence[str], run_dir: Path, overrides: Sequence[str]) -> TrainConfig:
    """The base model's training config, the recipe over it, then the pairs and ``overrides``."""
    sidecar = config_beside(base_dir / entry.file)
    raw = _read_yaml(sidecar, f"the base model needs its training config beside it "
                              f"({sidecar.name})")
    steps = _read_yaml(recipe, "the fine-tuning recipe")
    for key, value in steps.items():
        set_dotted(raw, key, value)
    for key, value in {"out": str(run_dir), "data.roots": [], "data.pairs": str(pairs),
                       "data.modalities": list(modalities),
                       "data.organelles": [str(entry.organelles[0])],
                       "init_from": str(base_dir / entry.file), "init_prefix": None}.items():
        set_dotted(raw, key, value)
    try:
        cfg = parse_config(raw, source=str(sidecar), overrides=list(overrides))
    except ConfigError as exc:
        raise FinetuneError(str(exc)) from None
    if conditioned(cfg):  # its ONNX has the modality code folded into constants
        raise FinetuneError(
            f"{base_dir / entry.file}: one modality of a modality-conditioned model (seed 003 "
            "dynamic): its ONNX file cannot rebuild the conditioned PyTorch model; fine-tune "
            "its training checkpoint instead (python -m lightmycells.train --set "
            "init_from=CHECKPOINT)")
    return cfg


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        return read_mapping(path)
    except ConfigError as exc:
        raise FinetuneError(f"{exc} — {what}") from None


def kept_entries(weights: manifest.Manifest, organelle: Organelle,
                 modalities: Sequence[str]) -> list[manifest.ModelEntry]:
    """Base entries that stay: all but those that would serve the organelle's new routes.

    A ``"*"`` entry without a range stays beside a modality-specific new model (it still
    serves the other modalities); one with a range is dropped, since routing prefers any
    ranged entry to the new, range-less one.
    """
    new = set(modalities)
    kept = []
    for entry in weights.models:
        if organelle in entry.organelles:
            served = set(entry.modalities)
            if served & new or ("*" in served and entry.pixel_size_um_range is not None):
                if len(entry.organelles) > 1:
                    raise FinetuneError(f"base model {entry.name} also serves other organelles; "
                                        "it cannot be replaced for one of them")
                continue
        kept.append(entry)
    return kept


def finetune(pairs: Path, organelle: Organelle, out: Path, *, base: Path = DEFAULT_BASE,
             recipe: Path = DEFAULT_RECIPE, run_dir: Path | None = None,
             overrides: Sequence[str] = (), log: Callable[[str], None] = print) -> Path:
    """Fine-tune the base model of ``organelle`` on ``pairs``; write a weights folder."""
    out = Path(out)
    if (out / manifest.MANIFEST_NAME).exists():
        raise FinetuneError(f"{out} already holds a manifest.json: choose a new folder")
    weights = manifest.load(base)
    index = read_pairs(pairs, log=log)
    usable = [f for f in index.fovs if organelle in f.targets]
    if not usable:
        raise FinetuneError(f"{pairs}: no usable pair has a {organelle} target")
    present = sorted({str(f.modality) for f in usable})
    entry = base_entry(weights, organelle, present[0], usable[0].pixel_size_um)
    log(f"[finetune] {organelle}: {len(usable)} image(s) ({', '.join(present)}) from {pairs}; "
        f"base model {entry.name} ({entry.file})")
    run_dir = run_dir or out.parent / f".{out.name}-run" / str(organelle)
    cfg = run_config(Path(base), entry, Path(recipe), Path(pairs), present, run_dir, overrides)
    unscaled = [f for f in usable if f.pixel_size_um is None]
    if cfg.data.resample_um is not None and unscaled:  # checked now, not at the first sample
        raise FinetuneError(
            f"{pairs}: the base model works at {cfg.data.resample_um:g} µm pixels, and "
            f"{len(unscaled)} pair(s) state no pixel size (first: {unscaled[0].planes[0]}); "
            "give it in the pixel_size_um column")
    result = train(cfg, pairs=index)
    log(f"[finetune] trained {result.step} steps (stopped by {result.stopped}), best "
        f"validation score {result.best_score}")
    out.mkdir(parents=True, exist_ok=True)
    report = export_checkpoint(result.out / BEST, out, name=f"{organelle}-{SUFFIX}",
                               stem=f"{organelle}-{SUFFIX}", write_manifest=False)
    modalities = report.entry["modalities"]  # the pairs' modalities ("*" for all three)
    write_manifest(out, [
        *(_copied(e, Path(base), out) for e in kept_entries(weights, organelle, modalities)),
        report.entry])
    manifest.load(out)  # the folder the container will read: checked now, not at first use
    log(f"[finetune] wrote {out}: {organelle} ({', '.join(modalities)}) -> {report.onnx_path.name}"
        f" (parity {report.parity_random:.2g}); serve it with "
        f"python inference.py --weights {out} --input IN --output OUT")
    return out


def _copied(entry: manifest.ModelEntry, base: Path, out: Path) -> dict[str, Any]:
    files = [base / entry.file, *([base / entry.fp16.file] if entry.fp16 else [])]
    files += [p for p in [config_beside(base / entry.file)] if p.exists()]
    for path in files:
        shutil.copy2(path, out / path.name)
    return entry.model_dump(mode="json")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lightmycells.finetune --pairs CSV --organelle O --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m lightmycells.finetune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="CSV of pairs (see docs)")
    parser.add_argument("--organelle", type=Organelle, choices=list(Organelle), required=True)
    parser.add_argument("--out", type=Path, required=True, help="new weights folder")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE,
                        help="weights folder to start from (default: the shipped weights)")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--run", type=Path, help="training run folder (checkpoints, log.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override after the recipe, e.g. --set steps=100")
    args = parser.parse_args(argv)
    try:
        finetune(args.pairs, args.organelle, args.out, base=args.base, recipe=args.recipe,
                 run_dir=args.run, overrides=args.set)
    except (FinetuneError, manifest.ManifestError, DataError, InitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
