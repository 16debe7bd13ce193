"""Score each paired image with :func:`lightmycells.eval.metrics.score`, in worker processes.

Failures are collected per image, source and organelle (an unreadable or missing file fails
only what needs it) so one bad file never stops the run.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightmycells.eval import metrics
from lightmycells.eval.pairing import Item
from lightmycells.eval.sources import BASELINES, Source, baseline_prediction
from lightmycells.io import ome
from lightmycells.vocab import Metric, Organelle

#: Stands for "every source" or "every organelle" in an error triple.
ALL = "*"


@dataclass
class ItemResult:
    """Scores of one image for every prediction source, and what went wrong."""

    name: str
    modality: str | None
    image_z: int | None
    best_z: int | None
    scores: dict[Source, dict[Organelle, dict[Metric, float]]] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # source, organelle, msg


def read_2d(path: Path) -> np.ndarray:
    """Pixels of a 2D image; ValueError naming the file otherwise."""
    try:
        image, meta = ome.read(path)
    except (ome.ImageError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if meta.axes != "YX":
        raise ValueError(f"{path}: expected a 2D image (got {meta.axes} {image.shape})")
    return image


def modality_of(item: Item) -> str | None:
    """Modality from the input's OME-XML, else its name (as inference routes), no pixels."""
    try:
        meta = ome.read_meta(item.input) if item.input is not None else None
    except (ome.ImageError, OSError):  # costs only the modality grouping: the name may say
        meta = None
    meta = meta or ome.parse_meta(Path(item.name).name, None)
    return meta.modality.value if meta.modality else None


def _baselines(item: Item, wanted: Sequence[Source], result: ItemResult
               ) -> dict[Source, np.ndarray]:
    """The baselines' predictions from the item's input; failures go to ``result``."""
    if not wanted:
        return {}
    try:
        if item.input is None:
            raise ValueError("no input image for the baseline")
        image = read_2d(item.input)
        return {s: baseline_prediction(s, image) for s in wanted}
    except ValueError as exc:
        result.errors += [(s, ALL, str(exc)) for s in wanted]
        return {}


def _read_model(item: Item, organelle: Organelle) -> np.ndarray:
    path = item.preds.get(organelle)
    if path is None:
        raise ValueError(f"missing prediction for {item.name}")
    return read_2d(path)


def score_item(item: Item, sources: Sequence[Source]) -> ItemResult:
    """Score one image for every source (the model's files and/or baselines)."""
    result = ItemResult(item.name, item.modality or modality_of(item), item.image_z,
                        item.best_z, scores={s: {} for s in sources})
    wanted = [s for s in sources if s in BASELINES]
    baselines = _baselines(item, wanted, result)
    sources = [s for s in sources if s not in wanted or s in baselines]
    for organelle, truth_path in item.truth.items():
        try:
            gt = read_2d(truth_path)
        except ValueError as exc:
            result.errors.append((ALL, organelle.value, str(exc)))
            continue
        for source in sources:
            try:
                pred = baselines[source] if source in baselines else _read_model(item, organelle)
                result.scores[source][organelle] = metrics.score(pred, gt, organelle)
            except ValueError as exc:
                result.errors.append((source, organelle.value, str(exc)))
    return result


def score_items(items: Sequence[Item], sources: Sequence[Source], *, jobs: int = 1,
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
