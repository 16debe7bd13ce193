"""Training data given as a CSV of paired images — the way a lab holds its own pairs.

One row per (input, organelle, target) pair::

    input,organelle,target,modality,pixel_size_um
    fov1_bf.tif,nucleus,fov1_dapi.tif,BF,0.325
    fov1_z0.tif;fov1_z1.tif,actin,fov1_phalloidin.png,PC,

- ``input``: one 2D plane, or several focus planes of one field of view joined by ``;``
  (each is an augmentation, as the z-planes of the Light My Cells layout are);
- ``organelle``: nucleus, mitochondria, tubulin or actin;
- ``target``: the fluorescence image, same shape as every input plane;
- ``modality`` (optional): BF, PC or DIC (microscope words such as "Phase" are accepted);
  when empty, the input file's metadata decides, else BF (said in one line);
- ``pixel_size_um`` (optional): the input's pixel size; when empty, the file's metadata.

Relative paths are relative to the CSV's folder. Files may be TIFF, OME-TIFF or PNG
(:mod:`lightmycells.io.planes`). Rows that share the same inputs form one field of view with
several targets. A row that cannot be used (a file missing or unreadable, shapes that differ,
an unknown organelle) is reported on one line naming the row and the file, and left out; the
other rows still train. No usable row at all is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from lightmycells.io import ome
from lightmycells.io.planes import read_plane
from lightmycells.train.data import DataError, FieldOfView
from lightmycells.vocab import Modality, ModalityError, Organelle, parse_modality

REQUIRED_COLUMNS = ("input", "organelle", "target")
OPTIONAL_COLUMNS = ("modality", "pixel_size_um")
#: The study name pairs get: they all come from the user's own microscope.
PAIRS_STUDY = "pairs"


@dataclass
class _Group:
    planes: tuple[Path, ...]
    modality: Modality | None  # None: neither the file nor the CSV says
    pixel_size_um: tuple[float, float] | None
    targets: dict[Organelle, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class PairsIndex:
    """What a pairs CSV yields: the usable fields of view and one line per row left out."""

    fovs: list[FieldOfView]
    problems: list[str]


def read_pairs(csv_path: str | Path, *, log: Callable[[str], None] = print) -> PairsIndex:
    """Index a pairs CSV into fields of view; each unusable row is logged on one line.

    Raises
    ------
    DataError
        The CSV is missing, lacks a required column, or no row is usable.
    """
    csv_path = Path(csv_path)
    rows = _read_rows(csv_path)
    groups: dict[tuple[Path, ...], _Group] = {}
    problems: list[str] = []
    seen: dict[Path, _Facts] = {}  # each file is read once, however many rows name it
    for number, row in rows:
        try:
            _add_row(csv_path, row, groups, seen)
        except DataError as exc:
            problem = f"{csv_path} row {number}: {exc}"
            problems.append(problem)
            log(problem)
    if not groups:
        raise DataError(f"{csv_path}: no usable pair ({len(problems)} rows left out)")
    for group in groups.values():
        if group.modality is None:
            log(f"{csv_path}: {group.planes[0]}: no modality in the file or the CSV; "
                f"assuming {Modality.BF} (add a modality column to say otherwise)")
            group.modality = Modality.BF
    fovs = [FieldOfView(study=PAIRS_STUDY, image_id=f"{i:04d}", modality=group.modality,
                        planes=group.planes, z=tuple(range(len(group.planes))),
                        targets=dict(group.targets), pixel_size_um=group.pixel_size_um)
            for i, group in enumerate(groups.values())]
    return PairsIndex(fovs, problems)


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with csv_path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                                f"(expected {','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})")
            # header is line 1, so the first data row is row 2 as a spreadsheet shows it
            return [(n, {k.strip(): (v or "").strip() for k, v in r.items() if k})
                    for n, r in enumerate(reader, start=2)]
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None


def _add_row(csv_path: Path, row: dict[str, str], groups: dict[tuple[Path, ...], _Group],
             seen: dict[Path, _Facts]) -> None:
    """Check one row's files and fold it into its field of view (raises DataError)."""
    try:
        organelle = Organelle(row["organelle"].lower())
    except ValueError:
        raise DataError(f"unknown organelle {row['organelle']!r} "
                        f"(expected one of {', '.join(Organelle)})") from None
    planes = tuple(_resolve(csv_path, p) for p in row["input"].split(";") if p.strip())
    if not planes:
        raise DataError("empty input")
    target = _resolve(csv_path, row["target"])
    first = _facts(planes[0], seen)
    for path in (*planes[1:], target):
        shape = _facts(path, seen).shape
        if shape != first.shape:
            raise DataError(f"{path}: shape {shape} differs from the input {planes[0].name} "
                            f"{first.shape}")
    group = groups.get(planes)
    if group is None:
        group = groups[planes] = _Group(planes, *_modality_and_size(row, first))
    if organelle in group.targets and group.targets[organelle] != target:
        raise DataError(f"a second {organelle} target {target} for the same input "
                        f"(first: {group.targets[organelle]})")
    group.targets[organelle] = target


def _resolve(csv_path: Path, name: str) -> Path:
    path = Path(name.strip()).expanduser()
    return path if path.is_absolute() else csv_path.parent / path


class _Facts(NamedTuple):
    """What the checks need of a file, read once: its shape and what its metadata says."""

    shape: tuple[int, ...]
    pixel_size_um: tuple[float, float] | None
    modality: Modality | None


def _facts(path: Path, seen: dict[Path, _Facts]) -> _Facts:
    if path not in seen:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            plane = read_plane(path)
        except ome.ImageError as exc:
            raise DataError(str(exc)) from None
        seen[path] = _Facts(plane.pixels.shape, plane.pixel_size_um, plane.modality)
    return seen[path]


def _modality_and_size(row: dict[str, str],
                       plane: _Facts) -> tuple[Modality | None, tuple[float, float] | None]:
    modality = plane.modality
    if row.get("modality"):
        try:
            modality = parse_modality(row["modality"])
        except ModalityError as exc:
            raise DataError(str(exc)) from None
    size = plane.pixel_size_um
    if row.get("pixel_size_um"):
        try:
            value = float(row["pixel_size_um"])
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            raise DataError(f"pixel_size_um {row['pixel_size_um']!r} is not a positive number")
        size = (value, value)
    return modality, size
