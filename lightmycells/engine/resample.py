"""Pixel-size-aware inference: resample the input to the model's pixel size and back (SimpleITK).

Both grids describe the same field of view: pixel ``i`` of an axis with ``n`` pixels of size
``s`` has its centre at ``(i + ½)·s`` µm, so the field spans ``[0, n·s]``. The model grid
keeps the model's pixel size exactly and rounds the pixel count; ``back_to_grid`` samples
the prediction at the input's own pixel centres, extrapolating by the nearest value at the
last half pixel, so the result lands exactly on the input grid. Downsampling low-pass
filters first (σ = (factor − 1)/2 input pixels, as scikit-image's anti-aliasing) so fine
texture does not alias.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

#: Relative pixel-size difference above which the input is resampled.
TOLERANCE = 0.05

PixelSize = tuple[float, float]


def _pair(size: float | Sequence[float]) -> PixelSize:
    pair = (size, size) if isinstance(size, int | float) else tuple(size)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"pixel size must be positive, as one value or (y, x) (got {size!r})")
    return float(pair[0]), float(pair[1])


def needs_resampling(image_um: float | Sequence[float], model_um: float | Sequence[float],
                     tolerance: float = TOLERANCE) -> bool:
    """True when the image's pixel size differs from the model's by more than ``tolerance``."""
    image, model = _pair(image_um), _pair(model_um)
    return any(abs(i / m - 1.0) > tolerance for i, m in zip(image, model, strict=True))


def _to_sitk(plane: np.ndarray, spacing: PixelSize) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(plane, np.float32))
    image.SetSpacing((spacing[1], spacing[0]))  # SimpleITK orders axes x, y
    image.SetOrigin((spacing[1] / 2, spacing[0] / 2))
    return image


def _resample(plane: np.ndarray, spacing: PixelSize, shape: tuple[int, int],
              new_spacing: PixelSize, interpolator: int) -> np.ndarray:
    image = _to_sitk(plane, spacing)
    factors = [n / o for n, o in zip(new_spacing, spacing, strict=True)]  # > 1: shrinking
    if max(factors) > 1 and min(plane.shape) >= 4:
        sigma_px = [max(0.0, (f - 1) / 2) for f in factors]  # (y, x), in input pixels
        sigma_um = [sigma_px[1] * spacing[1], sigma_px[0] * spacing[0]]
        image = sitk.SmoothingRecursiveGaussian(image, sigma_um)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize((shape[1], shape[0]))
    resampler.SetOutputSpacing((new_spacing[1], new_spacing[0]))
    resampler.SetOutputOrigin((new_spacing[1] / 2, new_spacing[0] / 2))
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetInterpolator(interpolator)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampler.Execute(image))


def model_shape(shape: tuple[int, int], from_um: float | Sequence[float],
                to_um: float | Sequence[float]) -> tuple[int, int]:
    """Pixel counts of the same field of view at pixel size ``to_um`` (rounded, at least 1)."""
    src, dst = _pair(from_um), _pair(to_um)
    return (max(1, round(shape[0] * src[0] / dst[0])), max(1, round(shape[1] * src[1] / dst[1])))


def to_pixel_size(image: np.ndarray, from_um: float | Sequence[float],
                  to_um: float | Sequence[float]) -> np.ndarray:
    """Resample a ``(Y, X)`` image from pixel size ``from_um`` to ``to_um`` (cubic B-spline)."""
    if image.ndim != 2:
        raise ValueError(f"expected a (Y, X) image (got shape {image.shape})")
    shape = model_shape(image.shape, from_um, to_um)
    return _resample(image, _pair(from_um), shape, _pair(to_um), sitk.sitkBSpline)


def back_to_grid(pred: np.ndarray, shape: tuple[int, int], from_um: float | Sequence[float],
                 to_um: float | Sequence[float]) -> np.ndarray:
    """Resample a ``(C, y, x)`` or ``(y, x)`` prediction onto the input's exact grid.

    ``from_um`` is the prediction's pixel size, ``shape`` and ``to_um`` the input's. Linear
    interpolation: no overshoot.
    """
    planes = pred[None] if pred.ndim == 2 else pred
    grid = (int(shape[0]), int(shape[1]))
    out = np.stack([_resample(p, _pair(from_um), grid, _pair(to_um), sitk.sitkLinear)
                    for p in planes])
    return out[0] if pred.ndim == 2 else out
