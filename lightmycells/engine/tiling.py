"""Tile grids, the Hann window and blending — pure numpy; the model is passed in as a function.

``predict_tiled`` cuts an image into tiles of one shape — chosen per image, by ``plan_tiles``
or as the model's patch, so different images may get different shapes — with at least the
requested overlap, feeds the tiles to ``predict`` in equal full batches, and blends
the outputs with a Hann window: it accumulates Σw·y in the output buffer and divides once by
Σw. The window and the grid are separable, so Σw is an outer product of two 1D sums and no
weight image is stored: memory is one output image plus one batch (and a reflect-padded
copy of the input only when the image is smaller than a tile).

``plan_tiles`` picks, per image, a tile shape with edges that are multiples of
:data:`TILE_MULTIPLE` between the patch and ``MAX_EDGE_PATCHES`` patches, so that the
pixels computed (tiles × tile area) stay close to the image's own pixel count while every
overlap stays at least the model's ``overlap × patch`` (fully convolutional models only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]

#: Planned tile edges are multiples of this (a UNet of depth ≤ 6 accepts them).
TILE_MULTIPLE = 64
#: Planned tiles hold at most this many pixels: ONNX Runtime's CPU cost per pixel is lowest
#: around 1024² tiles and grows for larger ones (docs/BENCHMARKS.md).
MAX_TILE_PIXELS = 1216 * 1216
#: Planned tile edges are at most this many patches long.
MAX_EDGE_PATCHES = 4


def hann(length: int) -> np.ndarray:
    """A Hann window sampled at pixel centres, ``sin²(π(i + ½)/length)``: positive everywhere.

    Sampling at centres keeps the edge weight above zero (≈ (π/2L)²), so a pixel covered by a
    single tile edge still gets a weight > 0 and Σw·y / Σw returns its value (to float32
    rounding: (w·y)/w may differ from y in the last bit).
    """
    i = np.arange(length, dtype=np.float64)
    return (np.sin(np.pi * (i + 0.5) / length) ** 2).astype(np.float32)


def tile_starts(length: int, tile: int, overlap: int) -> np.ndarray:
    """Start offsets of tiles of edge ``tile`` covering ``length`` with overlap ≥ ``overlap``.

    The tiles are evenly spread: first at 0, last ending at ``length``; neighbours overlap by
    at least ``overlap`` pixels. ``length`` must be ≥ ``tile`` (pad smaller images first).
    """
    if length < tile:
        raise ValueError(f"length {length} is smaller than the tile {tile}; pad first")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile) (got {overlap} for tile {tile})")
    count = 1 if length == tile else math.ceil((length - tile) / (tile - overlap)) + 1
    return np.round(np.linspace(0, length - tile, count)).astype(np.int64)


def _as_pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what} must be a positive int or a (y, x) pair (got {value!r})")
    return int(pair[0]), int(pair[1])


def overlap_pixels(tile: int, overlap: float) -> int:
    """Overlap in pixels for a fraction of the tile edge, at most ``tile - 1``."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be a fraction in [0, 1) (got {overlap})")
    return min(tile - 1, math.ceil(round(overlap * tile, 6)))


def _reflect_pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reflect-pad ``image`` at the bottom/right up to ``shape`` (repeated reflection if needed)."""
    pad = [(0, max(0, s - n)) for s, n in zip(shape, image.shape, strict=True)]
    if not any(after for _, after in pad):
        return image
    if min(image.shape) > 1:
        return np.pad(image, pad, mode="reflect")
    return np.pad(image, pad, mode="edge")  # reflect needs 2 pixels per axis


def batch_layout(n_tiles: int, batch_size: int) -> int:
    """Tiles per model call: the largest size ≤ ``batch_size`` that divides ``n_tiles``.

    Every batch of one image is then full and has one shape, and no padding tile is ever
    computed: a padded last batch (25 tiles in batches of 4 compute 28) costs more on a CPU
    than it saves, and on a GPU a 512² tile already fills the device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 (got {batch_size})")
    return max(b for b in range(1, min(batch_size, n_tiles) + 1) if n_tiles % b == 0)


def _batches(
    positions: list[tuple[int, int]], size: int
) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(positions), size):
        yield positions[i : i + size]


def predict_tiled(
    image: np.ndarray,
    predict: Predict,
    *,
    tile: int | tuple[int, int],
    overlap: float,
    batch_size: int,
    overlap_px: int | None = None,
) -> np.ndarray:
    """Predict a ``(Y, X)`` image tile by tile and blend the tiles with a Hann window.

    Parameters
    ----------
    image:
        ``(Y, X)`` float32 image (already normalised). Images smaller than the tile are
        reflect-padded up to it and the output is cropped back.
    predict:
        Maps ``(B, 1, TY, TX)`` float32 to ``(B, C, TY, TX)`` float32; always called with the
        same ``B`` (see :func:`batch_layout`).
    tile:
        Tile edge, or ``(TY, TX)``.
    overlap:
        Minimum overlap between neighbouring tiles as a fraction of the tile edge, [0, 1).
    batch_size:
        Most tiles per ``predict`` call.
    overlap_px:
        Minimum overlap in pixels on both axes; replaces ``overlap`` when given
        (:class:`TilePlan` gives it).

    Returns
    -------
    np.ndarray
        ``(C, Y, X)`` float32.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a (Y, X) image (got shape {image.shape})")
    ty, tx = _as_pair(tile, "tile")
    height, width = image.shape
    padded = _reflect_pad(np.asarray(image, np.float32), (ty, tx))
    oy, ox = ((overlap_pixels(ty, overlap), overlap_pixels(tx, overlap)) if overlap_px is None
              else (min(overlap_px, ty - 1), min(overlap_px, tx - 1)))
    ys = tile_starts(padded.shape[0], ty, oy)
    xs = tile_starts(padded.shape[1], tx, ox)
    positions = [(int(y), int(x)) for y in ys for x in xs]
    per_batch = batch_layout(len(positions), batch_size)
    window_y, window_x = hann(ty), hann(tx)
    window = window_y[:, None] * window_x[None, :]  # (TY, TX)

    batch = np.empty((per_batch, 1, ty, tx), np.float32)
    out: np.ndarray | None = None
    for group in _batches(positions, per_batch):
        for i, (y, x) in enumerate(group):
            batch[i, 0] = padded[y : y + ty, x : x + tx]
        pred = _checked(predict(batch), per_batch, ty, tx)
        if out is None:
            out = np.zeros((pred.shape[1], *padded.shape), np.float32)  # (C, Y', X')
        for i, (y, x) in enumerate(group):
            tile_out = pred[i]
            tile_out *= window
            out[:, y : y + ty, x : x + tx] += tile_out
    assert out is not None  # at least one tile always exists
    # Σw is separable: Σ_tiles wy(y - y0)·wx(x - x0) = (Σ_y0 wy)(Σ_x0 wx).
    out /= _coverage(padded.shape[0], ys, window_y)[None, :, None]
    out /= _coverage(padded.shape[1], xs, window_x)[None, None, :]
    return out[:, :height, :width]


def _coverage(length: int, starts: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Σ of the 1D window over all tiles covering each position."""
    total = np.zeros(length, np.float32)
    for start in starts:
        total[start : start + window.size] += window
    return total


def _checked(pred: np.ndarray, batch: int, ty: int, tx: int) -> np.ndarray:
    """The model output as a writable float32 array of shape (B, C, TY, TX), or an error."""
    pred = np.asarray(pred)
    if pred.ndim != 4 or pred.shape[0] != batch or pred.shape[2:] != (ty, tx):
        raise ValueError(f"model returned shape {pred.shape} for input {(batch, 1, ty, tx)} "
                         f"(expected ({batch}, C, {ty}, {tx}))")
    if pred.dtype != np.float32 or not pred.flags.writeable:
        pred = pred.astype(np.float32)
    return pred


@dataclass(frozen=True)
class TilePlan:
    """Tile shape and overlap of one image (``tile``, ``overlap_px`` of :func:`predict_tiled`)."""

    tile: tuple[int, int]
    overlap_px: int
    tiles: int
    computed_pixels: int

    def cost_ratio(self, shape: tuple[int, int]) -> float:
        """Pixels the model computes ÷ the image's pixels."""
        return self.computed_pixels / (shape[0] * shape[1])


def _axis_options(length: int, patch: int, overlap_px: int) -> list[tuple[int, int]]:
    """(edge, count) choices for one axis: for each tile count, the smallest planned edge."""
    options = []
    max_edge = MAX_EDGE_PATCHES * patch
    smallest = max(patch, TILE_MULTIPLE)
    for count in range(1, math.ceil(length / max(1, smallest - overlap_px)) + 2):
        need = math.ceil((length + (count - 1) * overlap_px) / count)
        edge = max(smallest, math.ceil(need / TILE_MULTIPLE) * TILE_MULTIPLE)
        if edge > max_edge:
            continue
        options.append((edge, count))
        if edge == smallest:
            break
    return options


def plan_tiles(shape: tuple[int, int], *, patch: int, overlap: float) -> TilePlan:
    """Choose the tile shape for one image: fewest computed pixels, then fewest tiles.

    Tile edges are multiples of :data:`TILE_MULTIPLE` between ``patch`` and
    ``MAX_EDGE_PATCHES × patch``, tiles hold at most :data:`MAX_TILE_PIXELS` (or one patch²,
    if larger), and neighbouring tiles overlap by at least ``ceil(overlap × patch)`` pixels.
    Only for fully convolutional models; a fixed-size model keeps ``patch``.
    """
    overlap_px = overlap_pixels(patch, overlap)
    max_pixels = max(MAX_TILE_PIXELS, patch * patch)
    best: tuple[tuple[int, int], TilePlan] | None = None
    for ey, ny in _axis_options(shape[0], patch, overlap_px):
        for ex, nx in _axis_options(shape[1], patch, overlap_px):
            if ey * ex > max_pixels:
                continue
            computed = ny * nx * ey * ex
            plan = TilePlan((ey, ex), overlap_px, ny * nx, computed)
            key = (computed, ny * nx)
            if best is None or key < best[0]:
                best = (key, plan)
    if best is None:  # cannot happen: one patch-sized tile per axis is always an option
        raise ValueError(f"no tile plan for shape {shape} with patch {patch}")
    return best[1]
