"""A small replica of the real S-BIAD1047 database, for tests of fetch, index and pack.

The replica follows the organisers' file lists (:mod:`lightmycells.data.catalog`): the same
``Study_N`` folders and file names, the same number of planes per field of view, the same
label combinations (a study where some fields of view lack a target keeps one such field of
view) and each study's REMBI pixel size in the OME metadata. Images are small crops (the real
shape drawn per study from :data:`REAL_SIZES`, times ``scale``) rendered by the simulated
microscope at the study's real pixel size; every file is uint16 with ``Plane/@PositionZ``,
as in the real data, unless a quirk says otherwise.

The quirks people found in the real files are injected on request (:class:`Quirk`); the
replica writes ``quirks.tsv`` (quirk, file) as the known answer an index must report, and
``files.tsv`` (study, name), its own file list with the organisers' duplicates when asked.
"""

from __future__ import annotations

import csv
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import tifffile

from lightmycells.data import catalog
from lightmycells.io.atomic import replacing
from lightmycells.simulate.study import REAL_SIZES, render_fov, sample_study
from lightmycells.vocab import Organelle


class Quirk(StrEnum):
    """A defect of the real files that the replica can reproduce."""

    DUPLICATE_ENTRIES = "duplicate-entries"
    METADATA_ONLY_BIGTIFF = "metadata-only-bigtiff"
    INVALID_TIFF_TARGET = "invalid-tiff-target"
    CONSTANT_IMAGES = "constant-images"
    MISSING_POSITION_Z = "missing-position-z"
    COMPRESSED_BIGTIFF = "compressed-bigtiff"


#: What each quirk is in the real data (PROVENANCE.md of the organisers' lists).
QUIRKS: dict[Quirk, str] = {
    Quirk.DUPLICATE_ENTRIES: "Studies 4 and 7 list every _Nucleus file twice",
    Quirk.METADATA_ONLY_BIGTIFF: "Study_28/image_2492_Nucleus.ome.tiff is a 4,096-byte "
                                 "BigTIFF holding metadata only",
    Quirk.INVALID_TIFF_TARGET: "one Study 25 nucleus target is not a valid TIFF",
    Quirk.CONSTANT_IMAGES: "two inputs and one target are constant images",
    Quirk.MISSING_POSITION_Z: "2,782 of 56,984 files carry no Plane/@PositionZ",
    Quirk.COMPRESSED_BIGTIFF: "some inputs are compressed BigTIFFs",
}
#: The real file of a quirk where PROVENANCE.md names it; else the replica picks one.
REAL_LOCATION = {
    Quirk.METADATA_ONLY_BIGTIFF: ("Study_28", "image_2492_Nucleus.ome.tiff"),
    Quirk.INVALID_TIFF_TARGET: ("Study_25", None),
}
MISSING_Z_FRACTION = 2782 / 56984
COMPRESSED_FOV_FRACTION = 0.15
METADATA_ONLY_BYTES = 4096
MIN_EDGE = 32


@dataclass
class Replica:
    """What :func:`make_replica` wrote.

    Attributes
    ----------
    root:
        The replica's folder.
    files:
        Every written file, relative to ``root`` (``Study_N/name``).
    quirks:
        ``(quirk, relative file)`` for every injected defect (the duplicate entries name the
        listed file).
    """

    root: Path
    files: list[str] = field(default_factory=list)
    quirks: list[tuple[Quirk, str]] = field(default_factory=list)


def _pick_fovs(study: catalog.StudyInfo, max_fovs: int, must: set[str]) -> list:
    """The fields of view to copy.

    The ones holding a forced file, one per label combination (so partial labels survive),
    then the first ones, up to ``max_fovs`` (at least those).
    """
    fovs = study.fovs()
    chosen: dict[str, object] = {}
    for fov in fovs:
        if set(fov.names()) & must:
            chosen[fov.image_id] = fov
    combos = set()
    for fov in fovs:
        combo = tuple(sorted(fov.targets))
        if combo not in combos:
            combos.add(combo)
            chosen.setdefault(fov.image_id, fov)
    for fov in fovs:
        if len(chosen) >= max_fovs:
            break
        chosen.setdefault(fov.image_id, fov)
    order = {f.image_id: i for i, f in enumerate(fovs)}
    return sorted(chosen.values(), key=lambda f: order[f.image_id])


def _shape(rng: np.random.Generator, scale: float) -> tuple[int, int]:
    real = REAL_SIZES[int(rng.integers(len(REAL_SIZES)))]
    return tuple(max(MIN_EDGE, round(n * scale)) for n in real)  # type: ignore[return-value]


def _write_tiff(path: Path, pixels: np.ndarray, *, channel: str, pixel_um: float,
                z_um: float | None, bigtiff: bool = False, compression: str | None = None,
                ) -> None:
    """An OME-TIFF like the archive's: one uint16 plane, physical size, Plane/@PositionZ."""
    metadata: dict = {"axes": "YX", "Channel": {"Name": channel},
                      "PhysicalSizeX": pixel_um, "PhysicalSizeXUnit": "µm",
                      "PhysicalSizeY": pixel_um, "PhysicalSizeYUnit": "µm"}
    if z_um is not None:
        metadata["Plane"] = {"PositionZ": [float(z_um)], "PositionZUnit": ["µm"]}
    with replacing(path) as tmp:
        tifffile.imwrite(tmp, pixels, ome=True, metadata=metadata, bigtiff=bigtiff,
                         compression=compression, photometric="minisblack",
                         resolution=(1e4 / pixel_um, 1e4 / pixel_um),
                         resolutionunit="CENTIMETER")


def metadata_only_bigtiff(shape: tuple[int, int], channel: str, pixel_um: float) -> bytes:
    """A 4,096-byte BigTIFF holding metadata only, like Study_28/image_2492_Nucleus.

    Its IFD and OME-XML describe a uint16 image whose pixels are not in the file (the strip
    points past its end).
    """
    height, width = shape
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
        'Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder='
        f'"XYCZT" Type="uint16" SizeX="{width}" SizeY="{height}" SizeC="1" SizeZ="1" '
        f'SizeT="1" PhysicalSizeX="{pixel_um}" PhysicalSizeY="{pixel_um}"><Channel '
        f'ID="Channel:0:0" Name="{channel}" SamplesPerPixel="1"/><TiffData IFD="0" '
        'PlaneCount="1"/></Pixels></Image></OME>\0'
    ).encode()
    tags = [  # (tag, type, count, value): type 3 SHORT, 4 LONG, 16 LONG8, 2 ASCII
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 16), (259, 3, 1, 1),
        (262, 3, 1, 1), (270, 2, len(xml), None), (273, 16, 1, METADATA_ONLY_BYTES),
        (277, 3, 1, 1), (278, 4, 1, height), (279, 16, 1, height * width * 2),
        (339, 3, 1, 1),
    ]
    ifd_offset = 16
    xml_offset = ifd_offset + 8 + 20 * len(tags) + 8
    out = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, ifd_offset))
    out += struct.pack("<Q", len(tags))
    for tag, kind, count, value in tags:
        value = xml_offset if value is None else value
        out += struct.pack("<HHQQ", tag, kind, count, value)
    out += struct.pack("<Q", 0) + xml
    if len(out) > METADATA_ONLY_BYTES:
        raise ValueError("OME-XML too long for a 4,096-byte metadata-only file")
    return bytes(out.ljust(METADATA_ONLY_BYTES, b"\0"))


def _quirk_targets(selected: dict[str, list], rng: np.random.Generator,
                   quirks: set[Quirk]) -> dict[str, Quirk]:
    """Relative file → the quirk written in its place (one quirk per file)."""
    placed: dict[str, Quirk] = {}
    nucleus = [f"{s}/image_{f.image_id}_Nucleus.ome.tiff" for s, fs in selected.items()
               for f in fs if Organelle.NUCLEUS in f.targets]
    for quirk in (Quirk.METADATA_ONLY_BIGTIFF, Quirk.INVALID_TIFF_TARGET):
        if quirk not in quirks or not nucleus:
            continue
        study, name = REAL_LOCATION[quirk]
        real = [n for n in nucleus if n.split("/")[0] == study and (name is None or
                                                                    n.endswith("/" + name))]
        free = [n for n in (real or nucleus) if n not in placed]
        if free:
            placed[free[0]] = quirk
    inputs = [f"{s}/{n}" for s, fs in selected.items() for f in fs for n in f.names()
              if "_z" in n]
    targets = [f"{s}/{n}" for s, fs in selected.items() for f in fs for n in f.names()
               if "_z" not in n and f"{s}/{n}" not in placed]
    if Quirk.CONSTANT_IMAGES in quirks:
        for name in [*rng.choice(inputs, min(2, len(inputs)), replace=False),
                     *rng.choice(targets, min(1, len(targets)), replace=False)]:
            placed[str(name)] = Quirk.CONSTANT_IMAGES
    if Quirk.COMPRESSED_BIGTIFF in quirks:
        fovs = [(s, f) for s, fs in selected.items() for f in fs]
        count = max(1, round(COMPRESSED_FOV_FRACTION * len(fovs)))
        for i in rng.choice(len(fovs), count, replace=False):
            study, fov = fovs[int(i)]
            for name in fov.names():
                if "_z" in name:
                    placed.setdefault(f"{study}/{name}", Quirk.COMPRESSED_BIGTIFF)
    if Quirk.MISSING_POSITION_Z in quirks:
        every = inputs + targets
        count = max(1, round(MISSING_Z_FRACTION * len(every)))
        for name in rng.choice(every, count, replace=False):
            placed.setdefault(str(name), Quirk.MISSING_POSITION_Z)
    return placed


def make_replica(
    out: str | Path,
    *,
    studies: Sequence[int | str] | None = None,
    max_fovs: int = 2,
    scale: float = 1 / 16,
    quirks: Iterable[Quirk | str] = tuple(Quirk),
    seed: int = 0,
) -> Replica:
    """Write a small replica of S-BIAD1047 under ``out``.

    Parameters
    ----------
    out:
        Folder to write ``Study_N/`` folders, ``files.tsv`` and ``quirks.tsv`` into.
    studies:
        Study numbers or names (default: all 30).
    max_fovs:
        Fields of view per study (more when the study's label combinations or a quirk's real
        file need them).
    scale:
        Image edge relative to the real shape drawn for the study (at least 32 pixels).
    quirks:
        The defects to inject (default all; ``()`` for a clean replica).
    seed:
        Everything is a pure function of it.
    """
    root = Path(out)
    wanted = {Quirk(q) for q in quirks}
    chosen = catalog.select(studies)
    must = {name for q, (_, name) in REAL_LOCATION.items() if q in wanted and name}
    selected = {s.name: _pick_fovs(s, max_fovs, must) for s in chosen}
    rng = np.random.default_rng([seed, 0])
    placed = _quirk_targets(selected, rng, wanted)
    replica = Replica(root)
    for info in chosen:
        _write_study(root, info, selected[info.name], placed, scale, seed, replica)
    rows: list[tuple[str, str]] = []
    for info in chosen:
        names = {n for f in selected[info.name] for n in f.names()}
        listed = info.rows if Quirk.DUPLICATE_ENTRIES in wanted else dict.fromkeys(info.rows)
        rows += [(info.name, n) for n in listed if n in names]
    if Quirk.DUPLICATE_ENTRIES in wanted:
        seen: set[tuple[str, str]] = set()
        for row in rows:
            if row in seen:
                replica.quirks.append((Quirk.DUPLICATE_ENTRIES, "/".join(row)))
            seen.add(row)
    replica.quirks += sorted((q, f) for f, q in placed.items())
    _write_tsv(root / catalog.LIST_FILE, ("study", "name"), rows)
    _write_tsv(root / "quirks.tsv", ("quirk", "file"), [(str(q), f) for q, f in replica.quirks])
    return replica


def _write_tsv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_study(root: Path, info: catalog.StudyInfo, fovs: list, placed: dict[str, Quirk],
                 scale: float, seed: int, replica: Replica) -> None:
    number = catalog.study_number(info.name)
    rng = np.random.default_rng([seed, number])
    shape = _shape(rng, scale)
    folder = root / info.name
    folder.mkdir(parents=True, exist_ok=True)
    pixel_um = info.pixel_size_um
    for fov in fovs:
        frng = np.random.default_rng([seed, number, int(fov.image_id)])
        zs = sorted(fov.z)
        study = sample_study(frng, number, fov.modality, size=shape, planes=len(zs))
        study = replace(study, optics=replace(study.optics, pixel_size_um=pixel_um))
        z_um = [(k - zs[len(zs) // 2]) * study.z_step_um for k in zs]
        rendered = render_fov(frng, study, fov.targets, z_um=z_um)
        images = {f"image_{fov.image_id}_{fov.modality}_z{k}.ome.tiff":
                  (rendered.planes[i], str(fov.modality), z_um[i]) for i, k in enumerate(zs)}
        images.update({f"image_{fov.image_id}_{o.title}.ome.tiff":
                       (rendered.targets[o], o.title, 0.0) for o in fov.targets})
        for name, (pixels, channel, z) in images.items():
            rel = f"{info.name}/{name}"
            _write_one(folder / name, np.asarray(pixels).astype(np.uint16), channel, pixel_um,
                       z, placed.get(rel))
            replica.files.append(rel)


def _write_one(path: Path, pixels: np.ndarray, channel: str, pixel_um: float, z_um: float,
               quirk: Quirk | None) -> None:
    if quirk is Quirk.METADATA_ONLY_BIGTIFF:
        path.write_bytes(metadata_only_bigtiff(pixels.shape, channel, pixel_um))
    elif quirk is Quirk.INVALID_TIFF_TARGET:
        path.write_bytes(b"<html><body>502 Bad Gateway</body></html>\n")
    elif quirk is Quirk.CONSTANT_IMAGES:
        _write_tiff(path, np.full_like(pixels, int(pixels.mean())), channel=channel,
                    pixel_um=pixel_um, z_um=z_um)
    elif quirk is Quirk.COMPRESSED_BIGTIFF:
        _write_tiff(path, pixels, channel=channel, pixel_um=pixel_um, z_um=z_um,
                    bigtiff=True, compression="zlib")
    else:
        _write_tiff(path, pixels, channel=channel, pixel_um=pixel_um,
                    z_um=None if quirk is Quirk.MISSING_POSITION_Z else z_um)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lightmycells.simulate.replica OUT [--studies N ...] [--max-fovs K] ...``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lightmycells.simulate.replica",
                                     description=make_replica.__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--studies", nargs="*", default=None, help="default: all 30")
    parser.add_argument("--max-fovs", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1 / 16)
    parser.add_argument("--quirks", nargs="*", default=[str(q) for q in Quirk],
                        choices=[str(q) for q in Quirk], help="default: all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    replica = make_replica(args.out, studies=args.studies, max_fovs=args.max_fovs,
                           scale=args.scale, quirks=args.quirks, seed=args.seed)
    print(f"replica: {len(replica.files)} files, {len(replica.quirks)} injected quirks "
          f"(quirks.tsv) under {replica.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
