"""Reduce a ``ZYX`` focus stack to one ``YX`` plane: the sharpest plane, or the maximum projection.

The focus measure is the normalised variance ``var / mean`` of each plane (Groen, Young &
Ligthart 1985): the variance of an in-focus transmitted-light image is highest, and dividing
by the mean keeps a merely brighter plane from winning as easily as with plain variance.

:class:`Trained` is how a model's training reduced its Z-stacks (the manifest's ``zstack``);
:data:`REDUCTION` maps it to the reduction the container applies to a Z-stack input.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

MODES = ("best", "mip")


class Trained(StrEnum):
    """What a model was trained on (manifest ``zstack``): planes, projections or best planes."""

    PLANE = "plane"  # every plane of a stack is a sample: any in-focus plane is in distribution
    MIP = "mip"  # the maximum projection of the stack
    BEST = "best"  # the best-focus plane of the stack


#: Reduction of a Z-stack input for a model trained as the key says. A model trained on
#: single planes gets the sharpest one, the container's default.
REDUCTION: dict[Trained, str] = {Trained.PLANE: "best", Trained.MIP: "mip",
                                 Trained.BEST: "best"}


def focus_scores(stack: np.ndarray) -> np.ndarray:
    """Normalised variance of each plane of a ``(Z, Y, X)`` stack (0 for an all-zero plane)."""
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) stack (got shape {stack.shape})")
    scores = np.empty(stack.shape[0])
    for z, plane in enumerate(stack):  # plane by plane: no float64 copy of the whole stack
        plane64 = plane.astype(np.float64)
        mean = abs(plane64.mean())
        scores[z] = plane64.var() / mean if mean > 0 else plane64.var()
    return scores


def best_plane(stack: np.ndarray) -> int:
    """Index of the sharpest plane (highest normalised variance; first one on ties)."""
    return int(np.argmax(focus_scores(stack)))


def reduce(stack: np.ndarray, mode: str) -> np.ndarray:
    """Reduce ``(Z, Y, X)`` to ``(Y, X)``: ``"best"`` plane or ``"mip"`` (maximum projection).

    A 2D input is returned unchanged. Per-plane prediction (``--zstack all``) is the caller's
    loop over planes, not a reduction.
    """
    if mode not in MODES:
        raise ValueError(f"unknown z-stack mode {mode!r} (expected one of {', '.join(MODES)})")
    if stack.ndim == 2:
        return stack
    if mode == "best":
        return stack[best_plane(stack)]
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) stack (got shape {stack.shape})")
    return stack.max(axis=0)
