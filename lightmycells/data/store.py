"""Read a packed store: patches of planes, and each plane's precomputed statistics.

Layout of ``STORE/`` (written by :mod:`lightmycells.data.pack`)::

    zarr.json                       a zarr v3 group
    g<k>/                           one uint16 (N, Y, X) array per (study, shape, dtype):
                                    chunks (1, 256, 256) inside one shard per plane, zstd
    planes.tsv                      rel, array, slot, min, max, mean, p0.1 … p99.9
    index.json                      the index's fields of view (paths relative to the root);
                                    written last, so its presence means the pack completed

A patch read decodes only the chunks it touches (at most 9 of 256² for a 512² patch)
instead of a whole 2048² plane. Arrays open lazily per process, so a store object can be
handed to forked data-loader workers.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_NAME = "index.json"
PLANES_NAME = "planes.tsv"
#: Percentiles stored for every plane (the engine's default 2 / 99.8 among them).
PERCENTILES = (0.1, 1.0, 2.0, 98.0, 99.0, 99.8, 99.9)
STAT_COLUMNS = ("min", "max", "mean", *(f"p{q:g}" for q in PERCENTILES))


class StoreError(ValueError):
    """A store that cannot be read; the message names it."""


@dataclass(frozen=True)
class PlaneRef:
    """Where one source file's pixels live in the store, and their statistics."""

    rel: str
    array: str
    slot: int
    stats: dict[str, float]

    def percentile(self, q: float) -> float:
        """The stored ``q`` percentile (a StoreError names the stored ones otherwise)."""
        key = f"p{q:g}"
        if key not in self.stats:
            raise StoreError(f"percentile {q:g} is not stored (stored: "
                             f"{', '.join(f'{p:g}' for p in PERCENTILES)})")
        return self.stats[key]


class Store:
    """A packed store opened for reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index = self.path / INDEX_NAME
        if not index.exists():
            raise StoreError(f"{self.path}: no {INDEX_NAME} (not a store, or its pack did "
                             f"not finish: rerun 'python -m lightmycells.data pack')")
        self.index = json.loads(index.read_text())
        self.refs: dict[str, PlaneRef] = {}
        with (self.path / PLANES_NAME).open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                self.refs[row["rel"]] = PlaneRef(
                    row["rel"], row["array"], int(row["slot"]),
                    {k: float(row[k]) for k in STAT_COLUMNS})
        self._arrays: dict[str, object] = {}
        self._pid = os.getpid()

    @property
    def fovs(self) -> list[dict]:
        """The index's fields of view (``planes`` and ``targets`` are source-relative paths)."""
        return self.index["fovs"]

    def ref(self, rel: str) -> PlaneRef:
        """The stored plane of source file ``rel`` (``Study_N/name``)."""
        try:
            return self.refs[rel]
        except KeyError:
            raise StoreError(f"{self.path}: {rel} is not in the store") from None

    def _array(self, name: str):
        if os.getpid() != self._pid:  # a forked worker opens its own handles
            self._arrays, self._pid = {}, os.getpid()
        if name not in self._arrays:
            import zarr  # only readers of a store need zarr

            self._arrays[name] = zarr.open_array(self.path / name, mode="r")
        return self._arrays[name]

    def shape(self, rel: str) -> tuple[int, int]:
        """(Y, X) of the stored plane."""
        ref = self.ref(rel)
        return tuple(self._array(ref.array).shape[1:])  # type: ignore[return-value]

    def read(self, rel: str, ys: slice = slice(None), xs: slice = slice(None)) -> np.ndarray:
        """Pixels of ``rel`` in the region ``[ys, xs]`` (the whole plane by default)."""
        ref = self.ref(rel)
        return np.asarray(self._array(ref.array)[ref.slot, ys, xs])

    def plane(self, rel: str) -> LazyPlane:
        """An array-like view of ``rel`` that decodes only what is sliced."""
        return LazyPlane(self, rel, self.shape(rel))


class LazyPlane:
    """A 2D plane in a store: ``shape``, ``dtype`` and slicing read only the chunks touched;
    ``np.asarray`` reads it whole (float32, like the raw-TIFF reader)."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, store: Store, rel: str, shape: tuple[int, int]) -> None:
        self.store, self.rel, self.shape = store, rel, shape

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(k, slice) and k.step in (None, 1) for k in key)):
            return np.asarray(self)[key]
        return self.store.read(self.rel, *key).astype(np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.store.read(self.rel).astype(np.float32)
        return out if dtype is None else out.astype(dtype)
