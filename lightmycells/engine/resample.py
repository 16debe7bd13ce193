"""Pixel-size-aware inference: resample the input to the model's pixel size and back.

Both grids describe the same field of view: pixel ``i`` of an axis with ``n`` pixels of size
``s`` has its centre at ``(i + ½)·s`` µm, so the field spans ``[0, n·s]``. The model grid
keeps the model's pixel size exactly and rounds the pixel count; ``back_to_grid`` samples
the prediction at the input's own pixel centres, extending by the edge value over the last
half pixel, so the result lands exactly on the input grid. Downsampling low-pass filters
first (a Gaussian of σ = (factor − 1)/2 input pixels, as scikit-image's anti-aliasing) so
fine texture does not alias. :func:`check_factors` refuses a resampling that a wrong pixel
size would make absurd (a factor outside [1/64, 64] on an axis, or more than 128
megapixels).

Both directions are separable and done in NumPy, one axis at a time (an anisotropic pixel
smooths only the axes that shrink): the input by cubic B-spline (the textbook prefilter with
mirror boundaries, then four taps per output pixel), the prediction linearly (no
overshoot). The tests check them against SimpleITK's ``sitkBSpline`` and ``sitkLinear``,
which this module used until SimpleITK's spline measured at 3–6× this one's time
(``benchmarks/bench_resample.py``): resampling was most of the host's work per image,
which bounds a GPU's throughput.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


#: The cubic B-spline prefilter's pole, and its gain (1 - z)(1 - 1/z) (Unser, 1999).
_POLE = np.sqrt(3.0) - 2.0
_GAIN = 6.0
#: Terms of the causal filter's starting sum on long axes: |pole|^23 < 1e-13.
_HORIZON = 24


def _spline_coefficients(values: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients along axis 0 (mirror boundary), float32.

    The causal filter starts from the sum over the mirrored signal (exact for short axes;
    past :data:`_HORIZON` terms, below 1e-13, it is cut), the anti-causal one from its
    closed form; each step is one row operation over the other axis.
    """
    n = len(values)
    if n == 1:
        return values.astype(np.float32)
    c = values.astype(np.float32) * np.float32(_GAIN)
    z = np.float32(_POLE)
    if n > _HORIZON:
        c[0] = np.tensordot(_POLE ** np.arange(_HORIZON), c[:_HORIZON], axes=1)
    else:
        k = np.arange(n, dtype=np.float64)
        mirror = _POLE**k + np.where((k > 0) & (k < n - 1), _POLE ** (2 * n - 2 - k), 0.0)
        c[0] = np.tensordot(mirror / (1 - _POLE ** (2 * n - 2)), c, axes=1)
    for i in range(1, n):
        c[i] += z * c[i - 1]
    c[n - 1] = z / (z * z - 1) * (c[n - 1] + z * c[n - 2])
    for i in range(n - 2, -1, -1):
        c[i] -= c[i + 1]
        c[i] *= -z
    return c


def _smooth(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian smoothing along ``axis``, σ in pixels, edges repeated.

    The kernel is sampled to 4σ and normalised; taps under 1e-6 of the sum are left out.
    """
    radius = max(1, int(np.ceil(4 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    n = values.shape[axis]

    def along(start: int, stop: int) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop),)

    out = np.zeros(values.shape, np.float32)
    term = np.empty(values.shape, np.float32)
    for offset, w in zip(range(-radius, radius + 1), kernel.astype(np.float32), strict=True):
        if w < 1e-6:
            continue
        k = min(abs(offset), n)  # out[i] += w·values[i + offset]; the edge value beyond
        if offset >= 0:
            np.multiply(values[along(k, n)], w, out=term[along(0, n - k)])
            term[along(n - k, n)] = w * values[along(n - 1, n)]
        else:
            np.multiply(values[along(0, n - k)], w, out=term[along(k, n)])
            term[along(0, k)] = w * values[along(0, 1)]
        out += term
    return out


def _positions(count: int, step: float, n: int, shift: float = 0.0) -> np.ndarray:
    """Input coordinates of ``count`` output pixel centres: ``(j + ½)·step - ½ + shift``.

    ``shift`` places a region: (first output pixel) × step − (first input pixel). Clipped to
    the input's half-pixel border.
    """
    return np.clip((np.arange(count) + 0.5) * step - 0.5 + shift, -0.5, n - 0.5)


def _cubic_taps(p: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(index, weight) per tap of the cubic B-spline at positions ``p``, mirrored indices."""
    first = np.floor(p).astype(np.intp) - 1
    t = p - (first + 1)
    weights = ((1 - t) ** 3, 4 - 6 * t**2 + 3 * t**3, 1 + 3 * t + 3 * t**2 - 3 * t**3, t**3)
    period = max(1, 2 * (n - 1))
    taps = []
    for offset, w in enumerate(weights):
        index = (first + offset) % period
        taps.append((np.where(index > n - 1, period - index, index), w))  # -1 → 1, n → n - 2
    return taps


def _cubic_axis0(values: np.ndarray, count: int, step: float,
                 shift: float = 0.0) -> np.ndarray:
    """Cubic B-spline samples along axis 0: ``count`` pixels of ``step`` input pixels.

    A step over 1 shrinks the axis, which is first smoothed with σ = (step - 1)/2 pixels.
    """
    n = len(values)
    if step > 1 and n >= 4:
        values = _smooth(values, (step - 1) / 2, axis=0)
    c = _spline_coefficients(values)
    out = np.zeros((count, *values.shape[1:]), np.float32)
    for index, w in _cubic_taps(_positions(count, step, n, shift), n):
        term = c[index]
        term *= (w / 6).astype(np.float32)[:, None]
        out += term
    return out


def _linear_axis(values: np.ndarray, count: int, step: float, axis: int) -> np.ndarray:
    """Linear samples along ``axis``; the edge value beyond the outer centres.

    Smoothed first when the axis shrinks, as in :func:`_cubic_axis0`.
    """
    n = values.shape[axis]
    if step > 1 and n >= 4:
        values = _smooth(values, (step - 1) / 2, axis)
    p = np.clip(_positions(count, step, n), 0, n - 1)
    low = np.minimum(np.floor(p).astype(np.intp), max(n - 2, 0))
    shape = [1] * values.ndim
    shape[axis] = count
    out = values.take(low, axis=axis).astype(np.float32, copy=False)
    step_up = values.take(np.minimum(low + 1, n - 1), axis=axis).astype(np.float32, copy=False)
    step_up -= out
    step_up *= (p - low).astype(np.float32).reshape(shape)
    out += step_up
    return out


def _resample(plane: np.ndarray, spacing: PixelSize, shape: tuple[int, int],
              new_spacing: PixelSize, cubic: bool,
              shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """One ``(Y, X)`` plane onto ``shape`` pixels of ``new_spacing``: rows, then columns.

    The spline's prefilter runs along rows, so its column pass works on a transposed copy.
    ``shift`` (cubic only): see :func:`_positions`, per axis.
    """
    steps = new_spacing[0] / spacing[0], new_spacing[1] / spacing[1]
    plane = np.ascontiguousarray(plane, np.float32)  # the tiler returns a cropped view
    if not cubic:
        return _linear_axis(_linear_axis(plane, shape[0], steps[0], 0), shape[1], steps[1], 1)
    rows = _cubic_axis0(plane, shape[0], steps[0], shift[0])
    cols = _cubic_axis0(np.ascontiguousarray(rows.T), shape[1], steps[1], shift[1])
    return np.ascontiguousarray(cols.T)


#: Input pixels read beyond a region on each side (besides the smoothing's radius): the
#: spline prefilter's influence decays as 0.268^k, 2e-7 after 12 pixels, and 4 taps reach 2.
REGION_MARGIN = 14


def input_span(start: int, stop: int, n: int, from_um: float, to_um: float) -> tuple[int, int]:
    """Input pixels ``[a, b)`` of an axis of ``n`` that output pixels ``[start, stop)`` need.

    Their spline taps, the anti-aliasing and a margin, at ``to_um`` from ``from_um``; clipped
    to the axis.
    """
    step = to_um / from_um
    radius = max(1, int(np.ceil(4 * (step - 1) / 2))) if step > 1 else 0
    reach = REGION_MARGIN + radius
    first = (start + 0.5) * step - 0.5
    last = (stop - 0.5) * step - 0.5
    return max(0, int(np.floor(first)) - reach), min(n, int(np.ceil(last)) + reach + 1)


def region_to_pixel_size(region: np.ndarray, from_um: float | Sequence[float],
                         to_um: float | Sequence[float], *, full_shape: tuple[int, int],
                         region_start: tuple[int, int], out_start: tuple[int, int],
                         out_shape: tuple[int, int]) -> np.ndarray:
    """A crop of a whole plane's :func:`to_pixel_size`, made from a region of the plane.

    The crop is pixels ``[out_start, out_start + out_shape)`` of the resampled plane of
    ``full_shape``; ``region``'s pixel ``[0, 0]`` is the plane's ``region_start``, and it
    must cover :func:`input_span` on both axes.

    Equal to cropping the whole plane's resampling to ~1e-6 of the range: where the region
    touches the plane's edge it sees the same edge, elsewhere the margin hides its own.
    """
    src, dst = _pair(from_um), _pair(to_um)
    for axis in (0, 1):
        need = input_span(out_start[axis], out_start[axis] + out_shape[axis],
                          full_shape[axis], src[axis], dst[axis])
        have = (region_start[axis], region_start[axis] + region.shape[axis])
        if have[0] > need[0] or have[1] < need[1]:
            raise ValueError(f"region {have} on axis {axis} does not cover {need}")
    shift = tuple(out_start[a] * dst[a] / src[a] - region_start[a] for a in (0, 1))
    return _resample(region, src, out_shape, dst, cubic=True, shift=shift)


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
    return _resample(image, _pair(from_um), shape, _pair(to_um), cubic=True)


def back_to_grid(pred: np.ndarray, shape: tuple[int, int], from_um: float | Sequence[float],
                 to_um: float | Sequence[float]) -> np.ndarray:
    """Resample a ``(C, y, x)`` or ``(y, x)`` prediction onto the input's exact grid.

    ``from_um`` is the prediction's pixel size, ``shape`` and ``to_um`` the input's. Linear
    interpolation: no overshoot.
    """
    planes = pred[None] if pred.ndim == 2 else pred
    grid = (int(shape[0]), int(shape[1]))
    out = np.stack([_resample(p, _pair(from_um), grid, _pair(to_um), cubic=False)
                    for p in planes])
    return out[0] if pred.ndim == 2 else out
