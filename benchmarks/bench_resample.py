"""Resampling cost: the engine's NumPy resampler against SimpleITK's, side by side.

Usage: PYTHONPATH=. python benchmarks/bench_resample.py [--size 2048] [--repeat 3]

Each row resamples one ``size``² float32 plane (smooth noise, like a normalised image) from a
real microscope's pixel size to the shipped models' 0.1 µm (cubic B-spline, anti-aliased when
shrinking), and the model's output back onto the input grid (linear). Best-of-N wall time of
``resample.to_pixel_size`` / ``back_to_grid`` and of SimpleITK doing the same (what the engine
ran before: a recursive Gaussian, then ``ResampleImageFilter``), their ratio, and the largest
difference as a fraction of the plane's range. SimpleITK uses every CPU it sees.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lightmycells.engine import resample


def simpleitk_resample(plane: np.ndarray, from_um: tuple[float, float],
                       shape: tuple[int, int], to_um: tuple[float, float], interpolator: int,
                       smooth: bool) -> np.ndarray:
    """SimpleITK's resampling of ``plane`` onto ``shape`` pixels of ``to_um`` (pixel centres
    at ``(i + ½)·size``, nearest extrapolation), optionally after SimpleITK's recursive
    Gaussian of σ = (factor - 1)/2 pixels on each shrinking axis."""
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(np.ascontiguousarray(plane, np.float32))
    image.SetSpacing((from_um[1], from_um[0]))  # SimpleITK orders axes x, y
    image.SetOrigin((from_um[1] / 2, from_um[0] / 2))
    for axis in (0, 1):
        sigma_um = (to_um[axis] / from_um[axis] - 1) / 2 * from_um[axis]
        if smooth and sigma_um > 0:
            image = sitk.RecursiveGaussian(image, sigma_um, False,
                                           sitk.RecursiveGaussianImageFilter.ZeroOrder, 1 - axis)
    f = sitk.ResampleImageFilter()
    f.SetSize((shape[1], shape[0]))
    f.SetOutputSpacing((to_um[1], to_um[0]))
    f.SetOutputOrigin((to_um[1] / 2, to_um[0] / 2))
    f.SetInterpolator(interpolator)
    f.SetUseNearestNeighborExtrapolator(True)
    f.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(f.Execute(image))


def best_of(repeat: int, func) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - start)
    return best, out


def plane(size: int) -> np.ndarray:
    """Smooth noise (a box-blurred field plus a ramp), float32."""
    rng = np.random.default_rng(0)
    field = rng.standard_normal((size + 4, size + 4)).astype(np.float32)
    field = sum(field[i : i + size, j : j + size] for i in range(5) for j in range(5)) / 5
    return field + np.linspace(0, 1, size, dtype=np.float32)[None, :]


def rows(image: np.ndarray, um: float, repeat: int) -> list[tuple]:
    """The two table rows (in, back) for an image of ``um`` pixels and the 0.1 µm model."""
    import SimpleITK as sitk
    size_um, model_um = (um, um), (0.1, 0.1)
    grid = resample.model_shape(image.shape, size_um, model_um)
    ours, there = best_of(repeat, lambda: resample.to_pixel_size(image, size_um, model_um))
    theirs, ref = best_of(repeat, lambda: simpleitk_resample(
        image, size_um, grid, model_um, sitk.sitkBSpline, smooth=True))
    found = [("in (cubic)", grid, ours, theirs, np.abs(there - ref).max())]
    ours, back = best_of(repeat, lambda: resample.back_to_grid(there, image.shape, model_um,
                                                               size_um))
    theirs, ref = best_of(repeat, lambda: simpleitk_resample(
        there, model_um, image.shape, size_um, sitk.sitkLinear, smooth=True))
    return [*found, ("back (linear)", image.shape, ours, theirs, np.abs(back - ref).max())]


def main() -> None:
    import SimpleITK as sitk
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    image = plane(args.size)
    span = float(np.ptp(image))
    print(f"{args.size}² float32, best of {args.repeat}; SimpleITK threads: "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")
    print("| direction | µm | pixels | NumPy s | SimpleITK s | SimpleITK ÷ NumPy "
          "| max diff ÷ range |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for um in (0.065, 0.0718, 0.162):
        for name, shape, ours, theirs, diff in rows(image, um, args.repeat):
            print(f"| {name} | {um} | {shape[0]}×{shape[1]} | {ours:.3f} | {theirs:.3f} "
                  f"| {theirs / ours:.1f} | {diff / span:.1e} |")


if __name__ == "__main__":
    main()
