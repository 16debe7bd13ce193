from collections import Counter

import numpy as np
import pytest

from lightmycells.engine import manifest, normalize, predictor, runtime
from lightmycells.engine.manifest import RouteError
from lightmycells.io.ome import ImageMeta
from lightmycells.vocab import ORGANELLES, Modality, Organelle


def _meta(modality=None, pixel_size=None):
    return ImageMeta("img", "YX", modality, "stated", pixel_size)


def _image(shape, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 300.0, shape).astype(np.uint16)


@pytest.fixture
def calls(monkeypatch):
    """Counts model calls per model name and records the batch shapes."""
    seen: Counter = Counter()
    shapes: list = []
    original = runtime.OnnxModel.__call__

    def counting(self, batch):
        seen[self.entry.name] += 1
        shapes.append(batch.shape)
        return original(self, batch)

    monkeypatch.setattr(runtime.OnnxModel, "__call__", counting)
    return seen, shapes


@pytest.mark.parametrize("shape", [(17, 23), (300, 520), (966, 1296)])
@pytest.mark.parametrize("tiles", ["auto", "patch"])
def test_identity_model_gives_the_normalised_input_for_every_organelle(
        identity_weights, shape, tiles):
    m = manifest.load(identity_weights)
    image = _image(shape)
    out = predictor.Predictor(m, runtime.Runtime("cpu", 1), tiles=tiles).predict(image, _meta())
    expected = normalize.Percentile().before(image)[0]
    assert list(out) == list(ORGANELLES)
    for values in out.values():
        assert values.shape == shape and values.dtype == np.float32
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("modality,expected", [
    (Modality.BF, {"nucleus": (1, 10), "mitochondria": (3, 30)}),
    (Modality.DIC, {"nucleus": (2, 20), "mitochondria": (3, 30)}),
    (None, {"nucleus": (2, 20), "actin": (5, 50)}),
])
def test_outputs_come_from_the_routed_model(routed_weights, modality, expected):
    m = manifest.load(routed_weights)
    image = _image((64, 96))
    x = normalize.Percentile().before(image)[0]
    out = predictor.Predictor(m, runtime.Runtime("cpu", 1)).predict(
        image, _meta(modality), list(expected))
    assert list(out) == list(expected)
    for organelle, (scale, offset) in expected.items():
        np.testing.assert_allclose(out[organelle], scale * x + offset, rtol=1e-5, atol=1e-4)


def test_a_model_serving_several_organelles_runs_once(routed_weights, calls):
    seen, _ = calls
    m = manifest.load(routed_weights)
    out = predictor.Predictor(m, runtime.Runtime("cpu", 1)).predict(
        _image((200, 200)), _meta(Modality.DIC))
    assert set(out) == set(ORGANELLES)
    assert seen == Counter({"nuc-mito-any": 1, "tub-act-any": 1})  # one tile, one call each


def test_batches_count_patch_sized_tiles(identity_weights, calls):
    _, shapes = calls
    m = manifest.load(identity_weights)  # patch 256
    rt = runtime.Runtime("cpu", 1)
    predictor.Predictor(m, rt, tiles="patch", batch_size=4).predict(_image((700, 700)), _meta())
    assert set(shapes) == {(4, 1, 256, 256)}
    shapes.clear()
    predictor.Predictor(m, rt, batch_size=4).predict(_image((700, 700)), _meta())
    (shape,) = set(shapes)
    assert shape[0] == max(1, 4 * 256 * 256 // (shape[2] * shape[3]))  # planned tile: 704²
    assert shape[2:] == (704, 704)


def test_missing_route_names_it(tmp_path):
    from tests import onnx_models
    entry = onnx_models.model_entry(tmp_path, "bf", onnx_models.identity_model(1),
                                    organelles=["nucleus"], modalities=["BF"])
    m = manifest.load(onnx_models.write_manifest(tmp_path, [entry]))
    p = predictor.Predictor(m, runtime.Runtime("cpu", 1))
    with pytest.raises(RouteError, match=r"\(nucleus, PC\)"):
        p.predict(_image((32, 32)), _meta(Modality.PC), [Organelle.NUCLEUS])


def test_bad_arguments_are_rejected(identity_weights):
    m = manifest.load(identity_weights)
    rt = runtime.Runtime("cpu", 1)
    with pytest.raises(ValueError, match="2D"):
        predictor.Predictor(m, rt).predict(np.zeros((2, 8, 8), np.uint16), _meta())
    for kwargs, match in [({"batch_size": 0}, "batch_size"), ({"overlap": 1.0}, "overlap"),
                          ({"tiles": "grid"}, "tiles")]:
        with pytest.raises(ValueError, match=match):
            predictor.Predictor(m, rt, **kwargs)


def test_models_sharing_norm_and_pixel_size_share_one_resampled_input(tmp_path, monkeypatch):
    """Four one-organelle models ``x + offset``: two share (percentile, 0.1 µm), one has
    another normalisation, one another pixel size: 3 resamplings, 1 percentile
    normalisation for both grids, and every output is its own model's offset on the input
    made by hand."""
    from lightmycells.engine import resample
    from tests import onnx_models
    pct, none = {"kind": "percentile", "low": 1.0, "high": 99.8}, {"kind": "none"}
    specs = [("nucleus", 10, pct, 0.1), ("mitochondria", 20, pct, 0.1),
             ("tubulin", 30, none, 0.1), ("actin", 40, pct, 0.2)]
    entries = [onnx_models.model_entry(tmp_path, o, onnx_models.affine_model([1.0], [offset]),
                                       organelles=[o], input_norm=norm, pixel_size_um=um)
               for o, offset, norm, um in specs]
    m = manifest.load(onnx_models.write_manifest(tmp_path, entries))
    made, stats = [], []
    original, percentiles = resample.to_pixel_size, normalize.Percentile.stats
    monkeypatch.setattr(resample, "to_pixel_size",
                        lambda x, *sizes: made.append(sizes) or original(x, *sizes))
    monkeypatch.setattr(normalize.Percentile, "stats",
                        lambda self, x: stats.append(1) or percentiles(self, x))
    image = _image((90, 110))
    out = predictor.Predictor(m, runtime.Runtime("cpu", 1)).predict(image, _meta(None, 0.07))
    assert sorted(made) == [(0.07, 0.1), (0.07, 0.1), (0.07, 0.2)]
    assert len(stats) == 1  # one percentile normalisation serves both grids
    for organelle, offset, norm, um in specs:
        x = (normalize.Percentile(1.0, 99.8).before(image)[0] if norm is pct
             else image.astype(np.float32))
        expected = resample.back_to_grid(original(x, 0.07, um) + offset, image.shape, um, 0.07)
        np.testing.assert_allclose(out[Organelle(organelle)], expected, rtol=1e-6, atol=1e-4)


def test_a_loaded_image_carries_its_model_inputs_so_compute_makes_none(tmp_path, monkeypatch):
    """A batch run prepares the next image in its read stage: ``Processor.load`` normalises
    and resamples, ``compute`` only predicts, and the result is that of ``predict`` alone."""
    import process
    from lightmycells.engine import resample
    from lightmycells.io import ome
    from tests import onnx_models
    folder = onnx_models.write_weights(tmp_path / "w", onnx_models.conv_model(4),
                                       pixel_size_um=0.1)
    m = manifest.load(folder)
    rt = runtime.Runtime("cpu", 1)
    path = tmp_path / "a_BF.ome.tiff"
    ome.write(path, _image((120, 90)), channel="BF", pixel_size_um=(0.07, 0.07))
    proc = process.Processor(predictor.Predictor(m, rt), m, ORGANELLES)
    loaded = proc.load(path)
    shapes = sorted(x.shape for x in loaded.prepared.values())  # the model's, and the input's
    assert shapes == sorted([resample.model_shape((120, 90), 0.07, 0.1), (120, 90)])
    made = []
    monkeypatch.setattr(resample, "to_pixel_size", lambda *a: made.append(a))
    out = proc.compute(loaded).predictions
    assert made == []
    monkeypatch.undo()
    alone = predictor.Predictor(m, rt).predict(*ome.read(path))
    for organelle in ORGANELLES:
        np.testing.assert_array_equal(out[organelle], alone[organelle])
