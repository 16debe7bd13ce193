"""Folders of predictions and ground truth → the official Light My Cells metrics JSON.

``python -m lightmycells.evaluate --pred DIR --truth DIR --out metrics.json`` pairs each
ground-truth image with its prediction, scores it with :func:`lightmycells.eval.metrics.score`
(in parallel, with a progress bar) and writes the structure the challenge's evaluation
writes: ``results`` (one entry per image), ``agregate`` (mean per organelle and metric),
``transmitted_light`` (per BF / DIC / PC) and ``z_deviation`` (per ``|image_z - best_z|``).

Ground truth comes in either layout:

* Grand Challenge: ``TRUTH/images/<organelle>-fluorescence-ome-tiff/<name>.tiff``, inputs
  (optional) in ``TRUTH/images/organelles-transmitted-light-ome-tiff/`` or ``--input``;
* the study layout: ``TRUTH/Study_N/image_<ID>_<Organelle>.ome.tiff`` beside the inputs
  ``image_<ID>_<BF|PC|DIC>_z<k>.ome.tiff``; every input plane is one evaluated image.

Predictions follow the Grand-Challenge output layout that ``inference.py --output`` writes:
``PRED/images/<organelle>-fluorescence-ome-tiff/<key>``, where ``key`` is the input's name
(with its study folder when the input was a study folder). ``--baseline input|blur`` uses
the input image (or its Gaussian blur) as the prediction instead, and ``--floors`` scores
those baselines in the same run so a report shows them beside the model.

Modality, ``image_z`` and ``best_z`` come from ``best_z.csv`` (``--best-z``, or
``TRUTH/best_z.csv``), else the modality from the input's metadata and ``image_z`` from the
name (``_z<k>``). Exit codes: 0 all scored; 1 some images failed (each failure on one line,
the rest written); 2 bad usage (nothing written).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import shlex
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from tqdm import tqdm

from lightmycells.eval import metrics, report
from lightmycells.io import atomic, ome
from lightmycells.io.inputs import OUTPUT_SUFFIX, discover, is_input_name
from lightmycells.io.layout import (
    BEST_Z_COLUMNS,
    BEST_Z_FILE,
    INPUT_NAME,
    STUDY_SUFFIXES,
    target_stem,
)
from lightmycells.vocab import INPUT_FOLDER, METRICS, MODALITIES, ORGANELLES, Organelle

#: Where predictions come from: the model's files, or a baseline made from the input.
MODEL, INPUT, BLUR = "model", "input", "blur"
BASELINES = (INPUT, BLUR)
#: Gaussian sigma (pixels) of the ``blur`` baseline: about a nucleus' edge width at
#: 0.1 µm/pixel, so it keeps the coarse layout of the input and drops its texture.
BLUR_SIGMA_PX = 4.0

# Key order of the official JSON: per image as get_img_metrics inserts them; in the
# aggregates as its ``metrics_methods`` and organelle loop list them.
_RESULT_ORDER = ("PCC", "SSIM", "MAE", "E_dist", "C_dist")
_AGGREGATE_ORDER = ("MAE", "PCC", "SSIM", "E_dist", "C_dist")
_AGGREGATE_ORGANELLES = (Organelle.NUCLEUS, Organelle.MITOCHONDRIA, Organelle.ACTIN,
                         Organelle.TUBULIN)


class EvaluationError(ValueError):
    """Bad usage or configuration: nothing can be evaluated; the message says why."""


@dataclass(frozen=True)
class Item:
    """One evaluated image (one transmitted-light input) and its files.

    Attributes
    ----------
    name:
        ``image_name`` in the JSON: the prediction's key, e.g. ``image_1_BF_z0.tiff``
        or ``Study_1/image_1_BF_z0.tiff``.
    truth:
        Ground truth per organelle, only where it exists.
    preds:
        Prediction file per organelle with ground truth; None where it is missing.
    input:
        The transmitted-light image, when known.
    modality, image_z, best_z:
        From ``best_z.csv`` or the name; None when unknown.
    """

    name: str
    truth: Mapping[Organelle, Path]
    preds: Mapping[Organelle, Path | None]
    input: Path | None = None
    modality: str | None = None
    image_z: int | None = None
    best_z: int | None = None


@dataclass
class ItemResult:
    """Scores of one image for every prediction source, and what went wrong."""

    name: str
    modality: str | None
    image_z: int | None
    best_z: int | None
    scores: dict[str, dict[Organelle, dict[str, float]]] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # source, organelle, msg


# --- finding the files -------------------------------------------------------------------

def read_best_z(path: Path) -> dict[str, tuple[str, int, int]]:
    """``best_z.csv`` → {name without suffix: (modality, image_z, best_z)}."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read ({exc.strerror})") from None
    if rows and not set(BEST_Z_COLUMNS) <= set(rows[0]):
        raise EvaluationError(f"{path}: expected columns {','.join(BEST_Z_COLUMNS)} "
                              f"(got {','.join(rows[0])})")
    table = {}
    for line, row in enumerate(rows, start=2):
        try:
            table[ome.stem(row["name"])] = (row["modality"], int(row["image_z"]),
                                            int(row["best_z"]))
        except (TypeError, ValueError):
            raise EvaluationError(f"{path}, line {line}: image_z and best_z must be "
                                  f"integers (got {row['image_z']!r}, {row['best_z']!r})"
                                  ) from None
    return table


def _key(path: Path, root: Path) -> str:
    """Output key of a file below ``root``: relative folder + stem + ``.tiff``."""
    relative = path.relative_to(root)
    return (relative.parent / (ome.stem(path) + OUTPUT_SUFFIX)).as_posix()


def _index(root: Path) -> dict[str, Path]:
    """Every TIFF below ``root`` by output key."""
    if not root.is_dir():
        return {}
    return {_key(p, root): p for p in sorted(root.rglob("*"))
            if is_input_name(p.relative_to(root)) and p.is_file()}


class _PredictionIndex:
    """Prediction files per organelle, found by exact key or, failing that, unique stem."""

    def __init__(self, root: Path):
        self.by_key = {o: _index(root / "images" / o.output_folder) for o in ORGANELLES}
        self.by_stem: dict[Organelle, dict[str, list[Path]]] = {}
        for organelle, files in self.by_key.items():
            stems: dict[str, list[Path]] = defaultdict(list)
            for path in files.values():
                stems[ome.stem(path)].append(path)
            self.by_stem[organelle] = stems

    def find(self, organelle: Organelle, key: str) -> Path | None:
        if key in self.by_key[organelle]:
            return self.by_key[organelle][key]
        found = self.by_stem[organelle].get(ome.stem(key), [])
        if len(found) > 1:
            listed = ", ".join(str(p) for p in found)
            raise EvaluationError(f"prediction for {key} is ambiguous: {listed}")
        return found[0] if found else None

    def __bool__(self) -> bool:
        return any(self.by_key.values())


def _truth_layout(truth: Path) -> str:
    gc = any((truth / "images" / o.output_folder).is_dir() for o in ORGANELLES)
    return "grand-challenge" if gc else "study"


# (output key, ground truth per organelle, transmitted-light input)
_Pair = tuple[str, dict[Organelle, Path], Path | None]


def _gc_pairs(truth: Path, input_dir: Path | None) -> list[_Pair]:
    """(key, truth per organelle, input) for the Grand-Challenge ground-truth layout."""
    per_organelle = {o: _index(truth / "images" / o.output_folder) for o in ORGANELLES}
    if input_dir is None:  # only the truth's own input folder: never its ground truth
        inputs = _index(truth / "images" / INPUT_FOLDER)
    else:
        gc_inputs = input_dir / "images" / INPUT_FOLDER
        inputs = _index(gc_inputs if gc_inputs.is_dir() else input_dir)
    input_by_stem = {ome.stem(k): p for k, p in inputs.items()}
    keys = sorted(set().union(*per_organelle.values()))
    return [(key, {o: files[key] for o, files in per_organelle.items() if key in files},
             inputs.get(key, input_by_stem.get(ome.stem(key)))) for key in keys]


def _study_pairs(truth: Path) -> list[_Pair]:
    """(key, truth per organelle, input) for the study layout: one item per input plane."""
    pairs: list[_Pair] = []
    for job in discover(truth).jobs:
        match = INPUT_NAME.match(job.source.name)
        if not match:
            continue
        targets = {}
        for organelle in ORGANELLES:
            for suffix in STUDY_SUFFIXES:
                path = job.source.parent / (target_stem(match["id"], organelle) + suffix)
                if path.is_file():
                    targets[organelle] = path
                    break
        if targets:
            pairs.append((job.key.as_posix(), targets, job.source))
    return pairs


def find_items(
    truth: Path,
    pred: Path | None = None,
    *,
    best_z: Path | None = None,
    input_dir: Path | None = None,
    only_predicted: bool = False,
) -> list[Item]:
    """Pair ground truth, predictions and inputs; one :class:`Item` per evaluated image.

    Raises
    ------
    EvaluationError
        When the truth folder holds no ground truth, the prediction folder no predictions,
        or a prediction is ambiguous.
    """
    truth = Path(truth)
    if not truth.is_dir():
        raise EvaluationError(f"ground-truth folder {truth} does not exist")
    layout = _truth_layout(truth)
    if layout == "study" and input_dir is not None:
        raise EvaluationError(f"{truth} is in the study layout, which holds its inputs; "
                              "--input is for Grand-Challenge ground truth")
    pairs = _gc_pairs(truth, input_dir) if layout == "grand-challenge" else _study_pairs(truth)
    if not pairs:
        raise EvaluationError(f"no ground truth found in {truth} (expected images/<organelle>-"
                              "fluorescence-ome-tiff/ or Study_N/image_<ID>_<Organelle>.ome.tiff)")
    csv_path = best_z if best_z is not None else truth / BEST_Z_FILE
    table = read_best_z(csv_path) if best_z is not None or csv_path.is_file() else {}
    index = _PredictionIndex(Path(pred)) if pred is not None else None
    if index is not None and not index:
        raise EvaluationError(f"no predictions found in {pred} (expected images/<organelle>-"
                              "fluorescence-ome-tiff/<name>.tiff)")
    items = []
    for key, targets, input_path in pairs:
        preds = {o: index.find(o, key) if index is not None else None for o in targets}
        if only_predicted and not any(preds.values()):
            continue
        row = table.get(ome.stem(key))
        items.append(Item(
            name=key, truth=targets, preds=preds, input=input_path,
            modality=row[0] if row else None,  # else from the input when scoring
            image_z=row[1] if row else ome.parse_meta(Path(key).name, None).z,
            best_z=row[2] if row else None,
        ))
    if not items:
        raise EvaluationError(f"no image of {truth} has a prediction in {pred}")
    return items


# --- scoring -----------------------------------------------------------------------------

def read_2d(path: Path) -> np.ndarray:
    """Pixels of a 2D image; ValueError naming the file otherwise."""
    try:
        image, meta = ome.read(path)
    except (ome.ImageError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if meta.axes != "YX":
        raise ValueError(f"{path}: expected a 2D image (got {meta.axes} {image.shape})")
    return image


def _modality(item: Item) -> str | None:
    """Modality from the input's OME-XML, else its name (as inference routes), no pixels."""
    xml = None
    if item.input is not None:
        try:
            with tifffile.TiffFile(item.input) as tif:
                xml = tif.ome_metadata
        except Exception:  # an unreadable input costs only the modality grouping here
            xml = None
    try:
        meta = ome.parse_meta(item.input.name if item.input else Path(item.name).name, xml)
    except ome.ImageError:  # unreadable OME-XML: the name may still say
        meta = ome.parse_meta(Path(item.name).name, None)
    return meta.modality.value if meta.modality else None


def baseline_prediction(kind: str, image: np.ndarray) -> np.ndarray:
    """The ``input`` or ``blur`` baseline's prediction for any organelle."""
    image = image.astype(np.float32)
    if kind == INPUT:
        return image
    if kind == BLUR:
        from scipy.ndimage import gaussian_filter  # 0.4 s of imports only when needed

        return gaussian_filter(image, BLUR_SIGMA_PX)
    raise ValueError(f"unknown baseline '{kind}' (expected one of {', '.join(BASELINES)})")


def score_item(item: Item, sources: Sequence[str]) -> ItemResult:
    """Score one image for every source (``model`` and/or baselines)."""
    modality = item.modality or _modality(item)
    result = ItemResult(item.name, modality, item.image_z, item.best_z,
                        scores={s: {} for s in sources})
    wanted = [s for s in sources if s in BASELINES]
    baselines = {}
    if wanted:
        try:
            if item.input is None:
                raise ValueError("no input image for the baseline")
            image = read_2d(item.input)
            baselines = {s: baseline_prediction(s, image) for s in wanted}
        except ValueError as exc:
            result.errors += [(s, "*", str(exc)) for s in wanted]
    sources = [s for s in sources if s not in wanted or s in baselines]
    for organelle, truth_path in item.truth.items():
        try:
            gt = read_2d(truth_path)
        except ValueError as exc:
            result.errors.append(("*", organelle.value, str(exc)))
            continue
        for source in sources:
            try:
                pred = baselines[source] if source in baselines else _read_model(item, organelle)
                result.scores[source][organelle] = metrics.score(pred, gt, organelle)
            except ValueError as exc:
                result.errors.append((source, organelle.value, str(exc)))
    return result


def _read_model(item: Item, organelle: Organelle) -> np.ndarray:
    path = item.preds.get(organelle)
    if path is None:
        raise ValueError(f"missing prediction for {item.name}")
    return read_2d(path)


def score_items(items: Sequence[Item], sources: Sequence[str], *, jobs: int = 1,
                progress: bool = False) -> list[ItemResult]:
    """Score every item, in ``jobs`` processes, in the order of ``items``."""
    bar = tqdm(total=len(items), desc="evaluate", unit="image", disable=not progress)
    results: list[ItemResult] = []
    if jobs <= 1:
        for item in items:
            results.append(score_item(item, sources))
            bar.update()
    else:
        # forkserver: workers fork from a clean server, never from a caller that may hold
        # threads (a training loop with torch/OpenMP), which plain fork can deadlock
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            for result in pool.map(score_item, items, [sources] * len(items), chunksize=1):
                results.append(result)
                bar.update()
    bar.close()
    return results


# --- the official JSON -------------------------------------------------------------------

def _ordered(values: Mapping[str, float], order: Sequence[str]) -> dict[str, float]:
    return {k: float(values[k]) for k in order if k in values}


def _means(entries: Sequence[Mapping[str, float]], organelle: Organelle) -> dict[str, float]:
    """Mean of each of ``organelle``'s metrics over ``entries``; NaN when there are none."""
    return {m: float(np.mean([e[m] for e in entries])) if entries else math.nan
            for m in _AGGREGATE_ORDER if m in METRICS[organelle]}


def official_json(results: Sequence[ItemResult], source: str = MODEL) -> dict[str, Any]:
    """The official ``metrics.json`` structure for one prediction source.

    ``z_deviation`` keys are strings (as JSON stores the official integer keys) in
    increasing order; images with unknown modality or focus are left out of those groups.
    Each result also carries ``modality``, ``image_z`` and ``best_z`` (not in the official
    file, which looks them up in its CSV).
    """
    entries = []
    for r in results:
        scores = r.scores.get(source, {})
        entry: dict[str, Any] = {"image_name": r.name, "modality": r.modality,
                                 "image_z": r.image_z, "best_z": r.best_z}
        for organelle in ORGANELLES:
            entry[organelle.value] = _ordered(scores.get(organelle, {}), _RESULT_ORDER)
        entries.append(entry)
    return {
        "results": entries,
        "agregate": _aggregate(entries, lambda e: "all", keep_empty=False).get("all", {}),
        "transmitted_light": _transmitted_light(entries),
        "z_deviation": _z_deviation(entries),
    }


def _aggregate(entries: Sequence[Mapping[str, Any]], group: Callable[[Mapping], Any], *,
               keep_empty: bool) -> dict[Any, dict[str, dict[str, float]]]:
    """{group: {organelle: {metric: mean}}} over entries with that organelle's scores."""
    groups: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in entries:
        key = group(entry)
        if key is not None:
            groups[key].append(entry)
    out: dict[Any, dict[str, dict[str, float]]] = {}
    for key, members in groups.items():
        out[key] = {}
        for organelle in _AGGREGATE_ORGANELLES:
            scored = [e[organelle.value] for e in members if e[organelle.value]]
            if scored or keep_empty:
                out[key][organelle.value] = _means(scored, organelle)
    return out


def _transmitted_light(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    per = _aggregate(entries, lambda e: e["modality"], keep_empty=True)
    empty = {o.value: _means([], o) for o in _AGGREGATE_ORGANELLES}
    # official order BF, DIC, PC; NaN where a modality has no image
    return {m: per.get(m, empty) for m in sorted(x.value for x in MODALITIES)}


def _z_deviation(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def deviation(e: Mapping[str, Any]) -> int | None:
        if e["image_z"] is None or e["best_z"] is None:
            return None
        return abs(e["image_z"] - e["best_z"])

    per = _aggregate(entries, deviation, keep_empty=False)
    out: dict[str, dict[str, Any]] = {}
    for organelle in _AGGREGATE_ORGANELLES:
        by_dz = {str(dz): per[dz][organelle.value] for dz in sorted(per)
                 if organelle.value in per[dz]}
        if by_dz:
            out[organelle.value] = by_dz
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write JSON through a temporary name (NaN written as ``NaN``, like the official)."""
    return atomic.write_json(path, data, indent=4)


# --- the whole run -----------------------------------------------------------------------

@dataclass
class Evaluation:
    """Everything one run produced: the JSON per source, and the per-image results."""

    items: list[Item]
    results: list[ItemResult]
    metrics: dict[str, dict[str, Any]]  # source → official JSON
    primary: str

    @property
    def errors(self) -> list[str]:
        """One line per failure: ``<image> [<source>/<organelle>]: <problem>``."""
        return [f"{r.name} [{source}/{organelle}]: {message}"
                for r in self.results for source, organelle, message in r.errors]


def run(
    truth: Path,
    pred: Path | None = None,
    *,
    baseline: str | None = None,
    floors: Sequence[str] = (),
    best_z: Path | None = None,
    input_dir: Path | None = None,
    only_predicted: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> Evaluation:
    """Find, pair and score; see :func:`evaluate` for the parameters."""
    if pred is None and baseline is None:
        raise EvaluationError("nothing to evaluate: give a prediction folder (--pred) or a "
                              "baseline (--baseline input|blur)")
    if pred is not None and baseline is not None:
        raise EvaluationError("give a prediction folder (--pred) or a baseline, not both")
    unknown = [b for b in [baseline, *floors] if b is not None and b not in BASELINES]
    if unknown:
        raise EvaluationError(f"unknown baseline '{unknown[0]}' "
                              f"(expected one of {', '.join(BASELINES)})")
    primary = baseline if baseline is not None else MODEL
    sources = [primary, *(f for f in floors if f != primary)]
    items = find_items(Path(truth), None if pred is None else Path(pred), best_z=best_z,
                       input_dir=input_dir, only_predicted=only_predicted)
    results = score_items(items, sources, jobs=jobs, progress=progress)
    return Evaluation(items, results, {s: official_json(results, s) for s in sources}, primary)


def evaluate(
    truth: Path,
    pred: Path | None = None,
    *,
    baseline: str | None = None,
    best_z: Path | None = None,
    input_dir: Path | None = None,
    only_predicted: bool = False,
    jobs: int = 1,
    progress: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a prediction folder (or a baseline) against ground truth.

    Parameters
    ----------
    truth:
        Ground truth in the Grand-Challenge or the study layout.
    pred:
        Predictions in the Grand-Challenge output layout; or None with ``baseline``.
    baseline:
        ``"input"`` or ``"blur"``: score the input image (or its blur) as the prediction.
    best_z:
        ``name,modality,image_z,best_z`` CSV; default ``truth/best_z.csv`` when present.
    input_dir:
        Transmitted-light inputs when the Grand-Challenge ground truth does not hold them.
    only_predicted:
        Evaluate only images with at least one prediction file (a validation subset).
    jobs:
        Worker processes.
    progress:
        Show a progress bar on stderr.
    out:
        Also write the JSON there.

    Returns
    -------
    dict
        The official metrics structure (``results``, ``agregate``, ``transmitted_light``,
        ``z_deviation``); failed images/organelles are left out of it and listed under
        ``errors`` (absent when there are none).

    Raises
    ------
    EvaluationError
        For bad usage: missing folders, no ground truth, no predictions, unknown baseline.
    """
    evaluation = run(truth, pred, baseline=baseline, best_z=best_z, input_dir=input_dir,
                     only_predicted=only_predicted, jobs=jobs, progress=progress)
    data = with_errors(evaluation.metrics[evaluation.primary], evaluation.errors)
    if out is not None:
        write_json(out, data)
    return data


def with_errors(data: dict[str, Any], errors: Sequence[str]) -> dict[str, Any]:
    """The JSON with an ``errors`` list appended when there were failures."""
    return {**data, "errors": list(errors)} if errors else data


def usable_cpus() -> int:
    """CPUs this process may run on (containers and affinity masks included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- command line ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line (separate so tests can parse without running)."""
    parser = argparse.ArgumentParser(
        prog="python -m lightmycells.evaluate",
        description="Score predictions against ground truth with the Light My Cells metrics; "
                    "write the official metrics JSON and, optionally, a report.")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--truth", type=Path, help="ground truth (Grand-Challenge or study layout)")
    what.add_argument("--pred", type=Path, help="predictions (Grand-Challenge output layout)")
    what.add_argument("--baseline", choices=BASELINES,
                      help="score a baseline instead of --pred: the input image, or its blur")
    what.add_argument("--floors", default="",
                      help="baselines to score beside the predictions for the report, "
                           "e.g. input,blur (each also written as OUT.<name>.json)")
    what.add_argument("--best-z", type=Path,
                      help="name,modality,image_z,best_z CSV (default: TRUTH/best_z.csv)")
    what.add_argument("--input", type=Path, dest="input_dir",
                      help="transmitted-light inputs, when the Grand-Challenge truth folder "
                           "does not hold images/" + INPUT_FOLDER)
    what.add_argument("--only-predicted", action="store_true",
                      help="evaluate only images with at least one prediction file")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="metrics JSON (or, with --compare, a .md)")
    output.add_argument("--report", type=Path, help="folder for report.md, plots and gallery")
    output.add_argument("--compare", type=Path, nargs=2, metavar=("A.json", "B.json"),
                        help="print a side-by-side table of two metrics JSONs and stop")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--jobs", type=int, default=None,
                           help="worker processes (default: usable CPUs)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 some images failed, 2 usage)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(args)
    if args.truth is None or args.out is None:
        parser.error("--truth and --out are required (or --compare A.json B.json)")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1 (got {args.jobs})")
    floors = [f.strip() for f in args.floors.split(",") if f.strip()]
    try:
        evaluation = run(args.truth, args.pred, baseline=args.baseline, floors=floors,
                         best_z=args.best_z, input_dir=args.input_dir,
                         only_predicted=args.only_predicted,
                         jobs=args.jobs or usable_cpus(), progress=not args.quiet)
    except EvaluationError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    errors = evaluation.errors
    write_json(args.out, with_errors(evaluation.metrics[evaluation.primary], errors))
    for source, data in evaluation.metrics.items():
        if source != evaluation.primary:
            write_json(args.out.with_suffix(f".{source}.json"), data)
    if args.report is not None:
        command = "python -m lightmycells.evaluate " + shlex.join(argv)
        report.write_report(args.report, evaluation, command=command)
    for line in errors:
        print(f"FAILED {line}", file=sys.stderr)
    scored = sum(len(r.scores[evaluation.primary]) for r in evaluation.results)
    print(f"evaluate: {len(evaluation.items)} images, {scored} image/organelle pairs scored, "
          f"{len(errors)} failed; wrote {args.out}"
          + (f" and {args.report / report.REPORT_NAME}" if args.report else ""),
          file=sys.stderr)
    print(report.summary_table(evaluation.metrics[evaluation.primary]))
    return 1 if errors else 0


def _compare(args: argparse.Namespace) -> int:
    documents = []
    for path in args.compare:
        try:
            documents.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            print(f"evaluate: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    a, b = documents
    table = report.compare_table(a, b, labels=[p.stem for p in args.compare])
    if args.out is not None:
        args.out.write_text(table + "\n")
    print(table)
    return 0

