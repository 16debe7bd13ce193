"""The organisers' description of S-BIAD1047: file lists and per-study pixel sizes.

``sbiad1047/files.tsv.gz`` is the organisers' ``FileList/Study<N>.tsv`` files (Light My Cells
training-database documentation, as copied in MedICL-VU/LightMyCells at commit 4a8d7e547a80),
one ``study<TAB>name`` row per listed line, in their order, duplicates kept (Studies 4 and 7
list every nucleus target twice). ``sbiad1047/studies.tsv`` holds each study's pixel size (nm)
and imaging method from the organisers' REMBI spreadsheet. The list is what fetch downloads,
what the replica reproduces and what index compares a download against.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lightmycells.io.layout import INPUT_NAME, TARGET_NAME
from lightmycells.vocab import Modality, Organelle

HERE = Path(__file__).parent / "sbiad1047"
FILES_TSV = HERE / "files.tsv.gz"
STUDIES_TSV = HERE / "studies.tsv"
#: Size of the whole archive as the BioImage Archive reports it (for plans and estimates).
ARCHIVE_BYTES = 109_290_000_000
ARCHIVE_FILES = 56_984
#: A tree's own copy of the list (``study<TAB>name``, duplicates kept): fetch and the replica
#: write it, index compares the files on disk against it.
LIST_FILE = "files.tsv"


@dataclass
class ListedFov:
    """One field of view as the organisers' list describes it."""

    study: str
    image_id: str
    modality: Modality
    z: list[int] = field(default_factory=list)
    targets: list[Organelle] = field(default_factory=list)

    def names(self) -> list[str]:
        """File names of its planes (by z) and targets."""
        planes = [f"image_{self.image_id}_{self.modality}_z{k}.ome.tiff" for k in sorted(self.z)]
        return planes + [f"image_{self.image_id}_{o.title}.ome.tiff" for o in self.targets]


@dataclass(frozen=True)
class StudyInfo:
    """One study of the archive: its listed rows (in order) and its REMBI facts."""

    name: str
    rows: tuple[str, ...]
    pixel_nm: float
    imaging_method: str

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in µm (REMBI)."""
        return self.pixel_nm / 1000.0

    def duplicates(self) -> dict[str, int]:
        """Names listed more than once → how many times."""
        return {n: c for n, c in Counter(self.rows).items() if c > 1}

    def fovs(self) -> list[ListedFov]:
        """Its fields of view (each listed name counted once), ordered by first appearance."""
        found: dict[str, ListedFov] = {}
        targets: dict[str, list[Organelle]] = defaultdict(list)
        for name in dict.fromkeys(self.rows):
            if m := INPUT_NAME.match(name):
                fov = found.setdefault(m["id"], ListedFov(self.name, m["id"],
                                                          Modality(m["modality"])))
                fov.z.append(int(m["z"]))
            elif m := TARGET_NAME.match(name):
                targets[m["id"]].append(Organelle(m["organelle"].lower()))
        for image_id, organelles in targets.items():
            if image_id in found:
                found[image_id].targets = organelles
        return list(found.values())


def study_number(name: str) -> int:
    """``"Study_12"`` → 12."""
    return int(name.rsplit("_", 1)[1])


@cache
def studies() -> dict[str, StudyInfo]:
    """Every study of the organisers' list, ``"Study_1"`` … ``"Study_30"``."""
    rows: dict[str, list[str]] = defaultdict(list)
    with gzip.open(FILES_TSV, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            rows[row["study"]].append(row["name"])
    facts = {r["study"]: r for r in csv.DictReader(io.StringIO(STUDIES_TSV.read_text()),
                                                   delimiter="\t")}
    return {
        name: StudyInfo(name, tuple(names), float(facts[name]["pixel_nm"]),
                        facts[name]["imaging_method"])
        for name, names in sorted(rows.items(), key=lambda kv: study_number(kv[0]))
    }


def select(wanted: Iterable[str | int] | None) -> list[StudyInfo]:
    """The studies named by number or folder name (all when ``wanted`` is None or empty).

    Raises
    ------
    ValueError
        Naming the unknown study and the valid range.
    """
    every = studies()
    if not wanted:
        return list(every.values())
    chosen = []
    for item in wanted:
        name = item if isinstance(item, str) and item.startswith("Study_") else f"Study_{item}"
        if name not in every:
            raise ValueError(f"unknown study {item!r} (expected 1 … {len(every)} or Study_N)")
        chosen.append(every[name])
    return chosen
