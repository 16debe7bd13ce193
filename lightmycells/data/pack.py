"""Pack the indexed planes into a chunked zarr v3 store with per-plane statistics.

Every usable plane and target of ``ROOT/lmc_index.json`` is decoded once (in parallel worker
processes) and written into its group's ``(N, Y, X)`` array as 256² lz4 chunks; its min,
max, mean and percentiles (computed exactly as the engine's percentile normaliser computes
them) go to ``done.jsonl`` only after its chunks are written. A rerun
skips the planes ``done.jsonl`` lists (a plane cut off mid-write is simply written again),
so a killed pack resumes to the same store. ``planes.tsv`` and ``index.json`` come last.

With ``pixel_um`` (``--pixel-um``) every field of view whose pixel size differs from it by
more than the container's tolerance is stored resampled to it (float32, the container's own
``resample.to_pixel_size``), so that training at that pixel size (``data.resample_um``)
reads patches as fast as at the stored pixels. The statistics stay those of the plane as
read, as the container normalises before it resamples; the index says each field of view's
new pixel size and shape, and the size it was resampled from.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightmycells.data.index import read_index
from lightmycells.data.store import INDEX_NAME, PERCENTILES, PLANES_NAME, STAT_COLUMNS
from lightmycells.engine import resample
from lightmycells.engine.normalize import percentiles
from lightmycells.io.atomic import replacing
from lightmycells.io.ome import ImageError
from lightmycells.io.planes import read_plane

CHUNK = 256
DONE_NAME = "done.jsonl"
LAYOUT_NAME = "layout.json"


class PackError(ValueError):
    """A store that cannot be (re)used; the message says what to do."""


@dataclass(frozen=True)
class Slot:
    """Where one source file goes: array name and index along its first axis."""

    rel: str
    array: str
    slot: int


def plan(index: dict) -> tuple[dict[str, dict], list[Slot]]:
    """Arrays (name → shape, dtype) and one slot per plane and target, in index order."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for fov in index["fovs"]:
        key = (fov["study"], tuple(fov["shape"]), fov["dtype"])
        groups[key] += [*fov["planes"], *fov["targets"].values()]
    arrays, slots = {}, []
    for k, (key, rels) in enumerate(groups.items()):
        name = f"g{k}"
        arrays[name] = {"study": key[0], "shape": [len(rels), *key[1]], "dtype": key[2]}
        slots += [Slot(rel, name, i) for i, rel in enumerate(rels)]
    return arrays, slots


def _fingerprint(arrays: dict, slots: Sequence[Slot], pixel_um: float | None) -> str:
    layout = [arrays, [(s.rel, s.array, s.slot) for s in slots]]
    if pixel_um is not None:  # stores packed at their own pixels keep their fingerprint
        layout.append(pixel_um)
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()[:16]


def at_pixel_size(index: dict, pixel_um: float) -> tuple[dict, dict[str, tuple[float, float]]]:
    """The index as a store at ``pixel_um`` holds it, and rel → (from µm, to µm) to resample.

    Raises
    ------
    PackError
        For a field of view without a pixel size (its study and image named).
    """
    fovs, moves = [], {}
    for fov in index["fovs"]:
        size = fov.get("pixel_size_um")
        if not size:
            raise PackError(f"{fov['study']} image {fov['image_id']}: no pixel size, so it "
                            f"cannot be packed at {pixel_um:g} µm")
        if not resample.needs_resampling(size, pixel_um):
            fovs.append(fov)
            continue
        shape = resample.model_shape(tuple(fov["shape"]), size, pixel_um)
        fovs.append({**fov, "shape": list(shape), "dtype": "float32",
                     "pixel_size_um": pixel_um, "resampled_from_um": size})
        moves.update({rel: (size, pixel_um) for rel in [*fov["planes"],
                                                        *fov["targets"].values()]})
    return {**index, "fovs": fovs, "pixel_size_um": pixel_um}, moves


def _create(out: Path, arrays: dict, fingerprint: str) -> None:
    """Create the group and arrays, or check that an existing store has the same layout."""
    import zarr
    from zarr.codecs import BloscCodec

    layout = out / LAYOUT_NAME
    if layout.exists():
        found = json.loads(layout.read_text()).get("fingerprint")
        if found != fingerprint:
            raise PackError(f"{out}: holds a pack of another index (layout {found}, this "
                            f"index {fingerprint}); choose a new --out or delete it")
        return
    out.mkdir(parents=True, exist_ok=True)
    zarr.open_group(out, mode="w", zarr_format=3)
    for name, spec in arrays.items():
        # lz4 + bitshuffle, unsharded: the fastest region reads of the layouts measured
        # (docs/BENCHMARKS.md); sharding (one file per plane) cost ~1 ms more per patch
        zarr.create_array(
            out, name=name, shape=tuple(spec["shape"]), dtype=spec["dtype"],
            chunks=(1, CHUNK, CHUNK), fill_value=0,
            compressors=BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
            attributes={"study": spec["study"]},
        )
    with replacing(layout) as tmp:
        Path(tmp).write_text(json.dumps({"fingerprint": fingerprint, "arrays": arrays}))


def plane_stats(pixels: np.ndarray) -> dict[str, float]:
    """min, max, mean and :data:`PERCENTILES` of one plane (float32 as the readers see it).

    Percentiles come from the engine's function with float64 interpolation, as its
    normaliser computes them.
    """
    x = np.asarray(pixels, np.float32)
    qs = percentiles(x, PERCENTILES, np.float64)
    stats = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean(dtype=np.float64))}
    stats.update({f"p{q:g}": float(v) for q, v in zip(PERCENTILES, qs, strict=True)})
    return stats


def _pack_one(root: str, out: str, slot: Slot,
              move: tuple[float, float] | None) -> tuple[Slot, dict[str, float] | str]:
    """Decode one source file, write its chunks, return its statistics (worker process).

    ``move``: (from µm, to µm) to resample it first. Returns the one-line problem instead
    when the file cannot be read as the index said.
    """
    import zarr

    try:
        pixels = read_plane(Path(root) / slot.rel).pixels  # float32 of the stored integers
    except ImageError as exc:
        return slot, str(exc)
    array = zarr.open_array(Path(out) / slot.array, mode="r+")
    stats = plane_stats(pixels)  # of the plane as read, as the container normalises
    if move is not None:
        pixels = resample.to_pixel_size(pixels, *move)
    if pixels.shape != array.shape[1:]:
        return slot, f"{slot.rel}: shape {pixels.shape}, the index said {array.shape[1:]}"
    array[slot.slot] = pixels.astype(array.dtype)
    return slot, stats


def _done(out: Path) -> dict[str, dict[str, float]]:
    """Planes already packed: the complete lines of ``done.jsonl``.

    A torn last line from a killed run is ignored, and that plane is packed again.
    """
    path = out / DONE_NAME
    done: dict[str, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                done[record["rel"]] = record["stats"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


@dataclass
class PackSummary:
    """Counts of a pack run."""

    planes: int
    packed: int
    skipped: int
    arrays: int
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One-line summary."""
        return (f"pack: {self.planes} planes in {self.arrays} arrays; {self.packed} packed now, "
                f"{self.skipped} already packed, {len(self.failed)} failed")


def pack(root: str | Path, out: str | Path, *, index_path: str | Path | None = None,
         jobs: int = 1, progress: bool = False, limit: int | None = None,
         exclude_studies: Sequence[str] = (), pixel_um: float | None = None) -> PackSummary:
    """Pack ``root``'s index into the store ``out`` (see the module docstring).

    ``limit`` packs at most that many new planes, then stops without finishing the store
    (for tests of resuming and for spreading a pack over several sessions).
    ``exclude_studies`` (``Study_N`` names) stay out of the store: a held-out test set that
    training, which reads only the store, never sees. ``pixel_um``: store the planes
    resampled to that pixel size.
    """
    root, out = Path(root), Path(out)
    index = read_index(index_path or root / "lmc_index.json")
    index = {**index, "fovs": [f for f in index["fovs"] if f["study"] not in
                               set(exclude_studies)], "excluded_studies": list(exclude_studies)}
    index, moves = at_pixel_size(index, pixel_um) if pixel_um is not None else (index, {})
    arrays, slots = plan(index)
    if not slots:
        raise PackError(f"{root}: the index has no usable plane")
    _create(out, arrays, _fingerprint(arrays, slots, pixel_um))
    done = _done(out)
    already = sum(s.rel in done for s in slots)
    todo = [s for s in slots if s.rel not in done][:limit]
    with (out / DONE_NAME).open("a") as log, tqdm(total=len(slots), initial=already,
                                                  desc="pack", unit="plane",
                                                  disable=not progress) as bar:
        failed: dict[str, str] = {}
        for slot, stats in _run(str(root), str(out), todo, jobs, moves):
            if isinstance(stats, str):  # reported, the others go on; the store stays open
                failed[slot.rel] = stats
                continue
            log.write(json.dumps({"rel": slot.rel, "stats": stats}) + "\n")
            log.flush()
            done[slot.rel] = stats
            bar.update()
    summary = PackSummary(len(slots), len(todo) - len(failed), already, len(arrays), failed)
    if all(s.rel in done for s in slots):
        _finish(out, index, slots, done)
    return summary


def _run(root: str, out: str, todo: Sequence[Slot], jobs: int,
         moves: dict[str, tuple[float, float]]):
    each = [moves.get(slot.rel) for slot in todo]
    if jobs <= 1:
        for slot, move in zip(todo, each, strict=True):
            yield _pack_one(root, out, slot, move)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_pack_one, [root] * len(todo), [out] * len(todo), todo, each,
                            chunksize=4)


def _finish(out: Path, index: dict, slots: Sequence[Slot], done: dict) -> None:
    with replacing(out / PLANES_NAME) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["rel", "array", "slot", *STAT_COLUMNS])
        for s in slots:
            writer.writerow([s.rel, s.array, s.slot, *(repr(done[s.rel][k])
                                                       for k in STAT_COLUMNS)])
    with replacing(out / INDEX_NAME) as tmp:
        Path(tmp).write_text(json.dumps({
            "source": index.get("root"), "fovs": index["fovs"],
            "excluded_studies": index.get("excluded_studies", []),
            "pixel_size_um": index.get("pixel_size_um"),
        }, indent=1))
