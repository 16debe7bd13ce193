import numpy as np
import onnxruntime as ort
import pytest

from lightmycells.engine import manifest, predictor, runtime, tta
from lightmycells.io.ome import ImageMeta
from tests import onnx_models


def _whole_image(model):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda image: session.run(None, {"input": image[None, None]})[0][0]


def test_dihedral_group_has_eight_distinct_transforms():
    probe = np.arange(12.0).reshape(3, 4)
    images = {tuple(t.apply(probe).ravel()) + t.apply(probe).shape for t in tta.DIHEDRAL}
    assert len(tta.DIHEDRAL) == 8 and len(images) == 8
    assert tta.DIHEDRAL[0].name == "rot0"


@pytest.mark.parametrize("transform", tta.DIHEDRAL, ids=lambda t: t.name)
def test_each_transform_is_exactly_inverted_on_non_square_arrays(transform):
    a = np.random.default_rng(0).random((2, 5, 9), dtype=np.float32)
    np.testing.assert_array_equal(transform.invert(transform.apply(a)), a)


def test_tta_with_an_equivariant_model_changes_nothing():
    predict = _whole_image(onnx_models.equivariant_model(2))
    image = np.random.default_rng(1).random((37, 52), dtype=np.float32)
    plain = predict(image)
    averaged = tta.predict_tta(image, predict)
    assert averaged.shape == plain.shape == (2, 37, 52)
    np.testing.assert_allclose(averaged, plain, atol=1e-5)


def test_tta_with_a_non_equivariant_model_does_change_the_output():
    predict = _whole_image(onnx_models.conv_model(1))
    image = np.random.default_rng(1).random((37, 52), dtype=np.float32)
    assert np.abs(tta.predict_tta(image, predict) - predict(image)).max() > 1e-2


def test_subset_of_transforms_and_empty_subset():
    image = np.random.default_rng(2).random((6, 10), dtype=np.float32)
    flips = [tta.Transform(0, False), tta.Transform(0, True)]
    out = tta.predict_tta(image, lambda x: x[None] * 2, flips)
    np.testing.assert_allclose(out[0], image * 2)
    with pytest.raises(ValueError, match="at least one"):
        tta.predict_tta(image, lambda x: x[None], [])


def test_predictor_tta_with_equivariant_model_matches_plain(equivariant_weights):
    m = manifest.load(equivariant_weights)
    rt = runtime.Runtime("cpu", threads=1)
    meta = ImageMeta("x", "YX", None, "unknown", None)
    image = np.random.default_rng(3).gamma(2.0, 100.0, (300, 420)).astype(np.uint16)
    plain = predictor.Predictor(m, rt, tiles="patch").predict(image, meta)
    tta_out = predictor.Predictor(m, rt, tta=True, tiles="patch").predict(image, meta)
    for organelle, values in plain.items():
        span = values.max() - values.min()
        assert np.abs(tta_out[organelle] - values).max() <= 1e-3 * span
