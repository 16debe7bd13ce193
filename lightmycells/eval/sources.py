"""Where a scored prediction comes from: the model's files, or a baseline made from the input.

Baselines (``--baseline``, ``--floors``) are what a model must beat clearly: the input image
itself, and its Gaussian blur. Each is a registry entry: a description for the report and a
function ``input image -> prediction`` used for every organelle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from lightmycells.eval.errors import EvaluationError

#: Gaussian sigma (pixels) of the ``blur`` baseline: about a nucleus' edge width at
#: 0.1 µm/pixel, so it keeps the coarse layout of the input and drops its texture.
BLUR_SIGMA_PX = 4.0


class Source(StrEnum):
    """A prediction source; the value names it in the JSON file names and the report."""

    MODEL = "model"
    INPUT = "input"
    BLUR = "blur"


@dataclass(frozen=True)
class Baseline:
    """A prediction made from the input image alone."""

    description: str
    predict: Callable[[np.ndarray], np.ndarray]


def _input(image: np.ndarray) -> np.ndarray:
    return image


def _blur(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter  # 0.4 s of imports only when needed

    return gaussian_filter(image, BLUR_SIGMA_PX)


#: The baselines, by source.
BASELINES: dict[Source, Baseline] = {
    Source.INPUT: Baseline("the input image itself", _input),
    Source.BLUR: Baseline("the input's Gaussian blur", _blur),
}


def parse_baseline(name: str) -> Source:
    """The baseline called ``name``.

    Raises
    ------
    EvaluationError
        For a name that is not a baseline, listing the accepted ones.
    """
    if name not in BASELINES:
        raise EvaluationError(f"unknown baseline '{name}' "
                              f"(expected one of {', '.join(BASELINES)})")
    return Source(name)


def baseline_prediction(source: Source | str, image: np.ndarray) -> np.ndarray:
    """The baseline ``source``'s float32 prediction from the input ``image``, any organelle."""
    return BASELINES[parse_baseline(source)].predict(image.astype(np.float32))
