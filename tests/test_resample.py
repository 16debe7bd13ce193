import numpy as np
import pytest

from benchmarks.bench_resample import simpleitk_resample as _simpleitk
from lightmycells.engine import manifest, normalize, predictor, resample, runtime
from lightmycells.io.ome import ImageMeta
from tests import onnx_models


def _smooth(shape, pixel_um):
    """A smooth pattern defined in µm, sampled at pixel centres."""
    y = (np.arange(shape[0]) + 0.5) * pixel_um
    x = (np.arange(shape[1]) + 0.5) * pixel_um
    return (np.sin(y[:, None] / 1.7) * np.cos(x[None, :] / 2.3) + 0.1 * x[None, :]).astype(
        np.float32)


@pytest.mark.parametrize("image_um,model_um,expected", [
    (0.1, 0.1, False), (0.104, 0.1, False), (0.106, 0.1, True), ((0.1, 0.065), 0.1, True),
    (0.065, 0.1, True), (0.162, 0.1, True)])
def test_needs_resampling_beyond_five_percent(image_um, model_um, expected):
    assert resample.needs_resampling(image_um, model_um) is expected


def test_model_grid_keeps_the_field_of_view():
    assert resample.model_shape((2048, 2048), 0.065, 0.1) == (1331, 1331)
    assert resample.model_shape((966, 1296), (0.162, 0.162), 0.1) == (1565, 2100)
    assert resample.to_pixel_size(np.zeros((966, 1296), np.float32), 0.162, 0.1).shape == \
        (1565, 2100)


@pytest.mark.parametrize("from_um,to_um", [(0.065, 0.1), (0.162, 0.1)])
def test_values_land_at_the_right_physical_positions(from_um, to_um):
    image = _smooth((150, 170), from_um)
    out = resample.to_pixel_size(image, from_um, to_um)
    expected = _smooth(out.shape, to_um)
    inner = (slice(8, -8), slice(8, -8))  # away from the half-pixel border extrapolation
    assert np.abs(out[inner] - expected[inner]).max() < 0.02


def test_round_trip_returns_to_the_exact_input_grid():
    image = _smooth((200, 260), 0.08)
    there = resample.to_pixel_size(image, 0.08, 0.1)
    back = resample.back_to_grid(np.stack([there, 2 * there]), image.shape, 0.1, 0.08)
    assert back.shape == (2, 200, 260) and back.dtype == np.float32
    assert np.abs(back[0] - image)[4:-4, 4:-4].max() < 0.02
    np.testing.assert_allclose(back[1], 2 * back[0], rtol=1e-5, atol=1e-6)
    assert resample.back_to_grid(there, image.shape, 0.1, 0.08).shape == image.shape


def test_predictor_resamples_only_when_sizes_differ(tmp_path):
    folder = onnx_models.write_weights(tmp_path / "w", onnx_models.identity_model(1),
                                       organelles=["nucleus"], pixel_size_um=0.1,
                                       input_norm={"kind": "none"})
    m = manifest.load(folder)
    rt = runtime.Runtime("cpu", threads=1)
    image = _smooth((240, 300), 0.08)
    meta = ImageMeta("x", "YX", None, "unknown", (0.08, 0.08))
    on = predictor.Predictor(m, rt).predict(image, meta, ["nucleus"])["nucleus"]
    off = predictor.Predictor(m, rt, resample=False).predict(image, meta, ["nucleus"])["nucleus"]
    np.testing.assert_allclose(off, image, atol=1e-5)
    assert on.shape == image.shape
    err = np.abs(on - image)[4:-4, 4:-4].max()
    assert 1e-5 < err < 0.02  # resampled there and back: close, yet not a no-op
    near = ImageMeta("x", "YX", None, "unknown", (0.102, 0.102))  # within 5 %: untouched
    untouched = predictor.Predictor(m, rt).predict(image, near, ["nucleus"])["nucleus"]
    np.testing.assert_allclose(untouched, normalize.Identity().before(image)[0], atol=1e-5)


def _smooth_yx(shape, pixel_um):
    """:func:`_smooth` on an anisotropic (y, x) grid."""
    y = (np.arange(shape[0]) + 0.5) * pixel_um[0]
    x = (np.arange(shape[1]) + 0.5) * pixel_um[1]
    return (np.sin(y[:, None] / 1.7) * np.cos(x[None, :] / 2.3) + 0.1 * x[None, :]).astype(
        np.float32)


@pytest.mark.parametrize("from_um,to_um", [((0.05, 0.1), 0.1), ((0.1, 0.05), 0.1),
                                           ((0.05, 0.2), 0.1), ((0.2, 0.1), (0.1, 0.1))])
def test_anisotropic_pixels_resample_per_axis(from_um, to_um):
    """An axis that does not shrink gets no smoothing (SimpleITK used to refuse sigma 0)."""
    image = _smooth_yx((160, 150), from_um)
    out = resample.to_pixel_size(image, from_um, to_um)
    to = resample._pair(to_um)
    assert out.shape == (round(160 * from_um[0] / to[0]), round(150 * from_um[1] / to[1]))
    expected = _smooth_yx(out.shape, to)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(out[inner] - expected[inner]).max() < 0.02
    back = resample.back_to_grid(out, image.shape, to_um, from_um)
    assert back.shape == image.shape
    assert np.abs(back - image)[8:-8, 8:-8].max() < 0.02


def _disc(shape, pixel_um, radius_um, centre_um):
    """1 inside a disc of ``radius_um`` (pixel centres), 0 outside."""
    y = (np.arange(shape[0]) + 0.5) * pixel_um[0] - centre_um[0]
    x = (np.arange(shape[1]) + 0.5) * pixel_um[1] - centre_um[1]
    return (y[:, None] ** 2 + x[None, :] ** 2 <= radius_um**2).astype(np.float32)


def _radius_um(mask, pixel_um):
    """Radius in µm of a disc from its area (pixels × pixel area), and its y and x extents."""
    ys, xs = np.nonzero(mask)
    area = mask.sum() * pixel_um[0] * pixel_um[1]
    extent = ((np.ptp(ys) + 1) * pixel_um[0], (np.ptp(xs) + 1) * pixel_um[1])
    return np.sqrt(area / np.pi), extent


@pytest.mark.parametrize("image_um", [(0.065, 0.065), (0.162, 0.162), (0.05, 0.2), (0.2, 0.08)])
def test_a_disc_keeps_its_physical_radius_there_and_back(image_um):
    """A 3 µm disc stays 3 µm (to ~half a pixel) on the model's 0.1 µm grid and back."""
    radius, model_um = 3.0, (0.1, 0.1)
    shape = (round(12 / image_um[0]), round(12 / image_um[1]))  # a 12 µm field
    disc = _disc(shape, image_um, radius, (6.0, 6.0))
    there = resample.to_pixel_size(disc, image_um, model_um)
    r_there, extent = _radius_um(there > 0.5, model_um)
    assert abs(r_there - radius) < 0.05  # 0.05 µm = half a model pixel
    assert all(abs(e - 2 * radius) < 0.2 for e in extent)  # round in µm: not an ellipse
    back = resample.back_to_grid(there, shape, model_um, image_um)
    r_back, extent = _radius_um(back > 0.5, image_um)
    assert abs(r_back - radius) < max(0.05, max(image_um) / 2)
    assert all(abs(e - 2 * radius) < 2 * max(image_um) for e in extent)


@pytest.mark.parametrize("shape,from_um,to_um,match", [
    ((64, 64), 100.0, 0.1, r"zoom of 1e\+03x, outside \[1/64, 64\]"),  # nm read as µm
    ((64, 64), (0.1, 0.001), 0.1, r"zoom of 0.01x"),
    ((2048, 2048), 0.65, 0.1, r"2048x2048 px .* makes 13312x13312 px, over the 128 MP limit"),
])
def test_absurd_resampling_is_refused_before_any_work(shape, from_um, to_um, match):
    with pytest.raises(resample.ResampleError, match=match):
        resample.check_factors(shape, from_um, to_um)
    with pytest.raises(resample.ResampleError, match="--no-resample"):
        resample.to_pixel_size(np.zeros(shape, np.float32), from_um, to_um)


def test_limits_leave_real_microscopes_alone():
    resample.check_factors((2048, 2048), 0.4, 0.1)  # a 20x objective vs a 100x model: 8192²
    resample.check_factors((2048, 2048), 0.065, 0.65)
    resample.check_factors((64, 64), 0.1 * 64, 0.1)  # exactly the largest factor


def test_predictor_fails_an_absurd_pixel_size_with_one_line(tmp_path):
    from lightmycells.io.ome import ImageError
    folder = onnx_models.write_weights(tmp_path / "w", onnx_models.identity_model(1),
                                       organelles=["nucleus"], pixel_size_um=0.001,
                                       input_norm={"kind": "none"})
    p = predictor.Predictor(manifest.load(folder), runtime.Runtime("cpu", threads=1))
    meta = ImageMeta("x", "YX", None, "unknown", (0.1, 0.1))
    with pytest.raises(ImageError, match=r"zoom of 100x.*\(model 'all'\)$"):
        p.predict(np.ones((32, 32), np.float32), meta, ["nucleus"])
    off = predictor.Predictor(manifest.load(folder), runtime.Runtime("cpu", 1), resample=False)
    assert off.predict(np.ones((32, 32), np.float32), meta, ["nucleus"])["nucleus"].shape == \
        (32, 32)


# --- the NumPy resampler against SimpleITK (an independent implementation) ------------------

# (shape, from µm, to µm): no axis shrinks, so both sides interpolate the same samples
ENLARGING = [((5, 4), 0.162, 0.1), ((64, 80), 0.3, 0.1), ((333, 129), (0.1, 0.162), 0.1),
             ((4, 3), 0.1, 0.065), ((7, 9), (0.1, 0.2), 0.1), ((1, 7), 0.162, 0.1)]


@pytest.mark.parametrize("shape,from_um,to_um", ENLARGING)
def test_cubic_spline_equals_simpleitks_where_no_axis_shrinks(shape, from_um, to_um):
    import SimpleITK as sitk
    image = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    f, t = resample._pair(from_um), resample._pair(to_um)
    out = resample.to_pixel_size(image, f, t)
    ref = _simpleitk(image, f, out.shape, t, sitk.sitkBSpline, smooth=False)
    assert np.abs(out - ref).max() <= 2e-6 * max(1.0, np.ptp(image))


@pytest.mark.parametrize("shape,from_um,to_um", [
    ((64, 80), 0.1, 0.3), ((333, 129), 0.1, (0.1, 0.162)), ((60, 50), (0.1, 0.2), 0.1),
    ((64, 80), 0.3, 0.1), ((5, 4), 0.162, 0.1), ((1, 7), 0.162, 0.1)])
def test_linear_back_to_grid_equals_simpleitks(shape, from_um, to_um):
    """The prediction's way back, shrinking (smoothed first) and enlarging."""
    import SimpleITK as sitk
    image = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    f, t = resample._pair(from_um), resample._pair(to_um)
    grid = resample.model_shape(shape, f, t)
    out = resample.back_to_grid(image, grid, f, t)
    ref = _simpleitk(image, f, grid, t, sitk.sitkLinear, smooth=True)
    if max(t[0] / f[0], t[1] / f[1]) <= 1:  # nothing smoothed: the same interpolation
        assert np.abs(out - ref).max() <= 2e-6 * np.ptp(image)
    else:  # a sampled vs a recursive Gaussian, as below
        inner = (slice(3, -3), slice(3, -3))
        assert np.abs(out[inner] - ref[inner]).max() <= 5e-3 * np.ptp(image)


@pytest.mark.parametrize("from_um,to_um", [(0.0718, 0.1), (0.065, 0.1), (0.05, 0.2),
                                           ((0.05, 0.1), 0.1)])
def test_shrinking_matches_simpleitks_gaussian_and_spline(from_um, to_um):
    """On white noise (the worst case for smoothing), within 0.5 % of the range of
    SimpleITK's recursive Gaussian followed by its cubic B-spline."""
    import SimpleITK as sitk
    image = np.random.default_rng(5).normal(size=(120, 140)).astype(np.float32)
    f, t = resample._pair(from_um), resample._pair(to_um)
    out = resample.to_pixel_size(image, f, t)
    ref = _simpleitk(image, f, out.shape, t, sitk.sitkBSpline, smooth=True)
    inner = (slice(3, -3), slice(3, -3))  # the two filters treat the edges differently
    assert np.abs(out[inner] - ref[inner]).max() <= 5e-3 * np.ptp(image)


@pytest.mark.parametrize("sigma", [0.2, 0.5, 1.5, 4.0])
def test_antialiasing_kernel_is_a_gaussian_of_the_stated_sigma(sigma):
    impulse = np.zeros((81, 3), np.float32)
    impulse[40] = 1
    k = resample._smooth(impulse, sigma, axis=0)[:, 1].astype(np.float64)
    x = np.arange(81) - 40
    assert k.sum() == pytest.approx(1, abs=1e-6)
    if sigma >= 1:  # a sampled Gaussian narrower than a pixel has a smaller variance
        assert (k * x**2).sum() == pytest.approx(sigma**2, rel=1e-3)
    assert k[40] == k.max() and np.allclose(k, k[::-1])


def test_constants_and_ramps_are_reproduced():
    """A cubic B-spline reproduces constants everywhere and linear ramps away from the
    mirrored edges; linear interpolation both, everywhere inside the centres."""
    const = np.full((50, 60), 3.25, np.float32)
    for f, t in [(0.0718, 0.1), (0.162, 0.1), ((0.05, 0.2), 0.1)]:
        np.testing.assert_allclose(resample.to_pixel_size(const, f, t), 3.25, rtol=1e-6)
        np.testing.assert_allclose(resample.back_to_grid(const, (31, 44), f, t), 3.25, rtol=1e-6)
    y = (np.arange(200) + 0.5) * 0.162  # µm at the pixel centres
    ramp = np.repeat((2.0 * y)[:, None], 5, axis=1).astype(np.float32)
    out = resample.to_pixel_size(ramp, 0.162, 0.1)
    expected = 2.0 * (np.arange(out.shape[0]) + 0.5) * 0.1
    np.testing.assert_allclose(out[20:-20, 2], expected[20:-20], rtol=1e-5)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("sigma", [0.3, 1.2])
def test_smoothing_repeats_the_edge_values(axis, sigma):
    """Against a plain convolution of the edge-padded signal (NumPy's own pad and convolve)."""
    values = np.random.default_rng(6).normal(size=(9, 11)).astype(np.float32)
    radius = max(1, int(np.ceil(4 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    expected = np.apply_along_axis(
        lambda v: np.convolve(np.pad(v, radius, mode="edge"), kernel, mode="valid"), axis, values)
    np.testing.assert_allclose(resample._smooth(values, sigma, axis), expected, atol=2e-6)


@pytest.mark.parametrize("from_um,to_um", [(0.065, 0.1), (0.162, 0.1), ((0.05, 0.2), 0.16),
                                           (0.3, 0.1)])
def test_a_region_resamples_as_the_whole_plane_would(from_um, to_um):
    """Crops anywhere (interior, edges, corners) made from the input region they need equal
    the same crop of the whole plane's resampling."""
    image = np.random.default_rng(7).normal(size=(150, 170)).astype(np.float32)
    f, t = resample._pair(from_um), resample._pair(to_um)
    whole = resample.to_pixel_size(image, f, t)
    for top, left, size in [(0, 0, 24), (9, 30, 20), (whole.shape[0] - 17, whole.shape[1] - 24, 17)]:
        ya, yb = resample.input_span(top, top + size, 150, f[0], t[0])
        xa, xb = resample.input_span(left, left + size, 170, f[1], t[1])
        crop = resample.region_to_pixel_size(
            image[ya:yb, xa:xb], f, t, full_shape=(150, 170), region_start=(ya, xa),
            out_start=(top, left), out_shape=(size, size))
        np.testing.assert_allclose(crop, whole[top:top + size, left:left + size], atol=2e-5)
    with pytest.raises(ValueError, match="does not cover"):
        resample.region_to_pixel_size(image[20:40, 20:40], f, t, full_shape=(150, 170),
                                      region_start=(20, 20), out_start=(30, 30),
                                      out_shape=(8, 8))
