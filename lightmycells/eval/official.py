"""Per-image scores → the official Light My Cells ``metrics.json`` structure.

``results`` (one entry per image), ``agregate`` (mean per organelle and metric; the official
spelling), ``transmitted_light`` (per BF / DIC / PC) and ``z_deviation`` (per
``|image_z - best_z|``), with the key order the official ``evaluation.py`` writes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lightmycells.eval.scoring import ItemResult
from lightmycells.eval.sources import Source
from lightmycells.vocab import METRICS, MODALITIES, ORGANELLES, Metric, Organelle

#: The official file's indentation (it is written with ``json.dump(..., indent=4)``).
JSON_INDENT = 4

# Key order of the official JSON: per image as get_img_metrics inserts them; in the
# aggregates as its ``metrics_methods`` and organelle loop list them.
_RESULT_ORDER = (Metric.PCC, Metric.SSIM, Metric.MAE, Metric.E_DIST, Metric.C_DIST)
_AGGREGATE_ORDER = (Metric.MAE, Metric.PCC, Metric.SSIM, Metric.E_DIST, Metric.C_DIST)
_AGGREGATE_ORGANELLES = (Organelle.NUCLEUS, Organelle.MITOCHONDRIA, Organelle.ACTIN,
                         Organelle.TUBULIN)


def _ordered(values: Mapping[Metric, float], order: Sequence[Metric]) -> dict[str, float]:
    return {k.value: float(values[k]) for k in order if k in values}


def _means(entries: Sequence[Mapping[str, float]], organelle: Organelle) -> dict[str, float]:
    """Mean of each of ``organelle``'s metrics over ``entries``; NaN when there are none."""
    return {m.value: float(np.mean([e[m] for e in entries])) if entries else math.nan
            for m in _AGGREGATE_ORDER if m in METRICS[organelle]}


def official_json(results: Sequence[ItemResult], source: Source = Source.MODEL
                  ) -> dict[str, Any]:
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


def _deviation(entry: Mapping[str, Any]) -> int | None:
    if entry["image_z"] is None or entry["best_z"] is None:
        return None
    return abs(entry["image_z"] - entry["best_z"])


def _z_deviation(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    per = _aggregate(entries, _deviation, keep_empty=False)
    out: dict[str, dict[str, Any]] = {}
    for organelle in _AGGREGATE_ORGANELLES:
        by_dz = {str(dz): per[dz][organelle.value] for dz in sorted(per)
                 if organelle.value in per[dz]}
        if by_dz:
            out[organelle.value] = by_dz
    return out


def with_errors(data: dict[str, Any], errors: Sequence[str]) -> dict[str, Any]:
    """The JSON with an ``errors`` list appended when there were failures."""
    return {**data, "errors": list(errors)} if errors else data
