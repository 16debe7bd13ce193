"""Pair ground truth, predictions and inputs: one :class:`Item` per evaluated image.

Ground truth comes in either layout (:class:`TruthLayout`):

* Grand Challenge: ``TRUTH/images/<organelle>-fluorescence-ome-tiff/<name>.tiff``, inputs
  (optional) in ``TRUTH/images/organelles-transmitted-light-ome-tiff/`` or ``--input``;
* the study layout: ``TRUTH/Study_N/image_<ID>_<Organelle>.ome.tiff`` beside the inputs
  ``image_<ID>_<BF|PC|DIC>_z<k>.ome.tiff``; every input plane is one evaluated image.

Predictions follow the Grand-Challenge output layout that ``inference.py --output`` writes:
``PRED/images/<organelle>-fluorescence-ome-tiff/<key>``, where ``key`` is the input's name
(with its study folder when the input was a study folder); a prediction is found by its exact
key or, failing that, by a unique stem. Modality, ``image_z`` and ``best_z`` come from
``best_z.csv`` when it lists the image, else ``image_z`` from the name (``_z<k>``).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from lightmycells.eval.errors import EvaluationError
from lightmycells.io import ome
from lightmycells.io.inputs import OUTPUT_SUFFIX, discover, is_input_name
from lightmycells.io.layout import (
    BEST_Z_COLUMNS,
    BEST_Z_FILE,
    INPUT_NAME,
    STUDY_SUFFIXES,
    target_stem,
)
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Organelle


class TruthLayout(StrEnum):
    """How a ground-truth folder is organised."""

    GRAND_CHALLENGE = "grand-challenge"
    STUDY = "study"


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


#: ``best_z.csv`` row: (modality, image_z, best_z).
BestZ = tuple[str, int, int]
# (output key, ground truth per organelle, transmitted-light input)
_Pair = tuple[str, dict[Organelle, Path], Path | None]


def read_best_z(path: Path) -> dict[str, BestZ]:
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


class PredictionIndex:
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
        """The prediction of ``organelle`` for output key ``key``, or None.

        Raises
        ------
        EvaluationError
            When no file has the exact key and several have its stem.
        """
        if key in self.by_key[organelle]:
            return self.by_key[organelle][key]
        found = self.by_stem[organelle].get(ome.stem(key), [])
        if len(found) > 1:
            listed = ", ".join(str(p) for p in found)
            raise EvaluationError(f"prediction for {key} is ambiguous: {listed}")
        return found[0] if found else None

    def __bool__(self) -> bool:
        return any(self.by_key.values())


def truth_layout(truth: Path) -> TruthLayout:
    """Grand Challenge when any organelle's output folder exists, else the study layout."""
    gc = any((truth / "images" / o.output_folder).is_dir() for o in ORGANELLES)
    return TruthLayout.GRAND_CHALLENGE if gc else TruthLayout.STUDY


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


def _truth_pairs(truth: Path, input_dir: Path | None) -> list[_Pair]:
    """Every ground-truth image of ``truth`` with its input; EvaluationError when none."""
    if not truth.is_dir():
        raise EvaluationError(f"ground-truth folder {truth} does not exist")
    layout = truth_layout(truth)
    if layout == TruthLayout.STUDY and input_dir is not None:
        raise EvaluationError(f"{truth} is in the study layout, which holds its inputs; "
                              "--input is for Grand-Challenge ground truth")
    pairs = (_gc_pairs(truth, input_dir) if layout == TruthLayout.GRAND_CHALLENGE
             else _study_pairs(truth))
    if not pairs:
        raise EvaluationError(f"no ground truth found in {truth} (expected images/<organelle>-"
                              "fluorescence-ome-tiff/ or Study_N/image_<ID>_<Organelle>.ome.tiff)")
    return pairs


def _item(pair: _Pair, index: PredictionIndex | None, table: Mapping[str, BestZ]) -> Item:
    key, targets, input_path = pair
    preds = {o: index.find(o, key) if index is not None else None for o in targets}
    row = table.get(ome.stem(key))
    return Item(
        name=key, truth=targets, preds=preds, input=input_path,
        modality=row[0] if row else None,  # else from the input when scoring
        image_z=row[1] if row else ome.parse_meta(Path(key).name, None).z,
        best_z=row[2] if row else None,
    )


def find_items(
    truth: Path,
    pred: Path | None = None,
    *,
    best_z: Path | None = None,
    input_dir: Path | None = None,
    only_predicted: bool = False,
    organelles: Sequence[Organelle] | None = None,
) -> list[Item]:
    """Pair ground truth, predictions and inputs; one :class:`Item` per evaluated image.

    ``organelles``: score only these (None: all four); an image with ground truth for none of
    them is left out.

    Raises
    ------
    EvaluationError
        When the truth folder holds no ground truth, the prediction folder no predictions,
        or a prediction is ambiguous.
    """
    truth = Path(truth)
    pairs = _truth_pairs(truth, input_dir)
    if organelles is not None:
        wanted = set(organelles)
        pairs = [(key, {o: p for o, p in targets.items() if o in wanted}, source)
                 for key, targets, source in pairs]
        pairs = [pair for pair in pairs if pair[1]]
        if not pairs:
            names = ", ".join(str(o) for o in organelles)
            raise EvaluationError(f"no ground truth for {names} in {truth}")
    csv_path = best_z if best_z is not None else truth / BEST_Z_FILE
    table = read_best_z(csv_path) if best_z is not None or csv_path.is_file() else {}
    index = PredictionIndex(Path(pred)) if pred is not None else None
    if index is not None and not index:
        raise EvaluationError(f"no predictions found in {pred} (expected images/<organelle>-"
                              "fluorescence-ome-tiff/<name>.tiff)")
    items = [_item(pair, index, table) for pair in pairs]
    if only_predicted:
        items = [item for item in items if any(item.preds.values())]
    if not items:
        raise EvaluationError(f"no image of {truth} has a prediction in {pred}")
    return items
