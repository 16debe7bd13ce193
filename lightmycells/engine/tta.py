"""Dihedral test-time augmentation: predict on transformed copies, invert each, average.

The 8 transforms of the square's symmetry group (4 rotations × optional horizontal flip)
act on the last two axes, so they work on ``(Y, X)`` inputs and ``(C, Y, X)`` outputs alike
and on non-square images (a 90° rotation swaps Y and X; the inverse swaps them back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_AXES = (-2, -1)


@dataclass(frozen=True)
class Transform:
    """Rotate by ``quarter_turns`` × 90° (counter-clockwise), then flip X if ``flip``."""

    quarter_turns: int
    flip: bool

    @property
    def name(self) -> str:
        """Short label such as ``rot90+flip``."""
        return f"rot{90 * self.quarter_turns}" + ("+flip" if self.flip else "")

    def apply(self, a: np.ndarray) -> np.ndarray:
        """Transform the last two axes of ``a`` (returns a contiguous copy)."""
        out = np.rot90(a, self.quarter_turns, axes=_AXES)
        if self.flip:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    def invert(self, a: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` on the last two axes (a view where possible)."""
        if self.flip:
            a = a[..., ::-1]
        return np.rot90(a, -self.quarter_turns, axes=_AXES)


#: All 8 dihedral transforms; the first is the identity.
DIHEDRAL: tuple[Transform, ...] = tuple(
    Transform(k, flip) for flip in (False, True) for k in range(4)
)


def predict_tta(
    image: np.ndarray,
    predict_image: Callable[[np.ndarray], np.ndarray],
    transforms: Sequence[Transform] = DIHEDRAL,
) -> np.ndarray:
    """Average ``predict_image`` over transformed copies of ``image``, each exactly inverted.

    Parameters
    ----------
    image:
        ``(Y, X)`` input.
    predict_image:
        ``(Y', X') -> (C, Y', X')`` float32 (for example a tiled model).
    transforms:
        Which transforms to average (default all 8).

    Returns
    -------
    np.ndarray
        ``(C, Y, X)`` float32 mean of the inverted predictions. Memory: one accumulator
        plus one prediction.
    """
    if not transforms:
        raise ValueError("predict_tta needs at least one transform")
    total: np.ndarray | None = None
    for transform in transforms:
        pred = transform.invert(predict_image(transform.apply(image)))
        if total is None:
            total = np.array(pred, dtype=np.float32)  # a fresh, writable copy
        else:
            total += pred
    assert total is not None
    total /= np.float32(len(transforms))
    return total
