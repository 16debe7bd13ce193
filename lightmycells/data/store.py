"""Read a packed store: patches of planes, and each plane's precomputed statistics.

Layout of ``STORE/`` (written by :mod:`lightmycells.data.pack`)::

    zarr.json                       a zarr v3 group
    g<k>/                           one uint16 (N, Y, X) array per (study, shape, dtype):
                                    chunks (1, 256, 256), blosc lz4 + bitshuffle
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
        self._readers: dict[str, _ChunkReader | None] = {}
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

    def _chunks(self, name: str) -> _ChunkReader | None:
        if name not in self._readers:
            self._readers[name] = _ChunkReader.open(self.path / name)
        return self._readers[name]

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
        reader = self._chunks(ref.array)
        shape = reader.shape if reader is not None else self._array(ref.array).shape
        return tuple(shape[1:])  # type: ignore[return-value]

    def read(self, rel: str, ys: slice = slice(None), xs: slice = slice(None)) -> np.ndarray:
        """Pixels of ``rel`` in the region ``[ys, xs]`` (the whole plane by default)."""
        ref = self.ref(rel)
        reader = self._chunks(ref.array)
        if reader is not None:
            return reader.region(ref.slot, ys, xs)
        return np.asarray(self._array(ref.array)[ref.slot, ys, xs])

    def plane(self, rel: str) -> LazyPlane:
        """An array-like view of ``rel`` that decodes only what is sliced."""
        return LazyPlane(self, rel, self.shape(rel))


class LazyRows:
    """A 2D plane that reads only what is sliced, array-like (float32).

    A row slice is a lazy band of rows (``_band``); a 2D slice of unit steps reads that
    region (``_region``); any other key, and ``np.asarray``, read the whole plane first.
    Subclasses set ``shape`` and give ``_band`` and ``_region``.
    """

    ndim = 2
    dtype = np.dtype(np.float32)
    shape: tuple[int, int]

    def __getitem__(self, key) -> np.ndarray | LazyRows:
        if isinstance(key, slice) and key.step in (None, 1):  # rows: a lazy band
            start, stop, _ = key.indices(self.shape[0])
            return self._band(start, max(stop, start))
        if not (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(k, slice) and k.step in (None, 1) for k in key)):
            return np.asarray(self)[key]
        (y0, y1, _), (x0, x1, _) = key[0].indices(self.shape[0]), key[1].indices(self.shape[1])
        return self._region(y0, max(y1, y0), x0, max(x1, x0))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)

    def _band(self, start: int, stop: int) -> LazyRows:
        """Rows ``[start, stop)`` as a lazy plane of their own."""
        raise NotImplementedError

    def _region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (within the shape), float32."""
        raise NotImplementedError


class LazyPlane(LazyRows):
    """A 2D plane in a store, array-like.

    Slicing decodes only the chunks touched; ``np.asarray`` reads it whole (float32, like
    the raw-TIFF reader).
    """

    def __init__(self, store: Store, rel: str, shape: tuple[int, int], top: int = 0) -> None:
        self.store, self.rel, self.shape, self.top = store, rel, shape, top

    def _band(self, start: int, stop: int) -> LazyPlane:
        return LazyPlane(self.store, self.rel, (stop - start, self.shape[1]), self.top + start)

    def _region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        rows = slice(self.top + y0, self.top + y1)
        return self.store.read(self.rel, rows, slice(x0, x1)).astype(np.float32)


class _ChunkReader:
    """Synchronous reads of a zarr v3 array in the layout pack writes.

    Regular (1, C, C) chunks, "/" keys, little-endian bytes + blosc: each touched chunk
    file is read and blosc-decoded directly, without zarr's asynchronous machinery (whose
    thread hand-offs cost more than the decoding on a busy machine). For any other layout
    :meth:`open` returns None and the store reads through zarr; a test checks both agree.
    """

    def __init__(self, folder: Path, meta: dict) -> None:
        import numcodecs

        self.folder = folder
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        self.chunk = meta["chunk_grid"]["configuration"]["chunk_shape"][1]
        self.fill = meta["fill_value"]
        self.codec = numcodecs.Blosc()

    @classmethod
    def open(cls, folder: Path) -> _ChunkReader | None:
        """A reader when the array's metadata is the layout it knows, else None."""
        meta = json.loads((folder / "zarr.json").read_text())
        codecs = [c["name"] for c in meta.get("codecs", [])]
        chunks = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
        keys = meta.get("chunk_key_encoding", {})
        known = (
            meta.get("zarr_format") == 3 and len(chunks) == 3 and chunks[0] == 1
            and chunks[1] == chunks[2] and codecs == ["bytes", "blosc"]
            and meta["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
            and keys.get("name") == "default"
            and keys.get("configuration", {}).get("separator", "/") == "/"
            and not meta.get("storage_transformers")
        )
        return cls(folder, meta) if known else None

    def _block(self, n: int, cy: int, cx: int) -> np.ndarray:
        path = self.folder / "c" / str(n) / str(cy) / str(cx)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # zarr leaves chunks equal to the fill value unwritten
            return np.full((self.chunk, self.chunk), self.fill, self.dtype)
        return np.frombuffer(self.codec.decode(raw), self.dtype).reshape(self.chunk,
                                                                         self.chunk)

    def region(self, n: int, ys: slice, xs: slice) -> np.ndarray:
        """Pixels ``[n, ys, xs]`` (slices with step 1, clipped to the array like NumPy's)."""
        y0, y1, _ = ys.indices(self.shape[1])
        x0, x1, _ = xs.indices(self.shape[2])
        out = np.empty((max(y1 - y0, 0), max(x1 - x0, 0)), self.dtype.newbyteorder("="))
        c = self.chunk
        for cy in range(y0 // c, -(-y1 // c)):
            for cx in range(x0 // c, -(-x1 // c)):
                block = self._block(n, cy, cx)
                ya, yb = max(y0, cy * c), min(y1, (cy + 1) * c)
                xa, xb = max(x0, cx * c), min(x1, (cx + 1) * c)
                out[ya - y0: yb - y0, xa - x0: xb - x0] = block[ya - cy * c: yb - cy * c,
                                                                xa - cx * c: xb - cx * c]
        return out
