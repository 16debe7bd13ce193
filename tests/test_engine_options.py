"""Each engine option of ``inference.py`` changes what the engine computes, observably.

Every run goes through ``inference.main`` with a real ONNX model, and its output is checked
against an answer the test computes itself with ONNX Runtime on the whole image and numpy:

- ``--tta``: a random (not rotation-equivariant) convolution, whose 8-transform average
  differs from its plain output, against the average computed here;
- tiling (the manifest's ``patch``) and ``--overlap``: the convolution on an image of
  2 × 2 tiles against a whole-image run of the same ONNX model;
- ``--batch-size``: a model whose output carries the mean of the tiles in the same call;
- resampling (``pixel_size_um``, ``--no-resample``): an identity model on an image at half
  the model's pixel size.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import inference
from lightmycells.engine import tiling
from lightmycells.io import ome
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Organelle
from tests import onnx_models

PATCH = 64  # small tiles, so a few-hundred-pixel image needs 2 × 2 of them
KERNEL = 5
#: Float32 rounding between two runs of the same model on the same pixels: 25-tap sums of
#: values of order 1 (measured ≤ 5e-7 here), the blend (w·y)/w and the normalisation add one
#: rounding each; 20× the largest difference measured.
ROUNDING = 1e-5


def make_input(path, shape, *, seed=0, pixel_size=(0.1, 0.1)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = (np.random.default_rng(seed).random(shape) * 4000 + 100).astype(np.uint16)
    ome.write(path, image, channel="BF", pixel_size_um=pixel_size)
    return image


def normalized(image):
    """The manifest's percentile normalisation, written out here with NumPy's percentiles."""
    low, high = np.percentile(image.astype(np.float64), [2.0, 99.8])
    return ((image - low) / (high - low)).astype(np.float32)


def whole_image(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """``model`` on the whole (Y, X) image in one ONNX Runtime call: (C, Y, X)."""
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {onnx_models.INPUT: x[None, None]})[0][0]


def predict(tmp_path, model, image_shape, *args, seed=0, pixel_size=(0.1, 0.1), **entry):
    """Run ``inference.main`` on one image; return (input pixels, {organelle: output})."""
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    weights = onnx_models.write_weights(run / "weights", model, name="m", **entry)
    image = make_input(run / "in" / "images" / INPUT_FOLDER / "a_BF.tiff", image_shape,
                       seed=seed, pixel_size=pixel_size)
    assert inference.main([str(a) for a in (
        "--input", run / "in", "--output", run / "out", "--weights", weights,
        "--device", "cpu", *args)], {}) == 0
    summary = json.loads((run / "out" / "summary.json").read_text())
    assert summary["written"] == 1
    outputs = {o: ome.read(run / "out" / "images" / o.output_folder / "a_BF.tiff")[0]
               for o in ORGANELLES}
    return image, outputs


def stacked(outputs):
    return np.stack([outputs[o] for o in ORGANELLES])  # (C, Y, X) in the model's channel order


# --- TTA -------------------------------------------------------------------------------------

def dihedral_mean(model, x):
    """The mean over the 8 rotations/flips of ``model``'s whole-image output, each undone."""
    total = np.zeros((len(ORGANELLES), *x.shape), np.float64)
    for flip in (False, True):
        for quarter_turns in range(4):
            moved = np.rot90(x, quarter_turns)
            moved = moved[:, ::-1] if flip else moved
            y = whole_image(model, np.ascontiguousarray(moved))
            y = y[:, :, ::-1] if flip else y
            total += np.rot90(y, -quarter_turns, axes=(1, 2))
    return total / 8


def test_tta_averages_the_eight_transforms_of_a_model_that_is_not_equivariant(tmp_path):
    model = onnx_models.conv_model(4, kernel=KERNEL)
    shape = (PATCH, 2 * PATCH)  # one tile exactly, also when rotated: no tiling effects
    image, plain = predict(tmp_path, model, shape, patch=PATCH)
    _, tta = predict(tmp_path, model, shape, "--tta", patch=PATCH)
    x = normalized(image)
    np.testing.assert_allclose(stacked(plain), whole_image(model, x), atol=ROUNDING)
    expected = dihedral_mean(model, x)
    np.testing.assert_allclose(stacked(tta), expected, atol=ROUNDING)
    assert np.abs(expected - whole_image(model, x)).max() > 0.5  # TTA is no no-op here


# --- tiling and overlap against a whole-image run ---------------------------------------------

def seams(shape, plan, radius):
    """Pixels within ``radius`` of an edge of some tile that lies inside the image.

    There a tile's zero padding stands where the whole image has pixels, so the tile's
    convolution differs; everywhere else every tile covering a pixel computes exactly what
    the whole-image run computes.
    """
    mask = np.zeros(shape, bool)
    ys = tiling.tile_starts(shape[0], plan.tile[0], plan.overlap_px)
    xs = tiling.tile_starts(shape[1], plan.tile[1], plan.overlap_px)
    for axis, starts, edge in ((0, ys, plan.tile[0]), (1, xs, plan.tile[1])):
        for start in starts:
            for border in (start, start + edge):
                if 0 < border < shape[axis]:
                    band = slice(max(0, border - radius), border + radius)
                    if axis == 0:
                        mask[band, :] = True
                    else:
                        mask[:, band] = True
    return mask


def hann(i, length):
    """The documented blending window (engine/tiling.py): sin²(π(i + ½)/length)."""
    return np.sin(np.pi * (i + 0.5) / length) ** 2


def seam_share(tile, overlap_px, radius):
    """Most blend weight a tile can have at a pixel within ``radius`` of its inner edge.

    That pixel lies ``< radius`` into the tile (weight ≤ hann(radius - 1)) and at least
    ``overlap_px - radius`` inside the neighbour that overlaps it (weight ≥ hann of that).
    """
    own = hann(radius - 1, tile)
    return own / (own + hann(overlap_px - radius, tile))


@pytest.mark.parametrize("overlap", ["0.25", "0.5"])
def test_multi_tile_run_matches_a_whole_image_run_of_the_same_model(tmp_path, overlap):
    model = onnx_models.conv_model(4, kernel=KERNEL)
    shape = (260, 360)  # 2 × 2 tiles of patch 64; the two overlaps plan different tiles
    image, outputs = predict(tmp_path, model, shape, "--overlap", overlap, patch=PATCH)
    x = normalized(image)
    got, want = stacked(outputs), whole_image(model, x)
    plan = tiling.plan_tiles(shape, patch=PATCH, overlap=float(overlap))
    assert plan.tiles >= 4 and plan.tile[0] < shape[0] and plan.tile[1] < shape[1]
    radius = KERNEL // 2
    near = seams(shape, plan, radius)
    diff = np.abs(got - want)
    # away from the seams: the blend of identical tile values returns them
    assert diff[:, ~near].max() <= ROUNDING
    # at the seams the zero-padded tiles differ, and they were blended (a trace remains) ...
    assert diff[:, near].max() > 10 * ROUNDING
    # ... with the small weight the window gives a tile's edge: the tiles whose edge is near
    # a pixel hold at most seam_share of its weight per axis, and each misses at most
    # Σ|kernel| · max|x| (all taps outside the tile). Pasting tiles unblended would break it.
    kernel = numpy_helper.to_array(model.graph.initializer[0])  # (C, 1, k, k)
    share = sum(seam_share(edge, plan.overlap_px, radius) for edge in plan.tile)
    bound = share * np.abs(kernel).sum(axis=(1, 2, 3)) * np.abs(x).max()
    assert (diff.max(axis=(1, 2)) <= bound).all()


def test_overlap_changes_the_tiles_and_so_the_output(tmp_path):
    model = onnx_models.conv_model(4, kernel=KERNEL)
    shape = (260, 360)
    _, quarter = predict(tmp_path, model, shape, "--overlap", "0.25", patch=PATCH)
    _, half = predict(tmp_path, model, shape, "--overlap", "0.5", patch=PATCH)
    _, default = predict(tmp_path, model, shape, patch=PATCH, overlap=0.5)  # the manifest's
    assert np.abs(stacked(quarter) - stacked(half)).max() > 10 * ROUNDING
    np.testing.assert_array_equal(stacked(default), stacked(half))


def test_the_manifest_patch_decides_the_tiles(tmp_path):
    model = onnx_models.conv_model(4, kernel=KERNEL)
    shape = (320, 384)  # one 320 × 384 tile for patch 256; 2 × 2 tiles for patch 64
    image, large = predict(tmp_path, model, shape, patch=256)
    _, small = predict(tmp_path, model, shape, patch=PATCH)
    want = whole_image(model, normalized(image))
    np.testing.assert_allclose(stacked(large), want, atol=ROUNDING)  # one tile: no seam
    assert np.abs(stacked(small) - want).max() > 10 * ROUNDING  # seams of 2 × 2 tiles


# --- batch size --------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size,per_call", [("1", 1), ("18", 2), ("36", 4)])
def test_batch_size_groups_that_many_patch_areas_per_model_call(tmp_path, batch_size, per_call):
    shape = (260, 360)  # four 192² tiles at (0|68) × (0|168); each is 9 patch areas of 64²
    image, outputs = predict(tmp_path, onnx_models.batch_mean_model(4), shape,
                             "--batch-size", batch_size, patch=PATCH)
    x = normalized(image)
    # The top-left 68 × 168 pixels lie in the first tile only, so its output is theirs:
    # x + the mean, at the same place in each tile, of the tiles of the first call.
    starts = [(0, 0), (0, 168), (68, 0), (68, 168)][:per_call]
    mean = np.mean([x[y:y + 68, x0:x0 + 168] for y, x0 in starts], axis=0)
    for organelle in ORGANELLES:
        np.testing.assert_allclose(outputs[organelle][:68, :168], x[:68, :168] + mean,
                                   atol=ROUNDING)
    if per_call == 1:  # one tile per call everywhere: twice the input, seams included
        np.testing.assert_allclose(outputs[Organelle.NUCLEUS], 2 * x, atol=ROUNDING)


# --- resampling --------------------------------------------------------------------------------

def test_resampling_to_the_model_pixel_size_and_back_smooths_an_identity_model(tmp_path):
    identity = onnx_models.identity_model(4)
    shape = (128, 160)
    image, kept = predict(tmp_path, identity, shape, "--no-resample", patch=PATCH,
                          pixel_size_um=0.2)
    _, resampled = predict(tmp_path, identity, shape, patch=PATCH, pixel_size_um=0.2)
    x = normalized(image)
    np.testing.assert_allclose(kept[Organelle.ACTIN], x, atol=ROUNDING)  # as it was
    out = resampled[Organelle.ACTIN]
    assert out.shape == x.shape
    # through a grid of half the pixels and back: the coarse layout stays, the finest
    # (pixel-to-pixel) detail of this noise image is mostly gone
    assert np.corrcoef(out.ravel(), x.ravel())[0, 1] > 0.3
    assert np.abs(np.diff(out, axis=1)).mean() < 0.6 * np.abs(np.diff(x, axis=1)).mean()
