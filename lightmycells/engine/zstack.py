"""Z-stacks: what to do with one (:class:`ZStack`), and reducing ``ZYX`` to one ``YX`` plane.

The focus measure is the normalised variance ``var / mean`` of each plane (Groen, Young &
Ligthart 1985): the variance of an in-focus transmitted-light image is highest, and dividing
by the mean keeps a merely brighter plane from winning as easily as with plain variance.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class ZStack(StrEnum):
    """What happens to a focus stack: the one z-stack vocabulary of inference and training.

    Inference (``--zstack``) takes :data:`INFERENCE`; a model's training (``data.zstack`` in
    a training config, ``zstack`` in its manifest entry) takes :data:`TRAINED`.
    """

    BEST = "best"
    """The in-focus plane: the sharpest by :func:`best_plane` at inference, the plane
    ``best_z.csv`` names (else the middle one) in training."""
    MIP = "mip"
    """The maximum-intensity projection of all planes."""
    ALL = "all"
    """Inference: predict every plane on its own (the caller's loop, not a reduction)."""
    PLANE = "plane"
    """Training: any single plane (a random one per sample; focus as augmentation)."""


#: What :func:`reduce` implements: stack → one plane.
REDUCTIONS = (ZStack.BEST, ZStack.MIP)
#: ``--zstack`` choices.
INFERENCE = (ZStack.BEST, ZStack.MIP, ZStack.ALL)
#: What a model can have been trained on.
TRAINED = (ZStack.PLANE, ZStack.MIP, ZStack.BEST)
#: Reduction of a Z-stack input for a model trained as the key says: a model trained on
#: single planes gets the sharpest one, the container's default.
REDUCTION: dict[ZStack, ZStack] = {ZStack.PLANE: ZStack.BEST, ZStack.MIP: ZStack.MIP,
                                   ZStack.BEST: ZStack.BEST}


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


def reduce(stack: np.ndarray, mode: ZStack | str) -> np.ndarray:
    """Reduce ``(Z, Y, X)`` to ``(Y, X)``: the ``best`` plane or the ``mip`` (maximum projection).

    A 2D input is returned unchanged. Per-plane prediction (``ZStack.ALL``) is the caller's
    loop over planes, not a reduction.
    """
    if mode not in REDUCTIONS:
        raise ValueError(f"z-stack mode {mode!r} is not a reduction "
                         f"(expected one of {', '.join(REDUCTIONS)})")
    if stack.ndim == 2:
        return stack
    if mode == ZStack.BEST:
        return stack[best_plane(stack)]
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) stack (got shape {stack.shape})")
    return stack.max(axis=0)
