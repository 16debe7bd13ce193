"""Folders of predictions and ground truth → the official Light My Cells metrics JSON.

:func:`evaluate` pairs each ground-truth image with its prediction
(:mod:`~lightmycells.eval.pairing`), scores it with :func:`lightmycells.eval.metrics.score`
in parallel (:mod:`~lightmycells.eval.scoring`) and returns the structure the challenge's
evaluation writes (:mod:`~lightmycells.eval.official`). A baseline made from the input
(:mod:`~lightmycells.eval.sources`) can stand in for the predictions, and *floors* — baselines
scored in the same run — go beside them in a report. The command line is
:mod:`lightmycells.eval.cli` (``python -m lightmycells.evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightmycells.eval.errors import EvaluationError
from lightmycells.eval.official import JSON_INDENT, official_json, with_errors
from lightmycells.eval.pairing import Item, find_items
from lightmycells.eval.scoring import ItemResult, score_items
from lightmycells.eval.sources import Source, parse_baseline
from lightmycells.io import atomic
from lightmycells.vocab import Organelle


@dataclass
class Evaluation:
    """Everything one run produced: the JSON per source, and the per-image results."""

    items: list[Item]
    results: list[ItemResult]
    metrics: dict[Source, dict[str, Any]]  # source → official JSON
    primary: Source

    @property
    def errors(self) -> list[str]:
        """One line per failure: ``<image> [<source>/<organelle>]: <problem>``."""
        return [f"{r.name} [{source}/{organelle}]: {message}"
                for r in self.results for source, organelle, message in r.errors]

    def primary_json(self) -> dict[str, Any]:
        """The primary source's JSON, with an ``errors`` list when something failed."""
        return with_errors(self.metrics[self.primary], self.errors)


def _sources(pred: Path | None, baseline: str | None, floors: Sequence[str]) -> list[Source]:
    """The primary source first, then the floors; EvaluationError for a bad combination."""
    if pred is None and baseline is None:
        raise EvaluationError("nothing to evaluate: give a prediction folder (--pred) or a "
                              "baseline (--baseline input|blur)")
    if pred is not None and baseline is not None:
        raise EvaluationError("give a prediction folder (--pred) or a baseline, not both")
    primary = parse_baseline(baseline) if baseline is not None else Source.MODEL
    return [primary, *dict.fromkeys(s for s in map(parse_baseline, floors) if s != primary)]


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
    organelles: Sequence[Organelle] | None = None,
) -> Evaluation:
    """Find, pair and score; see :func:`evaluate` for the parameters.

    ``floors`` are baselines scored beside the primary source, for the report;
    ``organelles`` limits the scoring to these (None: all four).
    """
    sources = _sources(pred, baseline, floors)
    items = find_items(Path(truth), None if pred is None else Path(pred), best_z=best_z,
                       input_dir=input_dir, only_predicted=only_predicted,
                       organelles=organelles)
    results = score_items(items, sources, jobs=jobs, progress=progress)
    return Evaluation(items, results, {s: official_json(results, s) for s in sources},
                      sources[0])


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
    data = evaluation.primary_json()
    if out is not None:
        atomic.write_json(out, data, indent=JSON_INDENT)  # NaN as the bare token, as official
    return data
