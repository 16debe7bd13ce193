import numpy as np
import pytest

from lightmycells.engine import normalize


@pytest.fixture
def image():
    return np.random.default_rng(1).gamma(2.0, 300.0, (64, 80)).astype(np.uint16)


def test_percentile_maps_low_high_to_0_1_without_clipping(image):
    y, state = normalize.Percentile().before(image)
    p_low, p_high = np.percentile(image, [2.0, 99.8])
    expected = (image.astype(np.float64) - p_low) / (p_high - p_low)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.min() < 0 and y.max() > 1  # no clipping, as the official evaluation
    assert (state.offset, state.scale) == pytest.approx((p_low, p_high - p_low))


@pytest.mark.parametrize("norm", [normalize.Percentile(), normalize.Percentile(1, 99),
                                  normalize.ZScore(), normalize.MinMax(), normalize.Identity()])
def test_state_holds_the_statistics_that_undo_before(image, norm):
    y, state = norm.before(image)
    np.testing.assert_allclose(y * state.scale + state.offset, image, rtol=1e-5, atol=1e-2)


def test_normalizers_have_no_after():
    # predictions are fluorescence, not the input's units: nothing maps them back
    assert not hasattr(normalize.Percentile(), "after")


@pytest.mark.parametrize("norm", [normalize.Percentile(), normalize.ZScore(), normalize.MinMax()])
@pytest.mark.parametrize("value", [0, 7])
def test_degenerate_images_do_not_divide_by_zero(norm, value):
    flat = np.full((16, 16), value, np.uint16)
    y, state = norm.before(flat)
    assert np.isfinite(y).all() and state.scale == 1.0
    np.testing.assert_array_equal(y, 0)
    assert state.offset == value


def test_zscore_and_minmax_statistics(image):
    z, _ = normalize.ZScore().before(image)
    assert z.mean() == pytest.approx(0, abs=1e-5) and z.std() == pytest.approx(1, abs=1e-5)
    m, _ = normalize.MinMax().before(image)
    assert (m.min(), m.max()) == pytest.approx((0.0, 1.0))


def test_from_spec_builds_each_kind():
    assert normalize.from_spec({"kind": "percentile", "low": 1, "high": 99.5}) == \
        normalize.Percentile(1.0, 99.5)
    assert normalize.from_spec({"kind": "percentile"}) == normalize.Percentile()
    assert isinstance(normalize.from_spec({"kind": "zscore"}), normalize.ZScore)
    assert isinstance(normalize.from_spec({"kind": "none"}), normalize.Identity)


@pytest.mark.parametrize("spec,match", [
    ({"kind": "robust"}, "robust"), ({}, "None"),
    ({"kind": "percentile", "lo": 2}, "'lo'"), ({"kind": "zscore", "low": 2}, "'low'"),
    ({"kind": "percentile", "low": "2"}, "number"), ({"kind": "percentile", "low": 99.9}, "low"),
])
def test_from_spec_rejects_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        normalize.from_spec(spec)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1), (17, 23), (255, 256)])
def test_fast_percentiles_equal_numpy_bit_for_bit(dtype, shape):
    from lightmycells.engine.normalize import percentiles

    x = (np.random.default_rng(3).random(shape) * 4000).astype(dtype)
    want = np.percentile(x, [2.0, 99.8])
    got = percentiles(x, (2.0, 99.8), np.float64)
    assert [float(v) for v in got] == [float(v) for v in want]


@pytest.mark.parametrize("where", [0, 500, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_percentiles_of_an_image_with_nan_are_nan_as_numpy(where, dtype):
    from lightmycells.engine.normalize import percentiles

    x = np.random.default_rng(4).random(1000).astype(dtype)
    x[where] = np.nan
    want = [np.percentile(x, q) for q in (2.0, 99.8)]  # scalar q: the image's own dtype
    got = percentiles(x, (2.0, 99.8))
    assert all(np.isnan(v) for v in want)
    assert all(np.isnan(v) and type(v) is type(w) for v, w in zip(got, want, strict=True))
