"""Index a downloaded (or replicated) S-BIAD1047 tree: every quirk reported, usable FOVs kept.

Every file under ``ROOT/Study_*`` is opened and decoded once (in parallel): an unreadable
file, a metadata-only BigTIFF, a constant image, a target whose shape differs from its
planes is skipped; a compressed BigTIFF or a file without ``Plane/@PositionZ`` is kept (the
z comes from the file name). When ``ROOT/files.tsv`` (written by fetch and by the replica)
lists the files, duplicate entries and listed-but-absent files are reported too. The result,
``ROOT/lmc_index.json``, holds the usable fields of view (planes by z, targets, shape, pixel
size) and every finding; ``pack`` and training read it.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import tifffile
from tqdm import tqdm

from lightmycells.data import catalog
from lightmycells.io import ome
from lightmycells.io.atomic import replacing
from lightmycells.io.layout import INPUT_NAME, TARGET_NAME
from lightmycells.vocab import Modality, Organelle

INDEX_FILE = "lmc_index.json"
INDEX_VERSION = 1


class Issue(StrEnum):
    """A defect found in the tree; :data:`ISSUES` gives what is done about it."""

    DUPLICATE_ENTRY = "duplicate-entry"
    LISTED_NOT_FOUND = "listed-not-found"
    NOT_LISTED = "not-listed"
    UNKNOWN_NAME = "unknown-name"
    NOT_A_TIFF = "not-a-tiff"
    METADATA_ONLY = "metadata-only"
    CONSTANT = "constant-image"
    NO_POSITION_Z = "no-position-z"
    COMPRESSED_BIGTIFF = "compressed-bigtiff"
    SHAPE_MISMATCH = "shape-mismatch"
    NO_INPUT = "target-without-input"


class Action(StrEnum):
    """What the index did with the file."""

    SKIPPED = "skipped"
    KEPT = "kept"
    KEPT_ONCE = "kept once"
    ABSENT = "absent"


#: issue → (action, why).
ISSUES: dict[Issue, tuple[Action, str]] = {
    Issue.DUPLICATE_ENTRY: (Action.KEPT_ONCE, "listed more than once"),
    Issue.LISTED_NOT_FOUND: (Action.ABSENT, "listed but not on disk"),
    Issue.NOT_LISTED: (Action.KEPT, f"on disk but not in {catalog.LIST_FILE}"),
    Issue.UNKNOWN_NAME: (Action.SKIPPED, "name is neither image_<ID>_<BF|PC|DIC>_z<k> nor "
                                         "image_<ID>_<Organelle>"),
    Issue.NOT_A_TIFF: (Action.SKIPPED, "not a readable TIFF"),
    Issue.METADATA_ONLY: (Action.SKIPPED, "TIFF header and metadata only, pixel data missing"),
    Issue.CONSTANT: (Action.SKIPPED, "constant image (no contrast to learn or score)"),
    Issue.NO_POSITION_Z: (Action.KEPT, "no Plane/@PositionZ; z from the file name"),
    Issue.COMPRESSED_BIGTIFF: (Action.KEPT, "compressed BigTIFF (slow to decode; pack it)"),
    Issue.SHAPE_MISMATCH: (Action.SKIPPED, "shape differs from the field of view's planes"),
    Issue.NO_INPUT: (Action.SKIPPED, "target of a field of view with no usable input plane"),
}


@dataclass(frozen=True)
class Finding:
    """One reported quirk: file (relative to the root), issue, action, detail."""

    file: str
    issue: Issue
    action: Action
    detail: str = ""

    def line(self) -> str:
        """``file: issue (detail) -> action``."""
        why = ISSUES[self.issue][1] + (f"; {self.detail}" if self.detail else "")
        return f"{self.file}: {self.issue} ({why}) -> {self.action}"


@dataclass
class FileFacts:
    """What opening one file told."""

    rel: str
    size: int
    error: str | None = None
    metadata_only: bool = False
    shape: tuple[int, ...] = ()
    dtype: str = ""
    bigtiff: bool = False
    compression: str = ""
    position_z: bool = True
    vmin: float = 0.0
    vmax: float = 0.0
    pixel_size_um: float | None = None


def _pixel_size_x(rel: str, xml: str) -> float | None:
    """The x pixel size (µm) the OME-XML states, with the project's unit rules; else None."""
    try:
        meta = ome.parse_meta(rel.rsplit("/", 1)[-1], xml or None)
    except ome.ImageError:
        return None
    return meta.pixel_size_um[1] if meta.pixel_size_um else None


def inspect(root: str, rel: str) -> FileFacts:
    """Open and decode one file (a top-level function, so a process pool can run it)."""
    path = Path(root) / rel
    try:
        facts = FileFacts(rel, path.stat().st_size)
    except OSError as exc:  # vanished or unreadable since the listing
        return FileFacts(rel, 0, error=f"cannot read ({exc.strerror or exc})")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            facts.shape, facts.dtype = tuple(page.shape), str(page.dtype)
            facts.bigtiff = tif.is_bigtiff
            facts.compression = page.compression.name
            xml = tif.ome_metadata or ""
            facts.position_z = "PositionZ=" in xml if xml else False
            facts.pixel_size_um = _pixel_size_x(rel, xml)
            needed = int(np.prod(page.shape)) * page.dtype.itemsize
            try:
                pixels = tif.series[0].asarray()
            except Exception as exc:  # tifffile raises many types for missing data
                short = page.compression.name == "NONE" and facts.size < needed
                if short or max(page.dataoffsets, default=facts.size) >= facts.size:
                    facts.metadata_only = True
                    facts.error = (f"{facts.size} bytes, the {page.shape} {page.dtype} "
                                   f"image needs {needed}")
                else:
                    facts.error = f"{type(exc).__name__}: {exc}"
                return facts
    except Exception as exc:  # not a TIFF at all, or a broken header
        facts.error = f"{type(exc).__name__}: {str(exc)[:120]}"
        return facts
    facts.vmin, facts.vmax = float(pixels.min()), float(pixels.max())
    return facts


@dataclass
class IndexResult:
    """The usable fields of view, every finding, and the counts."""

    fovs: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Usable fields of view per study, per organelle and per modality, and planes."""
        by_study: Counter[str] = Counter(f["study"] for f in self.fovs)
        organelle: Counter[str] = Counter(o for f in self.fovs for o in f["targets"])
        modality: Counter[str] = Counter(f["modality"] for f in self.fovs)
        planes = sum(len(f["planes"]) for f in self.fovs)
        return {"study": dict(by_study), "organelle": dict(organelle),
                "modality": dict(modality),
                "total": {"fovs": len(self.fovs), "planes": planes,
                          "targets": sum(organelle.values())}}

    def report(self) -> list[str]:
        """Findings (one line each), then the counts tables."""
        lines = [f.line() for f in self.findings]
        by_issue = Counter(f.issue for f in self.findings)
        lines.append("findings: " + (", ".join(f"{i} {n}" for i, n in sorted(by_issue.items()))
                                     or "none"))
        per_study: dict[str, Counter[str]] = defaultdict(Counter)
        for f in self.fovs:
            per_study[f["study"]]["fovs"] += 1
            per_study[f["study"]]["planes"] += len(f["planes"])
            per_study[f["study"]][f["modality"]] += 1
            per_study[f["study"]].update(list(f["targets"]))
        cols = ["fovs", "planes", *Modality, *Organelle]
        lines.append("study\t" + "\t".join(cols))
        for study in sorted(per_study, key=catalog.study_number):
            lines.append(study + "\t" + "\t".join(str(per_study[study][c]) for c in cols))
        total = self.counts()["total"]
        lines.append(f"usable: {total['fovs']} fields of view, {total['planes']} planes, "
                     f"{total['targets']} targets; by organelle "
                     + ", ".join(f"{o} {n}" for o, n in sorted(self.counts()["organelle"]
                                                               .items()))
                     + "; by modality "
                     + ", ".join(f"{m} {n}" for m, n in sorted(self.counts()["modality"]
                                                               .items())))
        return lines


def _listed(root: Path) -> list[tuple[str, str]] | None:
    path = root / catalog.LIST_FILE
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        return [(r["study"], r["name"]) for r in csv.DictReader(handle, delimiter="\t")]


def _list_findings(root: Path, on_disk: set[str]) -> list[Finding]:
    rows = _listed(root)
    if rows is None:
        return []
    findings = []
    counts = Counter(f"{s}/{n}" for s, n in rows)
    for rel, n in counts.items():
        if n > 1:
            findings.append(Finding(rel, Issue.DUPLICATE_ENTRY, Action.KEPT_ONCE,
                                    f"{n} entries"))
        if rel not in on_disk:
            findings.append(Finding(rel, Issue.LISTED_NOT_FOUND, Action.ABSENT))
    findings += [Finding(rel, Issue.NOT_LISTED, Action.KEPT) for rel in sorted(on_disk)
                 if rel not in counts]
    return findings


def _file_findings(facts: FileFacts) -> list[Finding]:
    out = []
    if facts.metadata_only:
        out.append(Finding(facts.rel, Issue.METADATA_ONLY, Action.SKIPPED, facts.error or ""))
    elif facts.error:
        out.append(Finding(facts.rel, Issue.NOT_A_TIFF, Action.SKIPPED, facts.error))
    elif facts.vmin == facts.vmax:
        out.append(Finding(facts.rel, Issue.CONSTANT, Action.SKIPPED,
                           f"every pixel {facts.vmin:g}"))
    if not facts.error:
        if not facts.position_z:
            out.append(Finding(facts.rel, Issue.NO_POSITION_Z, Action.KEPT))
        if facts.bigtiff and facts.compression != "NONE":
            out.append(Finding(facts.rel, Issue.COMPRESSED_BIGTIFF, Action.KEPT,
                               facts.compression))
    return out


def build_index(root: str | Path, *, jobs: int = 1, progress: bool = False) -> IndexResult:
    """Inspect every file under ``root/Study_*`` and assemble the usable fields of view."""
    root = Path(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("Study_*/*")
                   if p.is_file() and not p.name.endswith(".part") and not p.name.startswith("."))
    result = IndexResult(findings=_list_findings(root, set(files)))
    named = []
    for rel in files:
        if INPUT_NAME.match(rel.split("/")[1]) or TARGET_NAME.match(rel.split("/")[1]):
            named.append(rel)
        else:
            result.findings.append(Finding(rel, Issue.UNKNOWN_NAME, Action.SKIPPED))
    facts = _inspect_all(root, named, jobs, progress)
    usable = {}
    for f in facts:
        result.findings += _file_findings(f)
        if not f.error and f.vmin != f.vmax:
            usable[f.rel] = f
    result.fovs = _assemble(usable, result.findings)
    order = {i: k for k, i in enumerate(Issue)}
    result.findings.sort(key=lambda f: (order[f.issue], f.file))
    return result


def _inspect_all(root: Path, files: Sequence[str], jobs: int, progress: bool) -> list[FileFacts]:
    bar = tqdm(total=len(files), desc="index", unit="file", disable=not progress)
    with bar:
        if jobs <= 1:
            out = []
            for rel in files:
                out.append(inspect(str(root), rel))
                bar.update()
            return out
        with ProcessPoolExecutor(jobs) as pool:
            out = []
            for f in pool.map(inspect, [str(root)] * len(files), files, chunksize=16):
                out.append(f)
                bar.update()
            return out


def _assemble(usable: dict[str, FileFacts], findings: list[Finding]) -> list[dict]:
    """Group usable files into fields of view; drop targets that do not fit their planes."""
    planes: dict[tuple[str, str, str], list[tuple[int, FileFacts]]] = defaultdict(list)
    targets: dict[tuple[str, str], dict[str, FileFacts]] = defaultdict(dict)
    for rel, f in usable.items():
        study, name = rel.split("/")
        if m := INPUT_NAME.match(name):
            planes[(study, m["id"], m["modality"])].append((int(m["z"]), f))
        elif m := TARGET_NAME.match(name):
            targets[(study, m["id"])][m["organelle"].lower()] = f
    pixel = {s.name: s.pixel_size_um for s in catalog.studies().values()}
    fovs, claimed = [], set()
    for (study, image_id, modality), zs in sorted(planes.items(),
                                                  key=lambda kv: (catalog.study_number(
                                                      kv[0][0]), kv[0][1], kv[0][2])):
        zs.sort(key=lambda t: t[0])
        shape = Counter(f.shape for _, f in zs).most_common(1)[0][0]
        kept = [(z, f) for z, f in zs if f.shape == shape]
        for _, f in zs:
            if f.shape != shape:
                findings.append(Finding(f.rel, Issue.SHAPE_MISMATCH, Action.SKIPPED,
                                        f"{f.shape} vs {shape}"))
        fov_targets = {}
        for organelle, f in sorted(targets.get((study, image_id), {}).items()):
            claimed.add(f.rel)
            if f.shape != shape:
                findings.append(Finding(f.rel, Issue.SHAPE_MISMATCH, Action.SKIPPED,
                                        f"{f.shape} vs planes {shape}"))
            else:
                fov_targets[organelle] = f.rel
        first = kept[0][1]
        fovs.append({
            "study": study, "image_id": image_id, "modality": modality,
            "planes": [f.rel for _, f in kept], "z": [z for z, _ in kept],
            "targets": fov_targets, "shape": list(shape), "dtype": first.dtype,
            "pixel_size_um": first.pixel_size_um or pixel.get(study),
        })
    for found in targets.values():
        for f in found.values():
            if f.rel not in claimed:
                findings.append(Finding(f.rel, Issue.NO_INPUT, Action.SKIPPED))
    return fovs


def write_index(root: str | Path, result: IndexResult, out: str | Path | None = None) -> Path:
    """Write ``lmc_index.json`` (atomically) and return its path."""
    path = Path(out) if out else Path(root) / INDEX_FILE
    payload = {
        "version": INDEX_VERSION, "root": str(Path(root).resolve()), "fovs": result.fovs,
        "findings": [{**asdict(f), "issue": str(f.issue), "action": str(f.action)}
                     for f in result.findings],
        "counts": result.counts(),
    }
    with replacing(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=1))
    return path


def read_index(path: str | Path) -> dict:
    """Load an index written by :func:`write_index` (a ValueError names the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the index ({exc}); run "
                         f"'python -m lightmycells.data index ROOT'") from None
    if data.get("version") != INDEX_VERSION:
        raise ValueError(f"{path}: index version {data.get('version')}, expected "
                         f"{INDEX_VERSION}")
    return data
