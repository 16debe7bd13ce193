"""Pixel-size-aware inference: resample the input to the model's pixel size and back (SimpleITK).

Both grids describe the same field of view: pixel ``i`` of an axis with ``n`` pixels of size
``s`` has its centre at ``(i + ½)·s`` µm, so the field spans ``[0, n·s]``. The model grid
keeps the model's pixel size exactly and rounds the pixel count; ``back_to_grid`` samples
the prediction at the input's own pixel centres, extrapolating by the nearest value at the
last half pixel, so the result lands exactly on the input grid. Downsampling low-pass
filters first (σ = (factor − 1)/2 input pixels, as scikit-image's anti-aliasing) so fine
texture does not alias; each axis on its own, so an anisotropic pixel smooths only the axes
that shrink. :func:`check_factors` refuses a resampling that a wrong pixel size would make
absurd (a factor outside [1/64, 64] on an axis, or more than 128 megapixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

#: Relative pixel-size difference above which the input is resampled.
TOLERANCE = 0.05
#: Largest per-axis zoom (either way): 64× covers 0.01 µm vs 0.65 µm pixels; beyond is a
#: wrong pixel size (nm read as µm), not a microscope.
MAX_FACTOR = 64.0
#: Largest resampled image, in pixels: the model input and each output channel are float32
#: copies of it (128 MP = 512 MiB each), e.g. 2048² at 0.55 µm against a 0.1 µm model.
MAX_PIXELS = 128 * 2**20


class ResampleError(ValueError):
    """A resampling refused as absurd; the message says the sizes and the limit."""

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
    factors = [n / o for n, o in zip(new_spacing, spacing, strict=True)]  # (y, x); > 1: shrinks
    for axis in (0, 1):  # SimpleITK's direction = 1 - axis; only shrinking axes are smoothed
        sigma_um = (factors[axis] - 1) / 2 * spacing[axis]  # σ in input pixels × their size
        if sigma_um > 0 and plane.shape[axis] >= 4:  # the recursive filter needs 4 pixels
            image = sitk.RecursiveGaussian(image, sigma_um, False,
                                           sitk.RecursiveGaussianImageFilter.ZeroOrder, 1 - axis)
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


def check_factors(shape: tuple[int, int], from_um: float | Sequence[float],
                  to_um: float | Sequence[float]) -> None:
    """Refuse a resampling of ``shape`` from ``from_um`` to ``to_um`` that cannot be meant.

    Raises
    ------
    ResampleError
        When an axis's zoom lies outside [1/:data:`MAX_FACTOR`, MAX_FACTOR] or the resampled
        image would hold more than :data:`MAX_PIXELS` pixels; one line with both sizes.
    """
    src, dst = _pair(from_um), _pair(to_um)
    sizes = f"{_text(src)} µm pixels to the model's {_text(dst)} µm"
    for s, d in zip(src, dst, strict=True):
        if not 1 / MAX_FACTOR <= s / d <= MAX_FACTOR:
            raise ResampleError(f"resampling {sizes} is a zoom of {s / d:.3g}x, outside "
                                f"[1/{MAX_FACTOR:g}, {MAX_FACTOR:g}]: check the file's pixel size "
                                f"(or run with --no-resample)")
    new = model_shape(shape, src, dst)
    if new[0] * new[1] > MAX_PIXELS:
        raise ResampleError(f"resampling {shape[0]}x{shape[1]} px from {sizes} makes "
                            f"{new[0]}x{new[1]} px, over the {MAX_PIXELS // 2**20} MP limit: "
                            f"check the file's pixel size (or run with --no-resample)")


def _text(pair: PixelSize) -> str:
    return f"{pair[0]:.4g}" if pair[0] == pair[1] else f"({pair[0]:.4g}, {pair[1]:.4g})"


def to_pixel_size(image: np.ndarray, from_um: float | Sequence[float],
                  to_um: float | Sequence[float]) -> np.ndarray:
    """Resample a ``(Y, X)`` image from pixel size ``from_um`` to ``to_um`` (cubic B-spline).

    Raises
    ------
    ResampleError
        For a resampling :func:`check_factors` refuses.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a (Y, X) image (got shape {image.shape})")
    check_factors(image.shape, from_um, to_um)
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
