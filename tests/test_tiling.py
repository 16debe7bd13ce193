import numpy as np
import onnxruntime as ort
import pytest

from lightmycells.engine import normalize, tiling
from tests import onnx_models

SHAPES = [(17, 23), (255, 256), (512, 512), (966, 1296), (2044, 2048)]


def _session_predict(model):
    """A real ORT session on the CPU as a tiler ``predict`` function."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"input": batch})[0]


@pytest.fixture(scope="module")
def identity():
    return _session_predict(onnx_models.identity_model(1))


@pytest.fixture(scope="module")
def conv():
    return _session_predict(onnx_models.conv_model(2))


def _image(shape, seed=0):
    raw = np.random.default_rng(seed).gamma(2.0, 300.0, shape).astype(np.uint16)
    return normalize.Percentile().before(raw)[0]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tile", [256, 512])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_identity_model_returns_the_normalised_input(identity, shape, tile, overlap):
    image = _image(shape)
    out = tiling.predict_tiled(image, identity, tile=tile, overlap=overlap, batch_size=4)
    assert out.shape == (1, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("tile", [256, 512, (256, 384)])
@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_conv_tiled_matches_whole_image_run(conv, tile, overlap):
    # zero padding makes each tile wrong within 2 px of its edges; the Hann window gives
    # those pixels ~1e-4 of the weight where a neighbouring tile covers them
    image = _image((700, 1100), seed=3)
    whole = conv(image[None, None])[0]
    tiled = tiling.predict_tiled(image, conv, tile=tile, overlap=overlap, batch_size=3)
    span = whole.max() - whole.min()
    assert np.abs(tiled - whole).max() <= 1e-3 * span


def test_every_call_sees_one_batch_shape_and_constant_output_is_exact():
    shapes = []

    def constant(batch):
        shapes.append(batch.shape)
        return np.full((batch.shape[0], 3, *batch.shape[2:]), 2.5, np.float32)

    out = tiling.predict_tiled(np.zeros((700, 450), np.float32), constant, tile=256,
                               overlap=0.25, batch_size=4)
    assert len(set(shapes)) == 1 and shapes[0][1:] == (1, 256, 256)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6, atol=0)  # Σw·c / Σw up to float rounding


def test_batches_are_full_and_equal_so_no_padding_tile_is_computed():
    seen = []

    def record(batch):
        seen.append(batch.copy())
        return batch

    image = np.arange(20 * 80, dtype=np.float32).reshape(20, 80)
    tiling.predict_tiled(image, record, tile=(20, 20), overlap=0.0, batch_size=3)
    assert [b.shape[0] for b in seen] == [2, 2]  # 4 tiles → 2 batches of 2, not 3 + 1
    np.testing.assert_array_equal(np.concatenate(seen)[:, 0], image.reshape(20, 4, 20)
                                  .transpose(1, 0, 2))


def test_network_that_needs_multiples_of_four_gets_padded_tiles():
    unet = _session_predict(onnx_models.unet_model(1, depth=2))
    out = tiling.predict_tiled(_image((30, 50)), unet, tile=64, overlap=0.25, batch_size=2)
    assert out.shape == (1, 30, 50) and np.isfinite(out).all()


@pytest.mark.parametrize("length,tile,overlap", [(256, 256, 64), (1000, 256, 64), (2048, 512, 128),
                                                 (513, 512, 0), (2044, 1088, 128)])
def test_tile_starts_cover_with_at_least_the_overlap(length, tile, overlap):
    starts = tiling.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert np.all(np.diff(starts) <= tile - overlap) and np.all(np.diff(starts) > 0)


def test_hann_is_positive_symmetric_and_peaks_in_the_middle():
    w = tiling.hann(64)
    assert w.min() > 0 and np.allclose(w, w[::-1]) and w.argmax() in (31, 32)


@pytest.mark.parametrize("n,b,expected", [(1, 4, 1), (4, 4, 4), (6, 4, 3), (9, 4, 3), (25, 4, 1),
                                          (28, 4, 4), (7, 1, 1), (3, 8, 3)])
def test_batch_layout_divides_the_tiles(n, b, expected):
    assert tiling.batch_layout(n, b) == expected


@pytest.mark.parametrize("shape", [(512, 512), (966, 1296), (980, 1016), (1200, 1200),
                                   (1300, 1624), (2044, 2048), (2048, 2048), (8192, 8192)])
def test_plan_tiles_respects_overlap_and_stays_near_the_pixel_count(shape):
    plan = tiling.plan_tiles(shape, patch=512, overlap=0.25)
    ty, tx = plan.tile
    assert ty % tiling.TILE_MULTIPLE == 0 and tx % tiling.TILE_MULTIPLE == 0
    assert min(ty, tx) >= 512 and ty * tx <= tiling.MAX_TILE_PIXELS
    assert plan.overlap_px == 128
    ys = tiling.tile_starts(max(shape[0], ty), ty, plan.overlap_px)
    xs = tiling.tile_starts(max(shape[1], tx), tx, plan.overlap_px)
    assert len(ys) * len(xs) == plan.tiles
    assert plan.cost_ratio(shape) <= 1.25  # a fixed 512 grid computes 1.56x at 2048²


def test_planned_tiles_reproduce_identity_on_a_non_square_image(identity):
    image = _image((700, 1100))
    plan = tiling.plan_tiles(image.shape, patch=256, overlap=0.25)
    out = tiling.predict_tiled(image, identity, tile=plan.tile, overlap=0.0, batch_size=1,
                               overlap_px=plan.overlap_px)
    np.testing.assert_allclose(out[0], image, atol=1e-5)


def test_model_returning_a_wrong_shape_is_reported():
    with pytest.raises(ValueError, match="returned shape"):
        tiling.predict_tiled(np.zeros((64, 64), np.float32), lambda b: b[:, :, :32],
                             tile=64, overlap=0.0, batch_size=1)
