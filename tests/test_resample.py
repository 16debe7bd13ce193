import numpy as np
import pytest

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
