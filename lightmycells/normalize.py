"""Intensity normalisation as symmetric pairs: ``before(x) -> (y, state)``, ``after(y, state)``.

The model sees ``before(image)``; ``after`` maps values in normalised units back to the
image's units with the state ``before`` stored (CSBDeep's convention). Every kind handles
degenerate images (constant, all zero) without dividing by zero: the scale falls back to 1.

Kinds (the manifest's ``input_norm``, see :func:`from_spec`):

- ``{"kind": "percentile", "low": 2.0, "high": 99.8}`` — ``(x - p_low) / (p_high - p_low)``,
  no clipping, as the challenge's evaluation normalises;
- ``{"kind": "zscore"}`` — ``(x - mean) / std``;
- ``{"kind": "minmax"}`` — ``(x - min) / (max - min)``;
- ``{"kind": "none"}`` — the image as float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: A spread below this (in image units) counts as a constant image: the scale becomes 1.
EPS = 1e-6


@dataclass(frozen=True)
class State:
    """What ``after`` needs to undo ``before``: ``x = y * scale + offset``."""

    offset: float
    scale: float


class Normalizer(Protocol):
    """A before/after pair."""

    def before(self, x: np.ndarray) -> tuple[np.ndarray, State]:
        """Normalise ``x``; return float32 values and the state that undoes it."""
        ...

    def after(self, y: np.ndarray, state: State) -> np.ndarray:
        """Map normalised values back to the units of the image ``before`` saw."""
        ...


def _apply(x: np.ndarray, offset: float, spread: float) -> tuple[np.ndarray, State]:
    scale = spread if spread > EPS else 1.0
    y = np.asarray(x, dtype=np.float32) - np.float32(offset)
    y *= np.float32(1.0 / scale)
    return y, State(offset=float(offset), scale=float(scale))


def _undo(y: np.ndarray, state: State) -> np.ndarray:
    return (np.asarray(y, np.float32) * np.float32(state.scale) + np.float32(state.offset)).astype(
        np.float32, copy=False
    )


@dataclass(frozen=True)
class Percentile:
    """``(x - p_low) / (p_high - p_low)`` with percentiles of the whole image, no clipping."""

    low: float = 2.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100 "
                             f"(got low={self.low}, high={self.high})")

    def before(self, x: np.ndarray) -> tuple[np.ndarray, State]:
        """Normalise by the image's own ``low``/``high`` percentiles."""
        p_low, p_high = np.percentile(x, [self.low, self.high])
        return _apply(x, p_low, p_high - p_low)

    def after(self, y: np.ndarray, state: State) -> np.ndarray:
        """Undo :meth:`before`."""
        return _undo(y, state)


@dataclass(frozen=True)
class ZScore:
    """``(x - mean) / std`` over the whole image."""

    def before(self, x: np.ndarray) -> tuple[np.ndarray, State]:
        """Normalise to zero mean and unit standard deviation."""
        x64 = np.asarray(x, np.float64)
        return _apply(x, x64.mean(), x64.std())

    def after(self, y: np.ndarray, state: State) -> np.ndarray:
        """Undo :meth:`before`."""
        return _undo(y, state)


@dataclass(frozen=True)
class MinMax:
    """``(x - min) / (max - min)`` over the whole image."""

    def before(self, x: np.ndarray) -> tuple[np.ndarray, State]:
        """Normalise to the range [0, 1]."""
        lo, hi = float(np.min(x)), float(np.max(x))
        return _apply(x, lo, hi - lo)

    def after(self, y: np.ndarray, state: State) -> np.ndarray:
        """Undo :meth:`before`."""
        return _undo(y, state)


@dataclass(frozen=True)
class Identity:
    """No normalisation: the image as float32."""

    def before(self, x: np.ndarray) -> tuple[np.ndarray, State]:
        """Return ``x`` as float32."""
        return np.asarray(x, np.float32), State(offset=0.0, scale=1.0)

    def after(self, y: np.ndarray, state: State) -> np.ndarray:
        """Return ``y`` as float32."""
        return np.asarray(y, np.float32)


#: ``kind`` → (class, accepted parameter keys besides ``kind``).
KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "percentile": (Percentile, ("low", "high")),
    "zscore": (ZScore, ()),
    "minmax": (MinMax, ()),
    "none": (Identity, ()),
}


def from_spec(spec: Mapping[str, Any]) -> Normalizer:
    """Build a normaliser from a manifest ``input_norm`` mapping.

    Raises
    ------
    ValueError
        For a missing or unknown ``kind``, an unknown key, or a non-numeric parameter,
        naming it and what is accepted.
    """
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"input_norm kind {kind!r} is not supported "
                         f"(expected one of {', '.join(KINDS)})")
    cls, keys = KINDS[kind]
    unknown = sorted(set(spec) - {"kind", *keys})
    if unknown:
        accepted = ", ".join(("kind", *keys))
        raise ValueError(f"input_norm '{kind}' has unknown key {unknown[0]!r} "
                         f"(accepted: {accepted})")
    params = {}
    for key in keys:
        if key in spec:
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"input_norm '{kind}' key {key!r} must be a number "
                                 f"(got {value!r})")
            params[key] = float(value)
    normalizer: Normalizer = cls(**params)
    return normalizer
