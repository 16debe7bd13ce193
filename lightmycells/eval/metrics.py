"""The Light My Cells challenge metrics, as pure numpy functions.

The official evaluation (France-BioImaging's ``evaluation.py``) percentile-normalises both
images (2 / 99.8, no clipping) and then calls SciPy's ``pearsonr``, scikit-image's
``structural_similarity``, and scikit-learn's ``mean_absolute_error``,
``euclidean_distances`` and ``cosine_distances``. The functions here compute the same
numbers (tests hold them to the reference libraries at 1e-9) with less work:

- percentiles: four single-rank selections on one copy instead of two ``np.percentile``
  calls, with NumPy's own interpolation formula so the values are bit-identical;
- SSIM: the mean over the cropped map only needs the 7×7 box means of interior pixels,
  whose windows never touch the border, so they are computed in row bands that stay in
  cache, with no border handling and in-place arithmetic;
- one float64 copy of each image shared by all five metrics in :func:`score`.

All metrics are symmetric in their two arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lightmycells.engine.normalize import percentiles
from lightmycells.vocab import METRICS, Metric, Organelle

#: Percentiles of the official normalisation.
LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 99.8
#: scikit-image ``structural_similarity`` defaults: 7×7 uniform window, K1, K2,
#: sample covariance.
SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Output rows of the SSIM map per band: 5 float64 planes of (band + 6) × width, ~5 MB
# for a 2048-pixel-wide image (measured fastest among 16…256 on a 2048² pair).
_SSIM_BAND_ROWS = 64


def percentile_normalize(
    x: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> np.ndarray:
    """``(x - p_low) / (p_high - p_low)`` with NumPy's linear percentiles, no clipping.

    Reproduces the official ``percentile_normalization`` bit for bit, including its
    dtype: float32 images stay float32 (NumPy computes a scalar percentile of a float32
    array in float32), integer images become float64. When both percentiles are equal
    the image is returned unchanged (the official code does the same).

    Parameters
    ----------
    x:
        Image of any shape, integer or floating point, not empty.
    low, high:
        Percentiles in [0, 100], ``low < high``.

    Raises
    ------
    ValueError
        For an empty image or invalid percentiles.
    """
    x = np.asarray(x)
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100 (got {low}, {high})")
    lo, hi = percentiles(x, (low, high))
    if lo == hi:
        return x
    return (x - lo) / (hi - lo)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two 1D float64 arrays, single-threaded.

    ``np.dot`` goes to BLAS, whose threads thrash when evaluation workers already use every
    core (measured 5 ms instead of 0.02 ms per 256² dot under load); einsum's own loop is
    single-threaded, deterministic and within 1.4x of BLAS on one core.
    """
    return float(np.einsum("i,i->", a, b))


def _as_float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, ground truth {gt.shape}")
    if pred.size < 2:
        raise ValueError(f"images need at least 2 pixels (got shape {pred.shape})")


def pcc(pred: np.ndarray, gt: np.ndarray) -> float:
    """Pearson correlation of the flattened images; 0 when either image is constant.

    Equals ``scipy.stats.pearsonr(gt.ravel(), pred.ravel())[0]`` with NaN mapped to 0, as
    the official evaluation does.
    """
    x, y = _as_float64(pred).reshape(-1), _as_float64(gt).reshape(-1)
    _check_pair(x, y)
    mx, my = float(x.mean()), float(y.mean())
    xm, ym = x - mx, y - my
    sxx, syy = _dot(xm, xm), _dot(ym, ym)
    if _is_constant(x, sxx, mx) or _is_constant(y, syy, my):
        return 0.0  # pearsonr gives NaN; the official evaluation records 0
    r = _dot(xm, ym) / math.sqrt(sxx * syy)
    return min(max(r, -1.0), 1.0)


def _is_constant(v: np.ndarray, centered_sum_sq: float, mean: float) -> bool:
    """Whether all of ``v`` are equal, given its sum of squared deviations from ``mean``."""
    # A constant vector leaves only the rounding error of its mean (far below 1e-10 of it)
    # in each deviation; only below that bound is the exact (slower) check needed.
    if centered_sum_sq > v.size * (1e-10 * abs(mean)) ** 2:
        return False
    return bool(v.min() == v.max())


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error (``sklearn.metrics.mean_absolute_error``)."""
    x, y = _as_float64(pred), _as_float64(gt)
    _check_pair(x, y)
    d = x - y
    np.abs(d, out=d)
    return float(d.mean())


def e_dist(pred: np.ndarray, gt: np.ndarray) -> float:
    """Euclidean distance of the flattened images (``euclidean_distances``).

    Computed as ``sqrt(sum((x - y)**2))``; scikit-learn expands it as
    ``|x|² - 2x·y + |y|²``, which loses digits when the images are nearly identical, so
    there the two differ by up to ~1e-8 · |x| and this one is the accurate value.
    """
    x, y = _as_float64(pred).reshape(-1), _as_float64(gt).reshape(-1)
    _check_pair(x, y)
    d = x - y
    return math.sqrt(_dot(d, d))


def c_dist(pred: np.ndarray, gt: np.ndarray) -> float:
    """Absolute cosine distance ``|1 - x·y / (|x| |y|)|`` of the flattened images.

    Like ``sklearn.metrics.pairwise.cosine_distances``: a zero image has similarity 0,
    and the distance is clipped to [0, 2].
    """
    x, y = _as_float64(pred).reshape(-1), _as_float64(gt).reshape(-1)
    _check_pair(x, y)
    nx, ny = math.sqrt(_dot(x, x)), math.sqrt(_dot(y, y))
    similarity = _dot(x, y) / (nx * ny) if nx > 0 and ny > 0 else 0.0
    return abs(min(max(1.0 - similarity, 0.0), 2.0))


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity of two 2D images, as scikit-image computes it.

    Equals ``skimage.metrics.structural_similarity(gt, pred, data_range=data_range)``
    with its defaults: 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, the
    mean over the map without a 3-pixel border. NaN when ``data_range`` is 0 (two
    constant images), as scikit-image gives for most constants.

    Parameters
    ----------
    pred, gt:
        2D images of the same shape, at least 7×7.
    data_range:
        Defaults to the official choice ``max(range(pred), range(gt))``.

    Raises
    ------
    ValueError
        For different shapes, non-2D images or images smaller than the window.
    """
    x, y = _as_float64(pred), _as_float64(gt)
    _check_pair(x, y)
    if x.ndim != 2:
        raise ValueError(f"SSIM needs 2D images (got shape {x.shape})")
    if min(x.shape) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}×{SSIM_WIN} (got {x.shape})")
    if data_range is None:
        data_range = max(float(np.ptp(x)), float(np.ptp(y)))
    if data_range == 0:
        # Two constant images: every map value is 0/0. scikit-image returns NaN for most
        # constants, or whatever its rounding leaves for a few; NaN is the defined answer.
        return math.nan
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    rows = x.shape[0] - SSIM_WIN + 1  # map rows whose window lies inside the image
    total = 0.0
    for start in range(0, rows, _SSIM_BAND_ROWS):
        stop = min(start + _SSIM_BAND_ROWS, rows)
        total += _ssim_band_sum(x[start : stop + SSIM_WIN - 1],
                                y[start : stop + SSIM_WIN - 1], c1, c2)
    return total / (rows * (x.shape[1] - SSIM_WIN + 1))


def _window_sums(a: np.ndarray, axis: int) -> np.ndarray:
    """Sums of ``SSIM_WIN`` consecutive elements along ``axis``, where the window fits."""
    n = a.shape[axis] - SSIM_WIN + 1
    index = [slice(None)] * a.ndim

    def shifted(k: int) -> np.ndarray:
        index[axis] = slice(k, k + n)
        return a[tuple(index)]

    # w - 1 in-place adds of contiguous views: faster than a running sum on arrays this size
    out = shifted(0).copy()
    for k in range(1, SSIM_WIN):
        out += shifted(k)
    return out


def _ssim_band_sum(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> float:
    """Sum of the SSIM map over the interior of one band of rows (window fully inside)."""
    w = SSIM_WIN
    planes = np.empty((5, *x.shape))  # x, y, x², y², xy  → (5, band + w - 1, W)
    planes[0], planes[1] = x, y
    np.multiply(x, x, out=planes[2])
    np.multiply(y, y, out=planes[3])
    np.multiply(x, y, out=planes[4])
    means = _window_sums(_window_sums(planes, axis=1), axis=2)  # (5, band, W - w + 1)
    means *= 1.0 / (w * w)
    ux, uy, uxx, uyy, uxy = means
    cov_norm = w * w / (w * w - 1)  # sample covariance, as scikit-image
    a1 = ux * uy  # (band, W - w + 1)
    uxy -= a1
    uxy *= 2 * cov_norm
    uxy += c2  # a2 = 2 vxy + C2
    np.square(ux, out=ux)
    np.square(uy, out=uy)
    uxx -= ux
    uyy -= uy
    uxx += uyy
    uxx *= cov_norm
    uxx += c2  # b2 = vx + vy + C2
    ux += uy
    ux += c1  # b1 = ux² + uy² + C1
    a1 *= 2
    a1 += c1  # a1 = 2 ux uy + C1
    a1 *= uxy
    ux *= uxx
    a1 /= ux
    return float(a1.sum())


#: Metric → function of two normalised float64 images, for :func:`score` (SSIM also takes
#: the data range).
METRIC_FUNCTIONS: dict[Metric, Callable[..., float]] = {
    Metric.MAE: mae, Metric.SSIM: ssim, Metric.PCC: pcc, Metric.E_DIST: e_dist,
    Metric.C_DIST: c_dist,
}


def score(pred: np.ndarray, gt: np.ndarray, organelle: Organelle | str) -> dict[Metric, float]:
    """Normalise both images and return the metrics the challenge computes for ``organelle``.

    Parameters
    ----------
    pred, gt:
        Prediction and ground truth, same 2D shape, any real dtype, raw scale.
    organelle:
        Decides the metrics (``lightmycells.vocab.METRICS``): all five for nucleus and
        mitochondria, SSIM and PCC for tubulin and actin.

    Returns
    -------
    dict
        Metric name → value, in the order of ``METRICS[organelle]``.

    Raises
    ------
    ValueError
        For different shapes, an unknown organelle or images too small for SSIM.
    """
    names = METRICS[Organelle(organelle)]
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, ground truth {gt.shape}")
    x, y = percentile_normalize(pred), percentile_normalize(gt)
    # The official data range is taken before any conversion, i.e. in float32 for a
    # float32 image; C1 and C2 (hence SSIM) depend on it at the 1e-10 level.
    data_range = float(max(np.ptp(x), np.ptp(y)))
    x, y = _as_float64(x), _as_float64(y)
    out = {}
    for name in names:
        if name == Metric.SSIM:
            out[name] = ssim(x, y, data_range=data_range)
        else:
            out[name] = METRIC_FUNCTIONS[name](x, y)
    return out
